"""The Python API: a fine-tuned μ-BERT classifier behind one small class.

    from micronbert import MicronBert
    mb = MicronBert.from_pretrained("runs/casme2-finetune")     # a model folder (safetensors only)
    out = mb.predict_pair(onset_rgb, apex_rgb)                  # aligned RGB uint8 faces
    out["label"], out["probabilities"], out["dma_map"], out["poi_map"]   # + out["dma_motion"] (directional DMA)
    table = mb.predict("clip.mp4")                              # faces, spotting, one row per interval
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import torch

from micronbert.config import ModelConfig
from micronbert.errors import MicronbertError


def load_micronbert_classifier(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """(MicronBertClassifier in eval mode, ModelConfig, class names, the whole config.json) of a model folder.

    The one loader is `micronbert.model.classifier.load_classifier`; this asks it for a μ-BERT classifier
    only (the API draws DMA maps, which the flow-CNN baseline has not).
    """
    from micronbert.model.classifier import load_classifier

    model, classes, data = load_classifier(path, device, model_types=("micronbert",))
    return model, model.cfg, classes, data


def input_size(cfg: ModelConfig, data: dict) -> int:
    inp = data.get("input") or {}
    return int(inp.get("size", cfg.img_size)) if isinstance(inp, dict) else cfg.img_size


def as_rgb(image: Any, size: int) -> np.ndarray:
    """A path or an RGB/gray array -> uint8 (size, size, 3) (shorter side resized, centre crop)."""
    from micronbert.data.frames import read_image
    from micronbert.data.pairs import fit_square

    if isinstance(image, (str, os.PathLike)):
        image = read_image(image)
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] not in (3, 4):
        raise MicronbertError(f"expected an RGB image (H, W, 3), got shape {img.shape}")
    img = img[..., :3]
    if img.dtype != np.uint8:
        img = (img * 255.0 if img.dtype.kind == "f" and img.max() <= 1.0 else img).clip(0, 255).astype(np.uint8)
    return fit_square(img, size)


class MicronBert:
    """A fine-tuned μ-BERT recogniser: aligned face pairs (or whole clips) in, classes and heat-maps out."""

    def __init__(self, model, config: ModelConfig, classes: Sequence[str], meta: dict | None = None,
                 device: str | torch.device = "cpu", path: str | None = None):
        self.model, self.config, self.classes = model, config, list(classes)
        self.meta = meta or {}
        self.device = torch.device(device)
        self.path = path
        self.size = input_size(config, self.meta)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "MicronBert":
        model, cfg, classes, data = load_micronbert_classifier(path, device)
        return cls(model, cfg, classes, data, device, str(path))

    def __repr__(self):
        return f"MicronBert({self.path!r}, classes={self.classes}, size={self.size})"

    @property
    def grid(self) -> int:
        return self.size // self.config.patch_size

    # -- pairs -----------------------------------------------------------------------------------------
    @property
    def test_flip(self) -> bool:
        """Whether probabilities average each pair with its mirror image, as the classifier was evaluated (its
        recipe's `test_flip`; False for classifiers saved before the field)."""
        return bool((self.meta.get("finetune") or {}).get("test_flip", False))

    @property
    def test_neighbours(self) -> bool:
        """Whether probabilities average in the pairs of the onset with the frames just before and after the
        apex, when they are given (the recipe's `test_neighbours`)."""
        return bool((self.meta.get("finetune") or {}).get("test_neighbours", False))

    @torch.no_grad()
    def forward_batch(self, onsets: np.ndarray, apexes: np.ndarray, batch_size: int = 16,
                      neighbours: np.ndarray | None = None, has_neighbour: np.ndarray | None = None,
                      face: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """uint8 (B, S, S, 3) onsets/apexes (already `size`) -> probabilities (B, C), dma_map/poi_map (B, g, g)
        and, when the model has directional DMA (model.shift_px > 0), dma_motion (B, g, g, 2): each patch's
        signed motion (x, y), positive = right / down (the key is absent otherwise).
        Each apex is first registered onto its onset as the model was trained (ModelConfig.registration).
        Probabilities are averaged over the prediction views the classifier was evaluated with
        (`PairData.prediction_views`): with `test_flip` each pair's mirror image, with `test_neighbours`
        and `neighbours` (B, K, S, S, 3) the frames around each apex (`has_neighbour` (B, K): which are real),
        each registered and run like any pair. The maps are always the pair's own. `face` (B, S, S) uint8:
        each clip's own face mask (faces/template.own_hull_mask), read by a classifier whose PoI prior is
        "own" (without it, such a classifier uses the template's hull)."""
        from micronbert.train.pairdata import PairData

        probs, dmas, pois, motions = [], [], [], []
        for s in range(0, len(onsets), batch_size):
            part = slice(s, s + batch_size)
            near = None if neighbours is None else np.asarray(neighbours[part])
            has = (None if near is None else np.ones(near.shape[:2], bool) if has_neighbour is None
                   else np.asarray(has_neighbour[part], bool))
            data = PairData(np.asarray(onsets[part]), np.asarray(apexes[part]), near, has,
                            None if face is None else np.asarray(face[part]))
            views = data.prediction_views(self.test_flip, self.test_neighbours)
            out = self._forward(data.onset, data.apex, data.face)
            total = torch.softmax(out["logits"].float(), -1).cpu().numpy()
            count = np.ones(len(data))
            for view, weight in views[1:]:
                if weight.any():
                    logits = self._forward(view.onset[weight], view.apex[weight],
                                           None if view.face is None else view.face[weight])["logits"]
                    total[weight] += torch.softmax(logits.float(), -1).cpu().numpy()
                    count += weight
            g = self.grid
            probs.append(total / count[:, None])
            dmas.append(out["dma_map"].float().view(-1, g, g).cpu().numpy())
            pois.append(out["poi_map"].float().view(-1, g, g).cpu().numpy())
            if "dma_motion" in out:
                motions.append(out["dma_motion"].float().view(-1, g, g, 2).cpu().numpy())
        res = {"probabilities": np.concatenate(probs), "dma_map": np.concatenate(dmas),
               "poi_map": np.concatenate(pois)}
        if motions:
            res["dma_motion"] = np.concatenate(motions)
        return res

    def _forward(self, onset: np.ndarray, apex: np.ndarray, face: np.ndarray | None = None) -> dict:
        from micronbert.faces.register import register_pairs
        from micronbert.model.mubert import normalise_images
        from micronbert.model.poi import mask_patch_share

        registration = getattr(self.config, "registration", "none")
        if registration != "none":
            apex = register_pairs(onset, apex, registration)
        a = normalise_images(torch.from_numpy(np.ascontiguousarray(onset)).to(self.device))
        b = normalise_images(torch.from_numpy(np.ascontiguousarray(apex)).to(self.device))
        share = (None if face is None else
                 mask_patch_share(torch.from_numpy(np.ascontiguousarray(face)).to(self.device), self.config.patch_size))
        return self.model.forward_all(a, b, share)

    def predict_pair(self, onset, apex, landmarks: np.ndarray | None = None) -> dict[str, Any]:
        """Aligned RGB uint8 face images (arrays or paths) -> {probabilities {class: p}, label, dma_map, poi_map}
        (+ dma_motion with directional DMA). `landmarks` (68, 2): the face's landmarks in the aligned image's
        pixels (FaceAligner's `landmarks_aligned`), read by a classifier whose PoI prior is "own".

        The maps are (grid, grid): dma_map is the DMA diagonal (low = the face changed there), poi_map the
        PoI saliency (mean 1). dma_motion (grid, grid, 2) is which way each patch moved (x, y; positive =
        right / down, in DMA's units, not pixels); it is there only for a model with directional DMA
        (ModelConfig.dma_shift_px > 0, grid head, DMA on), absent for older or ablated classifiers.
        """
        from micronbert.faces.template import own_hull_mask

        face = None if landmarks is None else own_hull_mask(landmarks, self.size)[None]
        out = self.forward_batch(as_rgb(onset, self.size)[None], as_rgb(apex, self.size)[None], face=face)
        p = out["probabilities"][0]
        res = {"probabilities": {c: float(v) for c, v in zip(self.classes, p)},
               "label": self.classes[int(p.argmax())],
               "dma_map": out["dma_map"][0], "poi_map": out["poi_map"][0]}
        if "dma_motion" in out:
            res["dma_motion"] = out["dma_motion"][0]
        return res

    def dma_map(self, onset, apex) -> np.ndarray:
        """The (grid, grid) DMA diagonal of a pair: how much each patch still matches (low = change)."""
        return self.predict_pair(onset, apex)["dma_map"]

    # -- clips -----------------------------------------------------------------------------------------
    def predict(self, video_or_frames, onset: int | None = None, apex: int | None = None, **kwargs):
        """A video file, a frame folder, or a (T, H, W, 3) array -> pandas DataFrame, one row per interval
        (the columns of predictions.csv).

        Faces are aligned once per clip; without onset/apex the apex spotter proposes intervals. Keyword
        arguments go to `micronbert.infer.predict.predict_clip` (out_dir, video, detector, fps, ...); a clip
        without a face gives an empty table.
        """
        from micronbert.infer.predict import predict_clip

        return predict_clip(self, video_or_frames, onset=onset, apex=apex, **kwargs).table
