"""Helpers for tests/infer: fine-tuned classifier folders as `micronbert finetune` writes them (random weights).

(A uniquely named module: several conftest.py files exist, so `from conftest import` is ambiguous.)
"""
from __future__ import annotations

import torch

from micronbert.config import preset
from micronbert.model.checkpoint import save_model
from micronbert.model.heads import MicronBertClassifier

CLASSES = ["negative", "positive", "surprise"]


def make_classifier_dir(path, preset_name="test", seed=0, finetune=None, margin=None, **overrides):
    cfg = preset(preset_name, **overrides)
    torch.manual_seed(seed)
    model = MicronBertClassifier(cfg, len(CLASSES))
    with torch.no_grad():  # a random head gives near-uniform probabilities; make them informative
        model.head.fc.weight.normal_(0, 0.5)
    save_model(path, model.state_dict(), cfg, classes=CLASSES, protocol="casme2-3",
               finetune={"epochs": 0, "note": "test fixture", **(finetune or {})},
               input={"size": cfg.img_size, "aligned": True, **({} if margin is None else {"margin": margin})})
    return path

