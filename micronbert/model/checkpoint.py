"""Weights on disk: safetensors (never pickle) plus config.json beside them, written atomically.

A model folder holds `model.safetensors` and `config.json` ({"model": ModelConfig, ...}). Anything that
takes `--weights`/`--init` accepts the folder or the .safetensors file inside it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from micronbert.config import ModelConfig, from_dict, save_json
from micronbert.errors import MicronbertError
from micronbert.utils.io import atomic_path

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


def save_weights(path: str | os.PathLike, state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    # safetensors refuses shared or non-contiguous storage: give it private contiguous copies.
    clean = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    with atomic_path(path) as tmp:
        save_file(clean, str(tmp), metadata=metadata)


def resolve_weights(path: str | os.PathLike) -> tuple[Path, Path]:
    """(weights file, config file) for a model folder or a .safetensors file with config.json beside it."""
    path = Path(path)
    if path.is_dir():
        weights, config = path / WEIGHTS_NAME, path / CONFIG_NAME
    else:
        weights, config = path, path.parent / CONFIG_NAME
    if not weights.is_file():
        raise MicronbertError(f"weights not found: {weights}")
    if not config.is_file():
        raise MicronbertError(f"config.json not found beside the weights: {config}")
    return weights, config


def load_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise MicronbertError(f"cannot read weights {path}: {exc}") from exc


def read_config(path: str | os.PathLike) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise MicronbertError(f"cannot read {path}: {exc}") from exc


def save_model(out_dir: str | os.PathLike, state: dict[str, torch.Tensor], model_cfg: ModelConfig, **sections) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_weights(out_dir / WEIGHTS_NAME, state)
    save_json(out_dir / CONFIG_NAME, model=model_cfg, **sections)
    return out_dir


# Fields that changed meaning when they were introduced (issue 16): a config.json written before them
# described the raw softmax diagonal, the mean-pooled head and no registration.
_LEGACY_MODEL_FIELDS = {"dma_signal": "paper", "head": "paper", "registration": "none"}


# Head-only fields added later (no encoder weights): a config.json without them that came with a trained
# head describes that head (no direction channels, the F_DMA channel); one without a head (a pretrained
# encoder) gets today's defaults, because the head that fine-tuning builds on it is new.
_LEGACY_HEAD_FIELDS = {"dma_shift_px": 0.0, "head_dma_features": True, "dma_direction_blocks": 0}


def model_config_from_dict(data: dict, where: str, trained_head: bool = True) -> ModelConfig:
    """ModelConfig from a saved config.json's "model" section; older files keep their formulation.
    `trained_head`: the file came with a recognition head's weights (a classifier), not only an encoder."""
    if "dma_signal" not in data:
        data = {**data, **{k: v for k, v in _LEGACY_MODEL_FIELDS.items() if k not in data}}
    if trained_head:
        data = {**data, **{k: v for k, v in _LEGACY_HEAD_FIELDS.items() if k not in data}}
    return from_dict(ModelConfig, data, where)


def load_model_dir(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], ModelConfig, dict]:
    """(state dict, model config, the whole config.json) of a saved model."""
    weights, config = resolve_weights(path)
    data = read_config(config)
    if "model" not in data:
        raise MicronbertError(f"{config}: no 'model' section")
    trained_head = "classes" in data  # a classifier; a pretraining run's config has no classes
    return load_weights(weights), model_config_from_dict(data["model"], str(config), trained_head), data


def load_state_checked(model: torch.nn.Module, state: dict[str, torch.Tensor], source,
                       ignore_unexpected: tuple[str, ...] = ()) -> None:
    """Load `state` into `model` (built from the config.json beside the weights) after the one check that
    they fit: every shared key has the saved shape, no model key is missing, and no saved key is left
    over unless it starts with a prefix in `ignore_unexpected` ("" ignores every left-over key)."""
    own = model.state_dict()
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
             if k in own and v.shape != own[k].shape]
    if wrong:
        raise MicronbertError(f"{source}: weights do not fit config.json (saved vs expected): {wrong[:3]}")
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own and not k.startswith(ignore_unexpected)]
    if missing or unexpected:
        raise MicronbertError(f"{source}: weights do not match config.json: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")
    model.load_state_dict({k: v for k, v in state.items() if k in own})


def load_pretrained(path: str | os.PathLike, with_decoder: bool = True):
    """A MicronBertModel with the saved pretraining weights loaded (strictly)."""
    from micronbert.model.mubert import MicronBertModel

    state, cfg, _ = load_model_dir(path)
    has_agreement = any(k.startswith("agreement.") for k in state)
    model = MicronBertModel(cfg, with_decoder=with_decoder and any(k.startswith("decoder.") for k in state),
                            with_agreement=has_agreement)
    # a decoder that was saved but not asked for is left out on purpose
    load_state_checked(model, state, path, ignore_unexpected=() if with_decoder else ("decoder.",))
    return model, cfg
