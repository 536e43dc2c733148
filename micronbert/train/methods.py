"""The methods by name: the one table behind `evaluate/finetune/scaling --model`, and μ-BERT as a method.

Each row of `METHODS` says what the name means (description), which recipe family it trains with, how its
model config differs from the preset (`switches`), whether it starts from the --init weights, and its
builder. Commands read their --model choices from this table.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import nn

from micronbert.config import ModelConfig, place_poi_prior, to_dict
from micronbert.errors import MicronbertError
from micronbert.model.classifier import to_float
from micronbert.model.heads import MicronBertClassifier
from micronbert.model.mubert import normalise_images
from micronbert.model.poi import mask_patch_share
from micronbert.train.finetune import BatchLogits, TrainedMethod
from micronbert.train.flow_baseline import FlowCNNMethod, FlowConfig
from micronbert.train.pairdata import PairData
from micronbert.train.recipe import FinetuneConfig, classifier_param_groups, family_recipe, paired_augment, recipe_dict
from micronbert.utils.progress import progress


class MicronBertMethod(TrainedMethod):
    """Builds, trains and applies a MicronBertClassifier with the recipe; one instance per evaluation."""

    model_type = "micronbert"

    def __init__(self, model_cfg: ModelConfig, classes: Sequence[str], recipe: FinetuneConfig,
                 init_state: dict[str, torch.Tensor] | None = None, device: str | torch.device = "cpu",
                 name: str = "micronbert", margin: float | None = None):
        self.cfg = place_poi_prior(model_cfg, margin)  # a face prior sits where the cache's crops put the face
        self.margin = margin
        self.classes = list(classes)
        self.recipe = recipe
        self.init_state = init_state
        self.device = torch.device(device)
        self.name = name
        self.data: PairData | None = None
        self.tokens: tuple[torch.Tensor, ...] | None = None  # cached hidden states, one per pair frame
        self.shares: torch.Tensor | None = None  # (V, N, P) cached views' own-face share per patch (prior "own")
        self.cached_depths: list[int] = []  # how many blocks each cached frame went through
        self.view_data: list[PairData] = []  # the prediction views' pairs, registered (recipe.test_flip/neighbours)
        self.view_weights: list[np.ndarray] = []  # which samples have each view
        self.random_backbone: dict[str, torch.Tensor] | None = None  # without init_state: drawn once by prepare

    @property
    def input_size(self) -> int:
        return self.cfg.img_size

    def describe(self) -> dict:
        return {"model_type": self.model_type, "name": self.name, "model": to_dict(self.cfg),
                "pretrained_init": self.init_state is not None, "finetune": recipe_dict(self.recipe)}

    def build(self) -> nn.Module:
        model = MicronBertClassifier(self.cfg, len(self.classes), self.recipe.dropout)
        if self.init_state is not None:
            missing = model.load_backbone(self.init_state)
            enc_missing = [k for k in missing if k.startswith("encoder.")]
            if enc_missing:
                raise MicronbertError(f"the --init weights lack encoder keys {enc_missing[:3]}")
        elif self.random_backbone is not None:
            model.backbone.load_state_dict(self.random_backbone)
        if self.recipe.freeze_encoder:
            encoder = model.backbone.encoder
            for p in encoder.parameters():
                p.requires_grad_(False)
            if self.recipe.train_blocks:  # the last blocks and the final norm train on the cached inputs
                for p in list(encoder.blocks[self.first_trained_block:].parameters()) + list(encoder.norm.parameters()):
                    p.requires_grad_(True)
        return model.to(self.device)

    @property
    def first_trained_block(self) -> int:
        return max(0, self.cfg.depth - self.recipe.train_blocks)

    def prepare(self, data: PairData, seed: int = 0) -> None:
        """Keep the (registered) frames; with a frozen encoder, run its frozen part once per sample, view
        (the clean pair, then `cached_views` paired-augmented ones) and frame of `pair_frames` (the shifted
        apexes are shifted after augmentation, as at inference), reused by every fold. The recipe's
        prediction views (test_flip, test_neighbours: `PairData.prediction_views`) are registered here and
        go through the whole model at prediction (in LOSO each sample is predicted once, so caching them
        would save nothing and double the cache); training never sees them."""
        if data.size != self.cfg.img_size:
            raise MicronbertError(f"faces are {data.size} px but the model expects {self.cfg.img_size} px "
                                  f"(preset/--init and the cache disagree)")
        if self.init_state is None:
            # A random encoder (no-pretrain) is drawn once per evaluation, here: the frozen cache, every fold's
            # model (each fit seeds its own draw) and the saved classifiers must all hold the same one.
            torch.manual_seed(seed)
            backbone = MicronBertClassifier(self.cfg, len(self.classes), self.recipe.dropout).backbone
            self.random_backbone = {k: v.clone() for k, v in backbone.state_dict().items()}
        self.data = data.registered(self.cfg.registration)
        if self.cfg.reads_face_mask and data.face is None:
            print(f"warning: {self.name}: these pairs carry no face landmarks (raw frames, not a face cache): "
                  "PoI is confined to the template's hull instead of each clip's own", file=sys.stderr)
        views = data.prediction_views(self.recipe.test_flip, self.recipe.test_neighbours)[1:]
        self.view_data = [v.registered(self.cfg.registration) for v, _ in views]
        self.view_weights = [w for _, w in views]
        if self.recipe.freeze_encoder:
            model = self.build().eval()
            n_views = 1 + (self.recipe.cached_views if self.recipe.augment else 0)
            # per frame of pair_frames (onset, apex, shifted apexes, ...): one (V, N, 1+P, D) block, after the
            # frozen blocks or fewer (a frame that directional DMA reads earlier)
            self.cached_depths = [min(d, self.first_trained_block) for d in model.frame_depths]
            self.tokens, self.shares = self._encode(model, self.data, n_views,
                                                    torch.Generator().manual_seed(seed + 7919))

    def _face(self, data: PairData, idx) -> torch.Tensor | None:
        """(B, S, S) face masks in [0, 1] of samples `idx`, or None when the model does not read them or the
        pairs carry none."""
        if not self.cfg.reads_face_mask or data.face is None:
            return None
        return torch.as_tensor(data.face[idx], device=self.device).float()

    @torch.no_grad()
    def _encode(self, model, data: PairData, views: int, gen) -> tuple[tuple[torch.Tensor, ...], torch.Tensor | None]:
        """The frozen part's output for every frame of every pair: view 0 the pair, views 1.. augmented; and
        with the prior "own", each view's face share per patch (the mask moved as the view moved the face)."""
        encoder = model.backbone.encoder
        keep = torch.float16 if self.device.type == "cuda" else torch.float32
        outs: list[list] = [[] for _ in range(model.frames_per_pair)]
        shares: list = []
        for start in progress(range(0, len(data), 32), desc="encode (frozen)", unit="batch", leave=False):
            onset = to_float(data.onset[start:start + 32], self.device)
            apex = to_float(data.apex[start:start + 32], self.device)
            face = self._face(data, slice(start, start + 32))
            per_view: list[list] = [[] for _ in outs]
            per_view_share = []
            for v in range(views):
                o, a, f = (onset, apex, face) if v == 0 else paired_augment(onset, apex, self.recipe, gen, face)
                for j, x in enumerate(model.pair_frames(normalise_images(o), normalise_images(a))):
                    per_view[j].append(encoder.hidden(x, self.cached_depths[j]).to(keep))
                if f is not None:
                    per_view_share.append(mask_patch_share(f, self.cfg.patch_size))
            for j, hid in enumerate(per_view):
                outs[j].append(torch.stack(hid))
            if per_view_share:
                shares.append(torch.stack(per_view_share))
        return tuple(torch.cat(o, 1) for o in outs), (torch.cat(shares, 1) if shares else None)

    def batch_logits(self, model, view: int = 0) -> BatchLogits:
        """Logits of samples `idx`: view 0 their pairs (training: a random cached view), view v > 0 their
        prediction view v (prediction only)."""
        tokens, data = (self.tokens, self.data) if view == 0 else (None, self.view_data[view - 1])
        shares = self.shares if view == 0 else None

        def fn(idx: np.ndarray, train: bool, gen):
            if tokens is not None:
                t = torch.as_tensor(idx, device=tokens[0].device)
                views = tokens[0].shape[0]
                v = (torch.randint(0, views, (len(idx),), generator=gen).to(t.device) if train and views > 1
                     else torch.zeros_like(t))
                hidden = [frame[v, t].float() for frame in tokens]
                share = None if shares is None else shares[v.to(shares.device), t.to(shares.device)]
                return model.from_frames(model.advance(hidden, self.cached_depths), share)["logits"]
            onset, apex = to_float(data.onset[idx], self.device), to_float(data.apex[idx], self.device)
            face = self._face(data, idx)
            if train and self.recipe.augment:
                onset, apex, face = paired_augment(onset, apex, self.recipe, gen, face)
            share = None if face is None else mask_patch_share(face, self.cfg.patch_size)
            return model(normalise_images(onset), normalise_images(apex), share)
        return fn

    def param_groups(self, model):
        return classifier_param_groups(model, self.recipe.weight_decay, self.recipe.layer_decay, self.cfg.depth)


@dataclass(frozen=True)
class MethodSpec:
    description: str
    family: str                    # "mubert" (built from a preset or --init) or "flow"
    switches: dict = field(default_factory=dict)  # ModelConfig (flow: FlowConfig) fields changed from the default
    uses_init: bool = True         # starts from the --init weights when given


# What every μ-BERT row recognises with unless its switches say otherwise: PoI's learned saliency confined to
# where alignment puts the face (docs/motion.md §22-§24: ahead of the learned map alone across layouts, level
# within subjects). Pretraining keeps the learned map (the prior there adds nothing, §23), so old pretrained
# folders and their config.json are unchanged; recognition places the prior on top of them.
RECOGNITION_DEFAULTS = {"poi_prior": "face"}

METHODS: dict[str, MethodSpec] = {
    "micronbert": MethodSpec("μ-BERT: pretrained encoder (--init), DMA with direction, PoI confined to the face (the "
                             "learned saliency times where alignment puts the face: the template's landmark hull "
                             "and forehead)", "mubert"),
    "no-dma": MethodSpec("μ-BERT with plain cross-attention in place of DMA (no diagonal anywhere; the grid head "
                        "then reads the token change gated by PoI alone)", "mubert", {"use_dma": False}),
    "no-poi": MethodSpec("μ-BERT without PoI gating", "mubert", {"use_poi": False}),
    "learned-poi": MethodSpec("μ-BERT whose PoI gate is the learned saliency alone, as in the paper (no face "
                              "prior; what `micronbert` was until the face prior became its default)", "mubert",
                              {"poi_prior": "none"}),
    "hull-poi": MethodSpec("μ-BERT whose PoI saliency is confined to the template's 68-landmark hull (no "
                           "forehead)", "mubert", {"poi_prior": "hull"}),
    "own-poi": MethodSpec("μ-BERT whose PoI saliency is confined to each clip's own 68-landmark hull (the face "
                          "cache's landmarks of the clip; the template hull where a clip has none)", "mubert",
                          {"poi_prior": "own"}),
    "no-direction": MethodSpec("μ-BERT without directional DMA (the change map's size only, not which way)",
                               "mubert", {"dma_shift_px": 0.0}),
    "with-fdma": MethodSpec("μ-BERT whose grid head also takes the PoI-gated F_DMA tokens (the head before "
                            "they were dropped: they carry the onset's appearance)", "mubert",
                            {"head_dma_features": True}),
    "early-direction": MethodSpec("μ-BERT reading directional DMA after the first encoder block instead of the "
                                  "last (the frozen recipe caches the shifted apexes: about 2× faster; not an "
                                  "ablation)", "mubert", {"dma_direction_blocks": 1}),
    "no-registration": MethodSpec("μ-BERT without fine registration of the apex onto the onset", "mubert",
                                  {"registration": "none"}),
    "paper": MethodSpec("μ-BERT as the paper/release formulates it: raw softmax diagonal on dot-product logits, "
                        "mean-pooled head with the apex contextual token, no registration (give it --init "
                        "weights pretrained with --dma-temperature 0 --identity-weight 0)", "mubert",
                        {"dma_signal": "paper", "dma_cosine_temperature": 0.0, "head": "paper", "dma_shift_px": 0.0,
                         "head_dma_map": False, "registration": "none", "poi_prior": "none"}),
    "no-pretrain": MethodSpec("μ-BERT from random initialisation (architecture of --init or --preset, its "
                              "weights unused)", "mubert", uses_init=False),
    "flow-cnn": MethodSpec("optical-flow baseline: 3-stream CNN on onset→apex (u, v, strain), STSTNet-style",
                           "flow", uses_init=False),
    # the flow baseline with each flow named (flow-cnn uses FlowConfig's default); switches are FlowConfig fields
    "flow-cnn-tvl1": MethodSpec("flow-cnn on TV-L1 flow", "flow", {"flow": "tvl1"}, uses_init=False),
    "flow-cnn-farneback": MethodSpec("flow-cnn on Farnebäck flow", "flow", {"flow": "farneback"}, uses_init=False),
    "flow-cnn-registered": MethodSpec("flow-cnn on pairs whose apex is first registered onto the onset, as "
                                      "μ-BERT's are (translation)", "flow", {"registration": "translation"},
                                      uses_init=False),
}


def method_spec(model: str) -> MethodSpec:
    if model not in METHODS:
        raise MicronbertError(f"unknown --model {model!r}; choose from {sorted(METHODS)}")
    return METHODS[model]


def default_recipe(model: str, freeze_encoder: bool = False, **overrides) -> FinetuneConfig:
    """The recipe of a model's family; `overrides` with value None are ignored (unset CLI flags)."""
    if method_spec(model).family == "flow":
        return family_recipe("flow", **overrides)
    return family_recipe("frozen" if freeze_encoder else "full", **overrides)


def build_method(model: str, classes: Sequence[str], recipe: FinetuneConfig, init: str | None = None,
                 preset_name: str = "tiny", device: str | torch.device = "cpu", size: int | None = None,
                 margin: float | None = None):
    """A method object (fit/predict/prepare/save/describe, input_size) for one row of a results table;
    `margin`: the crop margin of the face cache it will read (places a PoI face prior, goes into the saved
    classifiers)."""
    spec = method_spec(model)
    if spec.family == "flow":
        return FlowCNNMethod(classes, recipe, FlowConfig(**spec.switches, **({"input_size": size} if size else {})),
                             device=device, name=model, margin=margin)
    from micronbert.config import preset

    state = None
    if init:
        from micronbert.model.checkpoint import load_model_dir

        state, cfg, _ = load_model_dir(init)
    else:
        cfg = preset(preset_name, **({"img_size": size} if size else {}))
    return MicronBertMethod(recognition_config(model, cfg), classes, recipe, state if spec.uses_init else None,
                            device=device, name=model, margin=margin)


def recognition_config(model: str, cfg: ModelConfig) -> ModelConfig:
    """The config a μ-BERT row recognises with: the preset's or the --init model's, with the recognition
    defaults, then the row's own switches."""
    return dataclasses.replace(cfg, **{**RECOGNITION_DEFAULTS, **method_spec(model).switches})


def resolve_device(device: str | None) -> torch.device:
    if device:
        return torch.device(device)
    if torch.cuda.is_available():  # under torchrun each rank takes its own GPU
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")
