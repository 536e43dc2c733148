"""The classic optical-flow baseline as a training method (the network and its flow input are
`micronbert.model.flow_cnn`). Each sample's 3×28×28 flow image is computed once and reused by every fold.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from micronbert.config import to_dict
from micronbert.model.flow_cnn import FlowCNN, FlowConfig, flow_features, hflip_flow
from micronbert.train.finetune import BatchLogits, TrainedMethod
from micronbert.train.pairdata import PairData
from micronbert.train.recipe import FinetuneConfig, classifier_param_groups, recipe_dict
from micronbert.utils.progress import progress


class FlowCNNMethod(TrainedMethod):
    model_type = "flow-cnn"

    def __init__(self, classes: Sequence[str], recipe: FinetuneConfig, cfg: FlowConfig | None = None,
                 device: str | torch.device = "cpu", name: str = "flow-cnn", margin: float | None = None):
        self.classes = list(classes)
        self.margin = margin
        self.recipe = recipe
        self.cfg = cfg or FlowConfig()
        self.device = torch.device(device)
        self.name = name
        self.features: torch.Tensor | None = None
        self.view_features: list[torch.Tensor] = []  # per prediction view (recipe.test_flip/neighbours)
        self.view_weights: list[np.ndarray] = []

    @property
    def input_size(self) -> int:
        return self.cfg.input_size

    def describe(self) -> dict:
        return {"model_type": self.model_type, "name": self.name, "model": to_dict(self.cfg),
                "pretrained_init": False, "finetune": recipe_dict(self.recipe), "flow": self.cfg.flow}

    def prepare(self, data: PairData, seed: int = 0) -> None:
        """Each pair's flow image, and each prediction view's (the recipe's test_flip / test_neighbours:
        `PairData.prediction_views`; flow computed on the view's own frames, for prediction only); each apex
        registered onto its onset first when the config says so."""
        self.cfg.input_size = data.size
        self.features = self._flow(data.registered(self.cfg.registration))
        views = data.prediction_views(self.recipe.test_flip, self.recipe.test_neighbours)[1:]
        self.view_features = [self._flow(v.registered(self.cfg.registration), f", prediction view {i}")
                              for i, (v, _) in enumerate(views, 1)]
        self.view_weights = [w for _, w in views]

    def _flow(self, data: PairData, what: str = "") -> torch.Tensor:
        feats = [flow_features(o, a, self.cfg.flow_size, self.cfg.flow)
                 for o, a in progress(zip(data.onset, data.apex), total=len(data),
                                      desc=f"optical flow ({self.cfg.flow}){what}", leave=False)]
        return torch.as_tensor(np.stack(feats)) if feats else torch.zeros(0, 3, self.cfg.flow_size, self.cfg.flow_size)

    def build(self) -> nn.Module:
        return FlowCNN(self.cfg, len(self.classes)).to(self.device)

    def batch_logits(self, model, view: int = 0) -> BatchLogits:
        """Logits of samples `idx`: view 0 their pairs, view v > 0 their prediction view v (prediction only)."""
        features = self.features if view == 0 else self.view_features[view - 1]

        def fn(idx: np.ndarray, train: bool, gen):
            x = features[torch.as_tensor(idx)].to(self.device)
            if train and self.recipe.augment and self.recipe.hflip:
                flip = (torch.rand(len(idx), generator=gen) < 0.5).to(self.device)
                x = torch.where(flip.view(-1, 1, 1, 1), hflip_flow(x), x)
            return model(x)
        return fn

    def param_groups(self, model):
        return classifier_param_groups(model, self.recipe.weight_decay, 1.0, 0)  # no layer-wise decay
