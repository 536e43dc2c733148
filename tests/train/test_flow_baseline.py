"""The optical-flow baseline's inputs: u, v and strain of a known motion."""
from __future__ import annotations

import numpy as np
import torch

from micronbert.model.flow_cnn import FlowCNN, FlowConfig, flow_features, hflip_flow


def textured(size=112, seed=0):
    import cv2

    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 255, (size, size, 3)).astype(np.uint8), (0, 0), 2.0)
    return cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX)


def test_translation_gives_constant_flow_and_no_strain():
    img = textured()
    shifted = np.roll(img, 3, axis=1)              # content moves 3 px to the right
    f = flow_features(img, shifted, 28)
    assert f.shape == (3, 28, 28) and f.dtype == np.float32
    inner = (slice(None), slice(6, 22), slice(6, 22))
    u, v, strain = f[inner]
    assert abs(np.median(u) - 3 * 28 / 112) < 0.15
    assert abs(np.median(v)) < 0.1
    assert np.median(strain) < 0.1


def test_local_stretch_shows_up_as_strain_where_it_happens():
    import cv2

    img = textured()
    yy, xx = np.mgrid[0:112, 0:112].astype(np.float32)
    bump = np.exp(-((xx - 80) ** 2 + (yy - 30) ** 2) / (2 * 10 ** 2))
    warped = cv2.remap(img, xx - 3 * bump * (xx - 80) / 10, yy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    strain = flow_features(img, warped, 28)[2]
    near, far = strain[5:10, 17:23].mean(), strain[18:24, 3:9].mean()
    assert near > 3 * far


def test_mirroring_flips_the_sign_of_u_only():
    x = torch.randn(2, 3, 28, 28)
    y = hflip_flow(x)
    assert torch.allclose(y[:, 0], -x[:, 0].flip(-1)) and torch.allclose(y[:, 1:], x[:, 1:].flip(-1))
    assert torch.allclose(hflip_flow(y), x)


def test_cnn_shapes():
    net = FlowCNN(FlowConfig(), 5)
    assert net(torch.randn(4, 3, 28, 28)).shape == (4, 5)
    assert net.model_type == "flow-cnn"
