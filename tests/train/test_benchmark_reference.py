"""benchmarks/reference_mubert.py: its normalisation follows the frames' device and dtype (`--device cuda`
used to fail with the statistics left on the CPU)."""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import reference_mubert as R  # noqa: E402


def test_normalise_stays_on_the_frames_device_in_float32():
    frames = torch.full((2, 8, 8, 3), 255, dtype=torch.uint8)
    x = R.normalise(frames)
    assert x.shape == (2, 3, 8, 8) and x.dtype == torch.float32 and x.device == frames.device
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225]))
    meta = R.normalise(frames.to("meta"))  # no data: only where the result lives
    assert meta.device.type == "meta" and meta.dtype == torch.float32
