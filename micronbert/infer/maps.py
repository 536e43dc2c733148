"""DMA/PoI maps of a frame pair from any saved model (pretrained μ-BERT or a fine-tuned classifier)."""
from __future__ import annotations

import numpy as np
import torch

from micronbert.data.pairs import fit_square
from micronbert.model.checkpoint import load_model_dir, load_state_checked
from micronbert.model.direction import direction_blocks, direction_px, shifted_views
from micronbert.model.mubert import MicronBertModel, normalise_images


def load_backbone_any(path) -> tuple[MicronBertModel, object]:
    """The μ-BERT backbone (encoder + DMA + PoI) of a pretrained or fine-tuned model folder."""
    state, cfg, _ = load_model_dir(path)
    if any(k.startswith("backbone.") for k in state):  # a classifier: keep its backbone
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    model = MicronBertModel(cfg, with_decoder=False, with_agreement=False)
    # a classifier has no decoder/agreement heads, a pretrained folder may: leftovers are fine here
    load_state_checked(model, state, path, ignore_unexpected=("",))
    return model.eval(), cfg


@torch.no_grad()
def pair_maps(model: MicronBertModel, first: np.ndarray, second: np.ndarray) -> dict[str, np.ndarray]:
    size = model.cfg.img_size
    a, b = fit_square(first, size), fit_square(second, size)
    x = normalise_images(torch.from_numpy(np.stack([a, b])))
    maps = model.maps(x[:1], x[1:])
    return {"first": a, "second": b, "dma_map": maps["dma_map"][0].numpy(), "poi_map": maps["poi_map"][0].numpy()}


@torch.no_grad()
def pair_motion(model: MicronBertModel, first: np.ndarray, second: np.ndarray) -> np.ndarray | None:
    """Directional DMA of a frame pair: (g, g, 2) signed motion (x, y) per patch, positive = right / down,
    as a grid classifier reads it (model/direction.py); None when the config has no direction
    (direction.direction_px: dma_shift_px 0, e.g. a folder saved before it, DMA off, or the paper head)."""
    cfg = model.cfg
    px = direction_px(cfg)
    if not px:
        return None
    size = cfg.img_size
    x = normalise_images(torch.from_numpy(np.stack([fit_square(first, size), fit_square(second, size)])))
    frames = [x[:1]] + shifted_views(x[1:], px)
    hidden = model.encoder.hidden(torch.cat(frames, dim=0), direction_blocks(cfg)).chunk(len(frames), dim=0)
    g = size // cfg.patch_size
    return model.motion(hidden[0], hidden[1:])[0].view(g, g, 2).numpy()
