"""Fine registration of apex onto onset: residual global drift after registration (real faces)."""
import numpy as np
import pytest

from micronbert.data.builtin import face_photos
from micronbert.data.pairs import fit_square
from micronbert.errors import MicronbertError
from micronbert.faces.register import estimate, register_pair

SIZE = 112


def drift(img, dx, dy, angle_deg=0.0):
    """The image moved by (dx, dy) px and rotated by angle_deg about its centre (head drift)."""
    import cv2

    m = cv2.getRotationMatrix2D((SIZE / 2 - 0.5, SIZE / 2 - 0.5), angle_deg, 1.0)
    m[:, 2] += (dx, dy)
    return cv2.warpAffine(img, m, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE), m


def local_bump(img, rng, amp=1.5, sigma=6.0):
    import cv2

    cy, cx = rng.integers(30, SIZE - 30, size=2)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    bump = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))
    return cv2.remap(img, (xx - amp * bump).astype(np.float32), yy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


@pytest.fixture(scope="module")
def faces():
    return [fit_square(img, SIZE) for img in face_photos().values()]


def test_translation_removes_sub_pixel_drift_and_keeps_the_local_motion(faces):
    rng = np.random.default_rng(0)
    before, after = [], []
    for k in range(12):
        onset = faces[k % len(faces)]
        dx, dy = rng.uniform(-3, 3, size=2)
        apex, _ = drift(local_bump(onset, rng), dx, dy)
        apex = np.clip(apex + rng.normal(0, 2, apex.shape), 0, 255).astype(np.uint8)
        registered, reg = register_pair(onset, apex, "translation")
        before.append(np.hypot(dx, dy))
        after.append(np.hypot(reg.shift[0] - dx, reg.shift[1] - dy))  # drift left after registration
        # the local motion survives: registered apex still differs from the onset around the bump
        assert np.abs(registered.astype(float) - onset).max() > 10
    print(f"global drift {np.mean(before):.2f} px -> residual {np.mean(after):.3f} px "
          f"(max {max(after):.3f}, 12 pairs)")
    assert np.mean(after) < 0.1 and max(after) < 0.25


def test_euclidean_also_removes_a_small_rotation(faces):
    rng = np.random.default_rng(1)
    for k in range(4):
        onset = faces[k % len(faces)]
        apex, m = drift(onset, *rng.uniform(-2, 2, size=2), angle_deg=rng.uniform(-1.5, 1.5))
        registered, reg = register_pair(onset, apex, "euclidean")
        assert reg.converged
        # the estimated apex->onset transform undoes the drift: composed, they are the identity
        full = np.vstack([m, [0, 0, 1]])
        undo = np.vstack([reg.transform, [0, 0, 1]])
        corners = np.array([[0, 0, 1], [SIZE, 0, 1], [0, SIZE, 1], [SIZE, SIZE, 1]], float).T
        err = np.abs((undo @ full @ corners)[:2] - corners[:2]).max()
        assert err < 0.3, err
        trans_only, _ = register_pair(onset, apex, "translation")
        inner = (slice(16, SIZE - 16),) * 2
        assert (np.abs(registered[inner].astype(float) - onset[inner]).mean()
                < np.abs(trans_only[inner].astype(float) - onset[inner]).mean())


def test_none_leaves_the_apex_and_bad_input_is_named(faces):
    onset = faces[0]
    apex, _ = drift(onset, 1.0, 0.0)
    same, reg = register_pair(onset, apex, "none")
    assert same is apex or np.array_equal(same, apex)
    with pytest.raises(MicronbertError, match="registration method"):
        estimate(onset, apex, "affine-ish")
    with pytest.raises(MicronbertError, match="differ in size"):
        estimate(onset, apex[:50])
