"""ONNX export of the recognition model.

Graph contract (written into the model's metadata too):
  inputs   onset, apex   uint8 (B, S, S, 3), RGB, aligned faces; /255 and ImageNet normalisation happen
                         inside the graph, so a deployment needs no knowledge of our statistics. The
                         apex must already be registered onto the onset when the model's config has
                         `registration` (faces/register.register_pair; ECC is not an ONNX op)
           face_mask     uint8 (B, S, S), only for a classifier whose PoI prior is "own": 1 inside the
                         face's own 68-landmark hull in the aligned crop (faces/template.own_hull_mask)
  outputs  probabilities float32 (B, C)     softmax over config.json's classes; when the classifier's recipe
                         has `test_flip`, the mean of the pair's and of its mirror image's (the given,
                         registered pair flipped left-right inside the graph), as `evaluate` scored it;
                         a recipe with `test_neighbours` also averaged the pairs of the onset with the
                         frames just before and after the apex: run the graph on those pairs and average
                         (the metadata's "probabilities" entry says which)
           dma_map       float32 (B, g, g)  DMA diagonal (low = change), g = S / patch
           poi_map       float32 (B, g, g)  PoI saliency (mean 1)
           dma_motion    float32 (B, g, g, 2)  directional DMA (x, y; positive = right / down), only when
                         the model reads direction (config dma_shift_px > 0 with the grid head)
The chunked DMA is a custom autograd Function, which ONNX cannot trace; export switches each DMA to
its `traceable` path, the same quantity written with plain ops (the N×N scores are small at inference size).
"""
from __future__ import annotations

import contextlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from micronbert.config import IMAGENET_MEAN, IMAGENET_STD
from micronbert.errors import MicronbertError
from micronbert.model.dma import DiagonalMicroAttention, diagonal_attention_traceable
from micronbert.model.poi import mask_patch_share

OPSET = 17


# Same value as dma.diagonal_attention(_naive) in plain ops (kept under this name for callers).
_traceable_diagonal = diagonal_attention_traceable


@contextlib.contextmanager
def export_mode(model: nn.Module):
    """Route every DMA in `model` through its traceable formulation (its `traceable` flag) while exporting."""
    dmas = [m for m in model.modules() if isinstance(m, DiagonalMicroAttention)]
    before = [m.traceable for m in dmas]
    for m in dmas:
        m.traceable = True
    try:
        yield
    finally:
        for m, flag in zip(dmas, before):
            m.traceable = flag


class ExportableClassifier(nn.Module):
    """uint8 NHWC onset/apex[, face_mask] -> (probabilities, dma_map, poi_map[, dma_motion]): the graph contract
    above."""

    def __init__(self, classifier: nn.Module, size: int, mirror: bool = False):
        super().__init__()
        self.classifier = classifier
        self.mirror = mirror
        self.grid = size // classifier.cfg.patch_size
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0, persistent=False)

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return (x.permute(0, 3, 1, 2).float() - self.mean) / self.std

    def forward(self, onset: torch.Tensor, apex: torch.Tensor, face_mask: torch.Tensor | None = None):
        patch = self.classifier.cfg.patch_size
        share = lambda m: None if m is None else mask_patch_share(m, patch)  # noqa: E731
        out = self.classifier.forward_all(self._norm(onset), self._norm(apex), share(face_mask))
        probs = torch.softmax(out["logits"], dim=-1)
        if self.mirror:  # NHWC: width is dim 2 (the mask's too)
            flipped = self.classifier.forward_all(self._norm(onset.flip(2)), self._norm(apex.flip(2)),
                                                  share(None if face_mask is None else face_mask.flip(2)))
            probs = (probs + torch.softmax(flipped["logits"], dim=-1)) / 2
        g = self.grid
        maps = (probs, out["dma_map"].reshape(-1, g, g), out["poi_map"].reshape(-1, g, g))
        return (*maps, out["dma_motion"].reshape(-1, g, g, 2)) if self.with_motion else maps

    @property
    def with_motion(self) -> bool:
        return bool(self.classifier.shift_px)  # the model reads direction (model/direction.direction_px)

    @property
    def with_face(self) -> bool:
        return self.classifier.cfg.reads_face_mask

    @property
    def input_names(self) -> list[str]:
        return ["onset", "apex"] + (["face_mask"] if self.with_face else [])

    @property
    def output_names(self) -> list[str]:
        return ["probabilities", "dma_map", "poi_map"] + (["dma_motion"] if self.with_motion else [])


def export_onnx(weights: str | os.PathLike, onnx_path: str | os.PathLike, opset: int = OPSET,
                check: bool = True, batch: int = 2, seed: int = 0) -> dict:
    """Export a fine-tuned model folder to ONNX; with `check`, compare onnxruntime with torch on random faces.

    Returns {"onnx": path, "classes", "size", "opset", "max_abs_diff": {output: diff}} (diffs when checked).
    """
    from micronbert.infer.api import input_size, load_micronbert_classifier
    from micronbert.utils.io import atomic_path

    model, cfg, classes, data = load_micronbert_classifier(weights)
    size = input_size(cfg, data)
    recipe = data.get("finetune") or {}
    mirror, neighbours = bool(recipe.get("test_flip", False)), bool(recipe.get("test_neighbours", False))
    wrapper = ExportableClassifier(model, size, mirror).eval()
    gen = torch.Generator().manual_seed(seed)
    example = example_inputs(wrapper, batch, size, gen)
    onnx_path = Path(onnx_path)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    names, inputs = wrapper.output_names, wrapper.input_names
    with export_mode(wrapper), torch.no_grad(), warnings.catch_warnings(), atomic_path(onnx_path) as tmp:
        try:
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # fixed input size: expected
            torch.onnx.export(wrapper, example, str(tmp), input_names=inputs, output_names=names,
                              dynamic_axes={n: {0: "batch"} for n in [*inputs, *names]},
                              opset_version=opset, dynamo=False, do_constant_folding=True)
        except Exception as exc:  # the exporter's errors are long; keep the first line
            raise MicronbertError(f"ONNX export of {weights} failed: {str(exc).splitlines()[0]}") from exc
        _add_metadata(tmp, classes, size, cfg.patch_size, getattr(cfg, "registration", "none"), mirror,
                      neighbours, (data.get("input") or {}).get("margin"), wrapper.with_face)
    result = {"onnx": str(onnx_path), "classes": classes, "size": size, "opset": opset}
    if check:
        result["max_abs_diff"] = compare_onnx(wrapper, onnx_path, size, seed=seed + 1)
    return result


def example_inputs(wrapper: "ExportableClassifier", batch: int, size: int, gen: torch.Generator) -> tuple:
    """Random uint8 faces for the graph's inputs (and, when it takes one, each face's mask: its template hull
    moved by a random offset)."""
    frames = tuple(torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, generator=gen) for _ in range(2))
    if not wrapper.with_face:
        return frames
    from micronbert.faces.template import own_hull_mask, template_landmarks

    shifts = torch.randint(-size // 8, size // 8 + 1, (batch, 2), generator=gen).numpy()
    masks = np.stack([own_hull_mask(template_landmarks(size) + s, size) for s in shifts])
    return (*frames, torch.from_numpy(masks))


def _add_metadata(path, classes, size, patch, registration: str, mirror: bool, neighbours: bool,
                  margin: float | None, face_mask: bool = False) -> None:
    import onnx

    m = onnx.load(str(path))
    for key, value in {"classes": json.dumps(classes), "input": json.dumps(
            {"layout": "NHWC", "dtype": "uint8", "colour": "RGB", "size": size, "aligned": True,
             **({} if margin is None else {"margin": margin}),  # the crop margin the model was trained on
             "normalisation": "inside the graph (ImageNet mean/std)",
             # the apex registered onto the onset before the graph (ECC is not an ONNX op)
             "apex_registration": registration,
             **({"face_mask": "uint8 (B, S, S): 1 inside the face's own 68-landmark hull"} if face_mask else {})}),
            "patch_size": str(patch),
            "probabilities": ("mean of the pair and its mirror image" if mirror else "the pair") + (
                "; evaluated as the mean of this output over the pairs (onset, apex - 1), (onset, apex), "
                "(onset, apex + 1) where the clip has those frames" if neighbours else "")}.items():
        entry = m.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(m, str(path))


def compare_onnx(wrapper: nn.Module, onnx_path, size: int, batch: int = 3, seed: int = 1) -> dict[str, float]:
    """Max |onnxruntime − torch| per output on random uint8 faces (a batch size other than the export's)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise MicronbertError("checking the export needs onnxruntime (pip install 'micronbert[export]')") from exc
    inputs = example_inputs(wrapper, batch, size, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = [t.numpy() for t in wrapper(*inputs)]
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {n: x.numpy() for n, x in zip(wrapper.input_names, inputs)})
    names = [o.name for o in sess.get_outputs()]
    return {n: float(np.abs(r - g).max()) for n, r, g in zip(names, ref, got)}
