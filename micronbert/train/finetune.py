"""The fine-tuning loop shared by every method (μ-BERT, its ablations, the flow baseline), and the
method protocol around it: seeded fit with the recipe's loop, batched predict, save.

The recipe is `micronbert.train.recipe`, the methods by name `micronbert.train.methods`, the classifier
folder `micronbert.model.classifier`.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from micronbert.model.classifier import save_classifier
from micronbert.train.metrics import classification_metrics
from micronbert.train.recipe import FinetuneConfig, class_weights, epochs_for
from micronbert.train.schedule import warmup_cosine
from micronbert.utils.progress import progress

BatchLogits = Callable[[np.ndarray, bool, torch.Generator], torch.Tensor]


def train_loop(model: nn.Module, batch_logits: BatchLogits, train_idx: np.ndarray, labels: np.ndarray,
               num_classes: int, cfg: FinetuneConfig, groups: list[dict], generator: torch.Generator,
               device, desc: str = "train", val: Callable[[nn.Module], float] | None = None) -> dict:
    """Fixed-epoch training (`epochs_for`: the recipe's epochs, or fewer under its `max_steps`).
    `batch_logits(sample_indices, train, gen)` -> logits for those samples.
    With `val` (a score on held-out *training* subjects), the best-scoring epoch's weights are kept."""
    train_idx = np.asarray(train_idx)
    y_all = torch.tensor(np.asarray(labels), dtype=torch.long)
    weight = class_weights(labels[train_idx], num_classes, cfg.class_weights).to(device)
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999))
    steps_per_epoch = max(1, math.ceil(len(train_idx) / cfg.batch_size))
    epochs = epochs_for(cfg, len(train_idx))
    total = epochs * steps_per_epoch
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    step, history = 0, []
    best = (-math.inf, None, -1)
    for epoch in progress(range(epochs), desc=desc, unit="epoch", leave=False):
        model.train()
        order = train_idx[torch.randperm(len(train_idx), generator=generator).numpy()]
        losses = []
        for start in range(0, len(order), cfg.batch_size):
            batch = order[start:start + cfg.batch_size]
            lr = warmup_cosine(step, total, cfg.lr, warmup, cfg.min_lr)
            for g in opt.param_groups:
                g["lr"] = lr * g.get("lr_scale", 1.0)
            logits = batch_logits(batch, True, generator)
            loss = F.cross_entropy(logits, y_all[batch].to(device), weight=weight,
                                   label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], cfg.grad_clip)
            opt.step()
            losses.append(float(loss.detach()))
            step += 1
        entry = {"epoch": epoch + 1, "loss": float(np.mean(losses))}
        if val is not None:
            entry["val_uf1"] = score = float(val(model))
            if score > best[0]:
                best = (score, copy.deepcopy(model.state_dict()), epoch + 1)
        history.append(entry)
    if val is not None and best[1] is not None:
        model.load_state_dict(best[1])
    return {"history": history, "best_epoch": best[2] if val is not None else epochs,
            "final_loss": history[-1]["loss"]}


@torch.no_grad()
def predict_proba(model: nn.Module, batch_logits: BatchLogits, idx: np.ndarray, batch_size: int) -> np.ndarray:
    model.eval()
    out = []
    for start in range(0, len(idx), batch_size):
        out.append(torch.softmax(batch_logits(np.asarray(idx[start:start + batch_size]), False, None).float(), -1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


class TrainedMethod:
    """What every method shares: seeded fit with the recipe's loop, batched predict, save.
    A method provides build(), batch_logits(model, view=0) (view 0: the pairs, with training's augmented
    views; view v > 0: prediction view v of `view_weights`), param_groups(model) and input_size."""

    view_weights: list = []  # per extra prediction view, which samples have it ((N,) bool); set by prepare
    margin: float | None = None  # the face cache's crop margin: set by the constructor, recorded by save

    def fit(self, train_idx, labels, seed: int, val_idx=None, desc: str = "train") -> tuple[nn.Module, dict]:
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        model = self.build()
        val = _val_scorer(self, model, val_idx, labels) if val_idx is not None and len(val_idx) else None
        info = train_loop(model, self.batch_logits(model), train_idx, labels, len(self.classes), self.recipe,
                          self.param_groups(model), gen, self.device, desc, val)
        return model, info

    def predict(self, model, idx) -> np.ndarray:
        """Class probabilities of the samples `idx`: the mean over the prediction views each sample has (the
        pair, then `self.view_weights`' views: the recipe's test_flip / test_neighbours)."""
        idx, size = np.asarray(idx), self.recipe.eval_batch_size
        total = predict_proba(model, self.batch_logits(model), idx, size)
        count = np.ones(len(idx))
        for view, weight in enumerate(self.view_weights, 1):
            has = np.asarray(weight)[idx]
            if has.any():
                total[has] += predict_proba(model, self.batch_logits(model, view), idx[has], size)
                count += has
        return total / count[:, None]

    def save(self, model, out_dir, protocol: str, aligned: bool = True, **extra) -> Path:
        return save_classifier(out_dir, model, self.classes, protocol, self.recipe, aligned=aligned,
                               margin=self.margin if aligned else None, **extra)


def _val_scorer(method, model, val_idx, labels):
    def score(_model) -> float:
        probs = method.predict(_model, val_idx)
        uf1 = classification_metrics(labels[val_idx], probs.argmax(1), method.classes)["uf1"]
        return -1.0 if uf1 is None else uf1
    return score
