"""Does pretraining sharpen or erode DMA's change map? The localisation test, per change signal and seed.

The pairs and the pretraining are tests/train/test_localisation.py's: 48 pairs of real faces (112 px)
that differ only by a 1.5 px local warp at a random place, independent noise σ = 3 on both frames; the
score is the share of pairs whose largest change (lowest DMA value) lies in the moved region (chance
≈ 0.047). For each signal (`--signals`) and seed (`--seeds`): the tiny model at initialisation, and
after the test's own pretraining (100 steps through `pretrain()`, batch 4, on 64 two-frame local-warp
clips). `--compare residual` adds the same runs with DMA's Q and K reading the residual stream
before the encoder's final LayerNorm (ModelConfig.dma_compare), named "<signal>+residual";
`--unprojected` adds each of them with DMA comparing its inputs themselves, without its Q and K
projections (ModelConfig.dma_project_qk off), named "...+unprojected". Beside each
map, on the same weights: the paper's −log a_i, the final tokens' cosine change, the residual stream's
own L2 change (no projection) and the L2 distance of DMA's own Q and K projections of what it compares.

    python benchmarks/localisation.py [--signals cosine distance] [--compare tokens residual]
                                      [--unprojected] [--seeds 0 1 2 3] [--work DIR]

An existing WORK/run-<name, '+' as '-'>-s<seed> with weights is reused. Prints one JSON object.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, git_commit, machine  # noqa: E402

SIZE, PATCH, AMP, NOISE = 112, 8, 1.5, 3.0  # the localisation test's


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--signals", nargs="+", default=["cosine", "distance"])
    p.add_argument("--compare", nargs="+", choices=["tokens", "residual"], default=["tokens"],
                   help="what DMA's Q and K read (ModelConfig.dma_compare)")
    p.add_argument("--unprojected", action="store_true",
                   help="also each variant without DMA's Q and K projections (ModelConfig.dma_project_qk)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    p.add_argument("--steps", type=int, default=100, help="pretraining steps (the test's 100)")
    p.add_argument("--work", default=None, help="folder for the clips and the pretraining runs (reused)")
    args = p.parse_args()

    import numpy as np
    import torch
    import torch.nn.functional as F

    from micronbert.config import PretrainConfig, preset
    from micronbert.data.builtin import face_photos
    from micronbert.data.frames import write_image
    from micronbert.data.pairs import fit_square
    from micronbert.model.checkpoint import load_pretrained
    from micronbert.model.mubert import MicronBertModel
    from micronbert.testing.pairs import local_warp, local_warp_pairs
    from micronbert.train.pretrain import pretrain

    torch.set_num_threads(1)
    work = Path(args.work or tempfile.mkdtemp(prefix="mb-localisation-"))
    faces = [fit_square(img, SIZE) for img in face_photos().values()]
    x, y, masks = local_warp_pairs(faces, 48, AMP, NOISE, seed=123, patch=PATCH)

    def hits(change) -> float:  # change: (pairs, cells), larger = more change
        return round(float(np.mean([masks[i][change[i].argmax()] for i in range(len(x))])), 3)

    @torch.no_grad()
    def measure(model) -> dict:
        model.eval()
        dma = model.dma
        own = dma.signal
        out = {"map": hits(-model.maps(x, y)["dma_map"].reshape(len(x), -1).numpy())}
        dma.signal = "paper"
        out["paper_map"] = hits(-model.maps(x, y)["dma_map"].reshape(len(x), -1).numpy())
        dma.signal = own
        hid_x, hid_y = model.encode_pair(x, y)
        tok_x, tok_y = (model.encoder.norm(h)[:, 1:] for h in (hid_x, hid_y))
        out["tokens_cosine"] = hits((1 - F.cosine_similarity(tok_x, tok_y, dim=-1)).numpy())
        out["residual_l2"] = hits((hid_y[:, 1:] - hid_x[:, 1:]).norm(dim=-1).numpy())  # no projection at all
        if dma.project_qk:
            query, key = model._query_key(model._compared(hid_x), model._compared(hid_y))  # in DMA's order
            to_k = dma.to_q if dma.tie_qk else dma.to_k
            out["qk_l2"] = hits((dma.to_q(query) - to_k(key)).norm(dim=-1).numpy())
        return out

    clips = work / "clips"
    if not (clips / "clip063" / "img2.png").is_file():  # the test's clips: frame 1 = face, frame 2 = warped
        rng = np.random.default_rng(0)
        for i in range(64):
            img = faces[rng.integers(len(faces))]
            warped, _ = local_warp(img, rng)
            write_image(clips / f"clip{i:03d}" / "img1.png", img)
            write_image(clips / f"clip{i:03d}" / "img2.png", warped)

    results = {}
    variants = [(s, c, True) for s in args.signals for c in args.compare]
    variants += [(s, c, False) for s, c, _ in variants] if args.unprojected else []
    for signal, compare, project in variants:
        name = signal + ("" if compare == "tokens" else f"+{compare}") + ("" if project else "+unprojected")
        cfg = preset("tiny", dma_signal=signal, dma_compare=compare, dma_project_qk=project)
        for seed in args.seeds:
            torch.manual_seed(seed)
            init = measure(MicronBertModel(cfg, with_decoder=False, with_agreement=False))
            run = work / f"run-{name.replace('+', '-')}-s{seed}"
            if not (run / "model.safetensors").is_file():
                pcfg = PretrainConfig(steps=args.steps, batch_size=4, warmup_steps=10, lr=3e-4, log_every=20,
                                      ckpt_every=1000, seed=seed)
                torch.manual_seed(seed)
                pretrain([str(clips)], run, cfg, pcfg, fps=30, show_progress=False)
            model, _ = load_pretrained(run, with_decoder=False)
            results.setdefault(name, {})[f"seed{seed}"] = {"init": init, "pretrained": measure(model)}
            print(name, seed, results[name][f"seed{seed}"], file=sys.stderr, flush=True)
    summary = {s: {stage: round(float(np.mean([r[stage]["map"] for r in per.values()])), 3)
                   for stage in ("init", "pretrained")} for s, per in results.items()}
    emit({"benchmark": "localisation", "commit": git_commit(), "machine": machine(), "work": str(work),
          "setting": {"pairs": 48, "face_px": SIZE, "amplitude_px": AMP, "noise_sigma": NOISE,
                      "pretrain_steps": args.steps, "pretrain_batch": 4, "pretrain_clips": 64},
          "chance": round(float(masks.mean()), 3), "mean_map_hits": summary, "results": results})


if __name__ == "__main__":
    main()
