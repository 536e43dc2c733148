"""The optical-flow baseline's network and its input: a small three-stream CNN on onset→apex flow
(u, v, optical strain), in the spirit of STSTNet (Liong et al., 2019).

The flow is selectable (`FlowConfig.flow`): "farneback", OpenCV's dense Farnebäck flow (the default),
or "tvl1", OpenCV's dual TV-L1 (cv2.optflow, from opencv-contrib-python-headless), the flow MER papers
and baselines use (STSTNet, Off-ApexNet, HTNet). benchmarks/flow_methods.py compares them under the same
LOSO protocol and seeds: on the demo's synthetic benchmark TV-L1 (OpenCV's default parameters) scored
below Farnebäck at both amplitudes and every seed, at about 75x the CPU time per pair, so Farnebäck
stays the default (figures in docs/evaluation.md).

A classifier folder of this model has config.json "model_type": "flow-cnn" and "model": FlowConfig
(see `micronbert.model.classifier`); its training method is `micronbert.train.flow_baseline`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from micronbert.config import from_dict
from micronbert.errors import MicronbertError
from micronbert.faces.register import METHODS as REGISTRATIONS


FLOW_METHODS = ("tvl1", "farneback")
DEFAULT_FLOW = "farneback"     # what a new flow-cnn trains on (measured better: see the module doc)
# Classifier folders saved before the flow was selectable have no "flow" key: they were Farnebäck.
LEGACY_FLOW = "farneback"


@dataclass
class FlowConfig:
    flow_size: int = 28            # STSTNet's input side
    input_size: int = 112          # side of the aligned faces the flow is computed on
    channels: tuple[int, int, int] = (3, 5, 8)  # filters of the three streams
    flow: str = DEFAULT_FLOW       # one of FLOW_METHODS
    # Fine registration of apex onto onset before the flow is computed (faces/register.py): head drift left
    # in the pair is global flow. "none" keeps the baseline as it was (and reads old classifier folders).
    registration: str = "none"

    def __post_init__(self):
        if self.flow not in FLOW_METHODS:
            raise MicronbertError(f"unknown flow method {self.flow!r}; choose from {', '.join(FLOW_METHODS)}")
        if self.registration not in REGISTRATIONS:
            raise MicronbertError(f"registration must be one of {', '.join(REGISTRATIONS)}, not {self.registration!r}")


def flow_config_from_saved(data: dict, source: str = "config") -> FlowConfig:
    """The FlowConfig of a saved classifier's "model" section (a missing "flow" means Farnebäck, see LEGACY_FLOW)."""
    return from_dict(FlowConfig, {"flow": LEGACY_FLOW, **data}, source)


def dense_flow(gray0: np.ndarray, gray1: np.ndarray, method: str = DEFAULT_FLOW) -> np.ndarray:
    """float32 (H, W, 2) displacement (u right, v down, in pixels) taking uint8 gray0 to gray1."""
    import cv2

    if method == "farneback":
        return cv2.calcOpticalFlowFarneback(gray0, gray1, None, pyr_scale=0.5, levels=3, winsize=9, iterations=3,
                                            poly_n=5, poly_sigma=1.1, flags=0)
    if method == "tvl1":
        if not hasattr(cv2, "optflow"):
            raise MicronbertError("TV-L1 flow needs cv2.optflow, which opencv-python-headless lacks: install "
                                  "opencv-contrib-python-headless<5 in its place (micronbert depends on it)")
        # OpenCV's defaults (tau 0.25, lambda 0.15, theta 0.3, 5 scales, 5 warps), as the MER baselines use
        return cv2.optflow.DualTVL1OpticalFlow_create().calc(gray0, gray1, None)
    raise MicronbertError(f"unknown flow method {method!r}; choose from {', '.join(FLOW_METHODS)}")


def flow_features(onset: np.ndarray, apex: np.ndarray, size: int = 28, method: str = DEFAULT_FLOW) -> np.ndarray:
    """uint8 RGB onset/apex (H, W, 3) -> float32 (3, size, size): u, v, strain = sqrt(ux² + vy² + ½(uy + vx)²)."""
    import cv2

    g0 = cv2.cvtColor(np.ascontiguousarray(onset), cv2.COLOR_RGB2GRAY)
    g1 = cv2.cvtColor(np.ascontiguousarray(apex), cv2.COLOR_RGB2GRAY)
    flow = dense_flow(g0, g1, method)
    u, v = flow[..., 0], flow[..., 1]
    uy, ux = np.gradient(u)
    vy, vx = np.gradient(v)
    strain = np.sqrt(ux ** 2 + vy ** 2 + 0.5 * (uy + vx) ** 2)
    # flow in units of the output grid, so faces cached at 112 or 224 px give comparable magnitudes
    k = size / float(g0.shape[1])
    chans = [u * k, v * k, strain]
    return np.stack([cv2.resize(c.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) for c in chans])


def hflip_flow(x: torch.Tensor) -> torch.Tensor:
    """Mirror (B, 3, h, w) flow images: u changes sign, v and strain just flip."""
    x = x.flip(-1)
    return torch.cat([-x[:, :1], x[:, 1:]], 1)


class FlowCNN(nn.Module):
    """Three shallow 3×3 conv streams over the (u, v, strain) image, concatenated, pooled, one linear layer."""

    model_type = "flow-cnn"

    def __init__(self, cfg: FlowConfig, num_classes: int):
        super().__init__()
        self.cfg = cfg
        self.streams = nn.ModuleList([
            nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                          nn.MaxPool2d(3, stride=3, padding=1)) for c in cfg.channels])
        side = (cfg.flow_size + 2 - 3) // 3 + 1      # after the stride-3 max-pool
        side //= 2                                   # after the 2×2 average pool
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(sum(cfg.channels) * side * side, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([s(x) for s in self.streams], 1)
        return self.fc(self.pool(x).flatten(1))

