"""Import the authors' released checkpoint (uark-cviu/Micron-BERT, `*.pth`) into a micronbert model folder.

The release is a `torch.save` dict {model, args (argparse.Namespace), epoch, ...}. It is read with
`weights_only=True` and an allow-list of exactly one class (argparse.Namespace): a pickle that names any
other global (os.system, subprocess.Popen, ...) is refused before anything is imported or called.

Names are mapped onto ours (see OFFICIAL_KEY_MAP); every key is accounted for: mapped, checked and
dropped (fixed position tables, the student's copy of the encoder), or reported as unknown. The
architecture comes from `args` (the release's model constructor), cross-checked against the tensors.
"""
from __future__ import annotations

import argparse
import math
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from micronbert.config import ModelConfig
from micronbert.errors import MicronbertError

REPORT_NAME = "conversion_report.json"

# (release prefix, our prefix), first match wins; order matters (student./teacher. before bare head.).
OFFICIAL_KEY_MAP: list[tuple[str, str]] = [
    ("teacher.backbone.", "agreement.teacher_encoder."),
    ("student.head.", "agreement.student_head."),
    ("teacher.head.", "agreement.teacher_head."),
    ("dino_loss_fn.center", "agreement.center"),
    ("backbone.", "encoder."),
    ("att.", "dma."),
    ("decoder_embed.", "decoder.embed."),
    ("decoder_blocks.", "decoder.blocks."),
    ("decoder_norm.", "decoder.norm."),
    ("decoder_pred.", "decoder.pred."),
]
# Keys with fixed content we recompute (sin-cos tables) or that duplicate another key: checked, not kept.
_POS_TABLES = {"backbone.pos_embed": "encoder", "teacher.backbone.pos_embed": "teacher encoder",
               "decoder_pos_embed": "decoder"}
_WEIGHT_NORM = {"last_layer.weight_g": "last_layer.parametrizations.weight.original0",
                "last_layer.weight_v": "last_layer.parametrizations.weight.original1"}
POS_TOLERANCE = 1e-4


@dataclass
class ConversionReport:
    source: str
    epoch: Any = None
    args: dict = field(default_factory=dict)
    mapped: int = 0
    unknown: list[str] = field(default_factory=list)       # release keys we have no place for
    missing: list[str] = field(default_factory=list)       # our keys the release did not provide
    dropped: dict[str, str] = field(default_factory=dict)  # release key -> why it was not kept
    checks: dict[str, Any] = field(default_factory=dict)   # pos tables, student copy: max abs diffs
    warnings: list[str] = field(default_factory=list)
    other_entries: list[str] = field(default_factory=list)  # container entries besides model/args/epoch

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


# -- loading -----------------------------------------------------------------------------------------
def load_official(path: str | Path) -> dict:
    """The checkpoint container, unpickled with weights_only and argparse.Namespace as the only extra global."""
    path = Path(path)
    if not path.is_file():
        raise MicronbertError(f"official checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        m = re.search(r"GLOBAL ([\w.]+)", msg) or re.search(r"global ([\w.]+)", msg)
        if m:
            name = m.group(1)
            shown = re.sub(r"^(posix|nt)\.", "os.", name)  # os.system pickles as posix.system on Linux
            alias = f" ({name})" if shown != name else ""
            raise MicronbertError(f"{path}: refusing to unpickle {shown}{alias}: only tensors, plain containers "
                                  "and argparse.Namespace are allowed in an official checkpoint") from None
        # torch's text advises weights_only=False, which is exactly what we refuse: show only the cause.
        m = re.search(r"WeightsUnpickler error:\s*(.+?)\n\n", msg, re.S)
        cause = m.group(1).strip() if m else msg.splitlines()[0]
        raise MicronbertError(f"{path}: not a readable PyTorch checkpoint ({cause}); refusing to load it "
                              "without the weights-only safeguard") from None
    except (RuntimeError, OSError, EOFError, ValueError, AttributeError) as exc:
        raise MicronbertError(f"{path}: not a loadable PyTorch checkpoint: {str(exc).splitlines()[0]}") from None
    if not isinstance(obj, dict):
        raise MicronbertError(f"{path}: expected a dict with 'model', 'args', 'epoch'; got {type(obj).__name__}")
    if "model" not in obj:
        raise MicronbertError(f"{path}: no 'model' entry (found {sorted(map(str, obj))[:10]}); "
                              "is this the authors' μ-BERT checkpoint?")
    if not isinstance(obj["model"], dict) or not all(isinstance(v, torch.Tensor) for v in obj["model"].values()):
        raise MicronbertError(f"{path}: 'model' is not a state dict of tensors")
    return obj


def args_to_json(args: Any) -> dict:
    """argparse.Namespace / dict -> plain JSON values (unknown types become strings)."""
    if args is None:
        return {}
    raw = vars(args) if isinstance(args, argparse.Namespace) else dict(args) if isinstance(args, dict) else {}

    def plain(v):
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        return str(v)

    return {str(k): plain(v) for k, v in raw.items()}


def strip_module(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        while k.startswith("module."):
            k = k[len("module."):]
        out[k] = v
    return out


# -- configuration -----------------------------------------------------------------------------------
def config_from_args(args: dict, state: dict[str, torch.Tensor], report: ConversionReport | None = None) -> ModelConfig:
    """Our ModelConfig from the release's args; sizes the args lack are read off the tensors."""
    warn = (report.warnings.append if report is not None else (lambda _m: None))

    def shape(key):
        return tuple(state[key].shape) if key in state else None

    def depth_of(prefix):
        idx = {int(m.group(1)) for k in state for m in [re.match(re.escape(prefix) + r"(\d+)\.", k)] if m}
        return max(idx) + 1 if idx else 0

    pe = shape("backbone.patch_embed.proj.weight")
    embed = args.get("embed_dim", pe[0] if pe else None)
    patch = args.get("patch_size", pe[-1] if pe else None)
    if embed is None or patch is None:
        raise MicronbertError("cannot tell embed_dim/patch_size: neither args nor backbone.patch_embed.proj.weight")
    img = args.get("img_size") or args.get("input_size")
    if img is None:
        pos = shape("backbone.pos_embed")
        img = int(math.isqrt(pos[1] - 1)) * patch if pos else 224
        warn(f"args has no img_size; using {img}")
    depth = args.get("depth", depth_of("backbone.blocks."))
    fc1 = shape("backbone.blocks.0.mlp.fc1.weight")
    mlp_ratio = float(args.get("mlp_ratio", fc1[0] / embed if fc1 else 4.0))
    has_decoder = any(k.startswith("decoder_") for k in state)
    dec_embed = shape("decoder_embed.weight")
    enable_dino = bool(args.get("enable_dino", any(k.startswith("teacher.") for k in state)))
    kw = dict(img_size=int(img), patch_size=int(patch), embed_dim=int(embed), depth=int(depth),
              num_heads=int(args.get("num_heads", 4)), mlp_ratio=mlp_ratio, dma_heads=1,
              use_dma=bool(args.get("diag_att", False)), dma_query="first",
              dma_cosine_temperature=0.0,  # the release's scaled dot-product logits
              dma_signal="paper", head="paper", registration="none",  # as the release: raw diagonal, mean head
              poi_temperature=0.1,  # the saliency temperature these weights were converted with before
              use_poi=enable_dino, poi_variant="dino" if enable_dino else "mse")
    if "num_heads" not in args:
        warn("args has no num_heads; assuming 4 (the release's small model)")
    if has_decoder:
        kw.update(decoder_embed_dim=int(args.get("decoder_embed_dim", dec_embed[0] if dec_embed else embed)),
                  decoder_depth=int(args.get("decoder_depth", depth_of("decoder_blocks."))),
                  decoder_num_heads=int(args.get("decoder_num_heads", 4)))
    if enable_dino:
        h0, h4 = shape("student.head.mlp.0.weight"), shape("student.head.mlp.4.weight")
        center = shape("dino_loss_fn.center")
        out_dim = args.get("out_dim", center[-1] if center else 65536)
        kw.update(dino_out_dim=int(out_dim))
        if h0:
            kw["dino_hidden_dim"] = h0[0]
        if h4:
            kw["dino_bottleneck_dim"] = h4[0]
    try:
        return ModelConfig(**kw)
    except (TypeError, ValueError) as exc:
        raise MicronbertError(f"the checkpoint's args give an invalid configuration: {exc}") from None


# -- state dict ----------------------------------------------------------------------------------------
def _map_name(key: str) -> str | None:
    for old, new in OFFICIAL_KEY_MAP:
        if key == old or key.startswith(old):
            name = new + key[len(old):]
            for wn_old, wn_new in _WEIGHT_NORM.items():
                if name.endswith(wn_old):
                    name = name[: -len(wn_old)] + wn_new
            return name
    return None


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float | None:
    if a.is_meta or b.is_meta:
        return None
    return float((a.float() - b.float()).abs().max()) if a.numel() else 0.0


def expected_state_shapes(cfg: ModelConfig, with_decoder: bool) -> dict[str, tuple[int, ...]]:
    """Our model's persistent state (names -> shapes), built on the meta device (no memory)."""
    from micronbert.model.mubert import MicronBertModel

    with torch.device("meta"):
        model = MicronBertModel(cfg, with_decoder=with_decoder, with_agreement=cfg.use_poi)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def map_official_state(state: dict[str, torch.Tensor], cfg: ModelConfig, report: ConversionReport,
                       allow_missing: bool = False) -> dict[str, torch.Tensor]:
    """Release state dict -> ours. Shapes must match exactly; every key is reported somewhere."""
    from micronbert.model.encoder import sincos_2d

    state = strip_module(state)
    with_decoder = any(k.startswith("decoder_") for k in state)
    expected = expected_state_shapes(cfg, with_decoder)
    out: dict[str, torch.Tensor] = {}
    for key in sorted(state):
        value = state[key]
        if key in _POS_TABLES:
            dim = value.shape[-1]
            grid = cfg.grid
            want = (1, grid * grid + 1, dim)
            if tuple(value.shape) != want:
                raise MicronbertError(f"{key}: expected shape {list(want)}, got {list(value.shape)}")
            diff = _max_diff(value, sincos_2d(dim, grid)[None])
            report.checks[f"{key} vs sin-cos (max abs diff)"] = diff
            report.dropped[key] = "fixed 2-D sin-cos table, recomputed"
            if diff is not None and diff > POS_TOLERANCE:
                report.warnings.append(f"{key} differs from our sin-cos table by up to {diff:.3g}: the "
                                       f"{_POS_TABLES[key]} was trained with other positions; we use ours")
            continue
        if key.startswith("student.backbone."):
            twin = "backbone." + key[len("student.backbone."):]
            if twin in state and tuple(state[twin].shape) == tuple(value.shape):
                diff = _max_diff(value, state[twin])
                report.dropped[key] = f"duplicate of {twin}"
                if diff is not None and diff > 0:
                    report.warnings.append(f"{key} differs from {twin} by {diff:.3g}; kept {twin}")
                    report.checks.setdefault("student.backbone vs backbone (max abs diff)", 0.0)
                    report.checks["student.backbone vs backbone (max abs diff)"] = max(
                        diff, report.checks["student.backbone vs backbone (max abs diff)"])
            else:
                report.unknown.append(key)
            continue
        name = _map_name(key)
        if name is None or name not in expected:
            report.unknown.append(key)
            continue
        want = expected[name]
        if tuple(value.shape) != want:
            raise MicronbertError(f"{key} (our {name}): expected shape {list(want)}, got {list(value.shape)}")
        out[name] = value
    report.mapped = len(out)
    report.missing = sorted(k for k in expected if k not in out)
    if report.missing and not allow_missing:
        raise MicronbertError(f"the checkpoint lacks {len(report.missing)} tensor(s) the model needs: "
                              f"{report.missing[:8]}{' ...' if len(report.missing) > 8 else ''}")
    return out


def convert_official(path: str | Path, out_dir: str | Path, allow_missing: bool = False) -> ConversionReport:
    """Read the release's .pth and write a model folder (model.safetensors, config.json, conversion_report.json)."""
    from micronbert.model.checkpoint import save_model
    from micronbert.utils.io import atomic_write_json

    path = Path(path)
    obj = load_official(path)
    args = args_to_json(obj.get("args"))
    epoch = obj.get("epoch")
    epoch = epoch if isinstance(epoch, (int, float, str)) or epoch is None else str(epoch)
    report = ConversionReport(source=str(path), epoch=epoch, args=args,
                              other_entries=sorted(str(k) for k in obj if k not in ("model", "args", "epoch")))
    if obj.get("args") is None:
        report.warnings.append("no 'args' in the checkpoint: sizes read off the tensors")
    state = strip_module(obj["model"])
    cfg = config_from_args(args, state, report)
    mapped = map_official_state(state, cfg, report, allow_missing=allow_missing)
    if report.missing:  # allowed: fill from a fresh initialisation so the folder loads
        from micronbert.model.mubert import MicronBertModel

        fresh = MicronBertModel(cfg, with_decoder=any(k.startswith("decoder.") for k in mapped),
                                with_agreement=cfg.use_poi).state_dict()
        for k in report.missing:
            mapped[k] = fresh[k]
    out_dir = Path(out_dir)
    save_model(out_dir, mapped, cfg, source={"official": str(path), "epoch": epoch, "args": args})
    atomic_write_json(out_dir / REPORT_NAME, report.to_dict())
    return report
