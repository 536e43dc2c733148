"""How alike are a pretrained encoder's patch tokens? A sign of collapse.

For each pretrained model folder: the mean cosine between *different* patches of one face, of the
encoder's tokens and of DMA's normalised queries, over the built-in face photos at the model's input
size (1 = every patch the same token; a change signal built on such tokens cannot tell places apart).

Usage: python benchmarks/token_collapse.py PRETRAIN_DIR [PRETRAIN_DIR ...]   (prints one JSON object)
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F

from _common import machine


def mean_offdiagonal_cosine(x: torch.Tensor) -> float:
    """x (B, N, D) -> mean cosine between different rows of each item."""
    x = F.normalize(x, dim=-1)
    sim = x @ x.transpose(1, 2)
    n = x.shape[1]
    return float(((sim.sum((1, 2)) - sim.diagonal(dim1=1, dim2=2).sum(1)) / (n * (n - 1))).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+", help="`micronbert pretrain` output folders")
    args = ap.parse_args()

    from micronbert.data.builtin import face_photos
    from micronbert.data.pairs import fit_square
    from micronbert.model.checkpoint import load_pretrained
    from micronbert.model.mubert import normalise_images

    rows = []
    for folder in args.models:
        model, _ = load_pretrained(folder, with_decoder=False)
        model.eval()
        size = model.cfg.img_size
        faces = np.stack([fit_square(img, size) for img in face_photos().values()])
        with torch.no_grad():
            tokens = model.encoder(normalise_images(torch.from_numpy(faces)))[:, 1:]
            queries = model.dma.to_q(tokens)
        rows.append({"model": folder, "faces": len(faces), "token_cosine_between_patches": round(
            mean_offdiagonal_cosine(tokens), 4), "dma_query_cosine_between_patches": round(
            mean_offdiagonal_cosine(queries), 4)})
    print(json.dumps({"benchmark": "token_collapse", "machine": machine(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
