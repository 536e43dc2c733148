"""Benchmark: does μ-BERT see micro-motion? The MEGC2019 composite LOSO on a hard synthetic benchmark.

Data: `micronbert synth` in all three layouts (CASME II, SAMM, SMIC-HS), --subjects each, one tiny facial
action per clip (--amplitude px at the 224-px face scale), distractions on (head drift, lighting, noise,
compression, blinks) -> `index --strict` -> `prepare --size 112` (one shared face cache).
Pretraining (label-free, transductive: the frames of every clip of the benchmark, evaluation subjects
included; no labels are read): `micronbert pretrain --frames <cache>` with our formulation (defaults), and
where a row needs them the paper's (--dma-temperature 0 --identity-weight 0) and ours with the face prior
(--poi-prior face).
Evaluation: `micronbert evaluate --protocol megc2019` (LOSO over all subjects of the three layouts) with a
fixed number of epochs (no per-subject selection), the CPU recipe (--freeze-encoder: cached augmented
views, the last block, DMA and head train; 30 epochs or at most 160 steps, so 8 epochs at the full size),
for every method below and every --seeds entry:
    micronbert       ours, pretrained; PoI saliency confined to where alignment puts the face (template hull +
                     forehead), the recognition default
    no-dma           plain cross-attention instead of DMA (the head never sees the diagonal)
    no-poi           no PoI gating
    learned-poi      PoI's learned saliency alone, without the face prior (the paper's PoI; `micronbert` until
                     the face prior became the default: runs of `micronbert` made before then are this row)
    hull-poi         PoI confined to the 68-point hull alone (no forehead)
    own-poi          PoI confined to each clip's own 68-landmark hull (the face cache's landmarks)
    face-poi-pretrained  micronbert on an encoder pretrained with the face prior too (`pretrain --poi-prior
                     face`: pretraining's PoI gating also looks at the face)
    no-registration  apex not registered onto the onset
    no-direction     no directional DMA (the change map's size only, not which way)
    with-fdma        the grid head also takes F_DMA (the head before it was dropped; not an ablation)
    early-direction  directional DMA read after the first encoder block instead of the last (about 2× faster
                     with the frozen recipe; not an ablation)
    no-pretrain      random encoder
    disjoint-pretrain  ours on an encoder pretrained on frames this benchmark does not hold (--disjoint-init,
                     e.g. a development copy's pretrained_ours): not transductive; run only when given
    paper            the paper's formulation, on the paper-pretrained encoder
    flow-cnn         the optical-flow baseline (its own recipe)
    flow-cnn-registered  the same on pairs whose apex is registered onto the onset first, as μ-BERT's are
    shuffled         ours on labels permuted within each layout among the samples MEGC2019 keeps (the same
                     samples, each layout's class counts kept): must sit at chance
`--mode lodo` evaluates leave-one-dataset-out instead (train on two layouts, test on the third, each in
turn): the cross-dataset question, whether what a model learned carries to a layout with its own frame
size, colour, face scale and emotion vocabulary (the same eight real people appear in every layout, as
other subjects). Prints one JSON object (mean ± sd of UF1/UAR per method). `--shard k/K` runs a share of the folds and
scores every row on the folds all of the call's runs finished (the same samples; a full run in --work
counts on those folds), e.g. ablation rows beside the full model's run, and counts the predicted classes
that differ from the first row's (the same UF1 can hide different predictions).

`--probe` instead measures the change signals and the PoI map on real faces (no training unless
--probe-weights): for pairs that differ by a local warp (tests/train/test_localisation.py's), the share of
pairs whose largest change lies in the moved region for the paper's −log a_i, the relative, the cosine
and the distance signal, on the same weights; r between the paper's map of a moved pair and of an unmoved pair; and
for aligned faces the share of PoI saliency mass inside the 68-landmark hull and the effective number
of patches (1 / Σ s²) per softmax temperature, and the same for the contextual token's attention in the
last block.

    python benchmarks/motion.py          # the full setting: ~30 min per μ-BERT row and seed on 2 idle cores
    python benchmarks/motion.py --subjects 4 --clips 4 --seeds 0 --epochs 10 --pretrain-steps 100   # quick
    python benchmarks/motion.py --seeds 1 --methods micronbert no-dma no-poi --shard 0/6   # ~5 min per row
    python benchmarks/motion.py --mode lodo --methods micronbert flow-cnn shuffled   # cross-dataset, 3 folds a run
    python benchmarks/motion.py --probe [--probe-weights PRETRAINED_DIR]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, git_commit, machine  # noqa: E402

FORMATS = ("casme2", "samm", "smic")
METHODS = ("micronbert", "no-dma", "no-poi", "learned-poi", "hull-poi", "own-poi", "face-poi-pretrained",
           "no-registration", "no-direction", "with-fdma", "early-direction", "no-pretrain", "disjoint-pretrain",
           "paper", "flow-cnn", "flow-cnn-registered", "shuffled")
# The label-free pretrainings (W/pretrained_<name>): their `pretrain` switches and the rows that start from them.
PRETRAININGS = {
    "ours": ([], ("micronbert", "no-dma", "no-poi", "learned-poi", "hull-poi", "own-poi", "no-registration",
                  "no-direction", "with-fdma", "early-direction", "shuffled")),
    "paper": (["--dma-temperature", "0", "--identity-weight", "0"], ("paper",)),
    "face": (["--poi-prior", "face"], ("face-poi-pretrained",)),
}
# A row whose --model differs from its name (its encoder is chosen by init_of).
MODEL_OF = {"shuffled": "micronbert", "disjoint-pretrain": "micronbert", "face-poi-pretrained": "micronbert"}


def init_of(method: str) -> str:
    """Which pretraining a row starts from."""
    return next((name for name, (_, rows) in PRETRAININGS.items() if method in rows), "ours")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--subjects", type=int, default=12, help="subjects per layout")
    p.add_argument("--clips", type=int, default=9, help="clips per subject")
    p.add_argument("--frames", type=int, default=10, help="frames per clip")
    p.add_argument("--amplitude", type=float, default=1.5, help="action amplitude in px at 224")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--data-seed", type=int, default=100,
                   help="synth seed of the first layout (+1, +2 for the others); another value gives a "
                        "development copy of the benchmark to choose designs on")
    p.add_argument("--background-motion", type=float, default=0.0, metavar="P",
                   help="share of clips with an object moving beside the face (synth --background-motion; "
                        "0: the tables' benchmark). Give --work a folder of its own")
    p.add_argument("--epochs", type=int, default=30, help="μ-BERT epochs (flow-cnn: its own recipe's 40)")
    p.add_argument("--pretrain-steps", type=int, default=300,
                   help="0: no pretraining, every μ-BERT row uses the same random encoder (the no-pretrain row "
                        "is then the micronbert row and is skipped; paper = the paper's formulation on it)")
    p.add_argument("--pretrain-batch", type=int, default=16)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per evaluation (default: torch's, every core; 1 on a machine shared with "
                        "other jobs)")
    p.add_argument("--shard", default=None,
                   help="k/K: run only this share of the LOSO folds (evaluate --shard); every row is then scored "
                        "on the folds all of this call's runs finished (a full run in --work counts on those folds)")
    p.add_argument("--mode", choices=("loso", "lodo"), default="loso",
                   help="lodo: leave one dataset (layout) out instead of one subject: train on two layouts, test "
                        "on the third, each in turn (evaluate --mode lodo); runs are named <method>-lodo-seed<seed> "
                        "and each row also gets the held-out layouts' own UF1")
    p.add_argument("--work", default=None, help="working folder (default: a temporary one); reused when present")
    p.add_argument("--keep-fold-models", action="store_true",
                   help="keep every fold's trained classifier (evaluate --keep-fold-models), in runs named "
                        "<method>-seed<seed>-kept, so benchmarks/prediction_views.py can score them again")
    p.add_argument("--disjoint-init", default=None,
                   help="the disjoint-pretrain row's encoder: a pretrained folder made from other clips' frames "
                        "(e.g. `--data-seed 200`'s pretrained_ours); without it that row is skipped")
    p.add_argument("--probe", action="store_true", help="measure the change signals and PoI only (see above)")
    p.add_argument("--probe-weights", default=None, help="--probe: a pretrained folder (default: init, seeds 0-2)")
    p.add_argument("--overlap-only", action="store_true",
                   help="only the change-map overlap with the synthetic actions on an existing --work folder")
    args = p.parse_args()
    if "disjoint-pretrain" in args.methods and not args.disjoint_init:
        if args.methods != list(METHODS):
            p.error("--methods disjoint-pretrain needs --disjoint-init (an encoder pretrained on other frames)")
        args.methods.remove("disjoint-pretrain")
    if args.probe:
        emit(probe(args.probe_weights))
        return

    import cv2

    from micronbert.cli import main as cli

    cv2.setNumThreads(1)
    work = Path(args.work or tempfile.mkdtemp(prefix="mb-motion-bench-"))
    if args.overlap_only:
        emit(change_overlap(work, work / "pretrained_ours" if (work / "pretrained_ours" / "model.safetensors").is_file()
                            else None))
        return
    commit = git_commit()  # the code the runs start with, not whatever is checked out when they end
    t0 = time.time()
    samples = []
    for i, fmt in enumerate(FORMATS):
        root = work / fmt
        csv = work / f"samples_{fmt}.csv"
        if not csv.is_file():
            _run(cli, ["synth", "--format", fmt, "--out", str(root), "--subjects", str(args.subjects),
                       "--clips-per-subject", str(args.clips), "--frames", str(args.frames),
                       "--amplitude-px", str(args.amplitude), "--seed", str(args.data_seed + i),
                       *(["--background-motion", str(args.background_motion)] if args.background_motion else [])])
            _run(cli, ["index", "--dataset", fmt, "--root", str(root), "--out", str(csv), "--strict"])
        made = json.loads((root / "synth.json").read_text()).get("distractions", {}).get("background_p", 0.0)
        if made != args.background_motion:
            raise SystemExit(f"{root / 'synth.json'}: made with background motion {made}, not "
                             f"--background-motion {args.background_motion}; give --work another folder")
        samples.append(str(csv))
    cache = work / "cache"
    if not (cache / ".prepared").is_file():
        _run(cli, ["prepare", "--samples", *samples, "--out", str(cache), "--size", "112"])
        (cache / ".prepared").write_text("ok")
    data_s = time.time() - t0
    inits = {}
    pre_s = {}
    for name, (extra, rows) in PRETRAININGS.items():
        if args.pretrain_steps == 0:
            break
        if not any(m in args.methods for m in rows):
            continue
        out = work / f"pretrained_{name}"
        t = time.time()
        if not (out / "model.safetensors").is_file():
            _run(cli, ["pretrain", "--frames", str(cache), "--out", str(out), "--preset", "tiny",
                       "--steps", str(args.pretrain_steps), "--batch-size", str(args.pretrain_batch),
                       "--warmup-steps", str(max(1, args.pretrain_steps // 10)), "--ckpt-every",
                       str(args.pretrain_steps), "--fps", "30", "--seed", "0", *extra])
        inits[name], pre_s[name] = out, round(time.time() - t, 1)
    shuffled = _shuffled(samples, work)
    results = {}
    methods = [m for m in args.methods if not (args.pretrain_steps == 0 and m == "no-pretrain")]
    for method in methods:
        runs = []
        for seed in args.seeds:
            res = work / "runs" / run_name(method, seed, args)
            argv = evaluate_argv(method, seed, args, shuffled if method == "shuffled" else samples, cache, res,
                                 inits)
            t = time.time()
            if (res / "metrics.json").is_file():
                check_reused(res, method, inits, cache)
            else:
                _run(cli, argv)
            if args.shard:  # scored below, on the folds every run finished
                runs.append({"seed": seed, "run": str(res), "seconds": round(time.time() - t, 1)})
                continue
            m = json.loads((res / "metrics.json").read_text())
            runs.append({"seed": seed, "uf1": m["uf1"], "uar": m["uar"], "accuracy": m["accuracy"],
                         "n_samples": m["n_samples"], "n_folds": m["n_folds"], "samples_sha256": m.get("samples_sha256"),
                         "seconds": round(time.time() - t, 1)})
            if args.mode == "lodo":  # each layout's UF1 when the model never saw it
                runs[-1]["held_out_uf1"] = {ds: d["uf1"] for ds, d in m["per_dataset"].items()}
            print(f"{method} seed {seed}: UF1 {m['uf1']:.3f} UAR {m['uar']:.3f} ({time.time() - t:.0f} s)",
                  file=sys.stderr)
        results[method] = {"runs": runs}
    folds = _score_shard(results) if args.shard else None
    for res in results.values():
        res.update({f"{k}_{s}": round(f(r[k] for r in res["runs"]), 4) for k in ("uf1", "uar")
                    for s, f in (("mean", statistics.mean), ("sd", _sd))})
        if all("held_out_uf1" in r for r in res["runs"]):
            res["held_out_uf1_mean"] = {ds: round(statistics.mean(r["held_out_uf1"][ds] for r in res["runs"]), 4)
                                        for ds in res["runs"][0]["held_out_uf1"]}
    emit({"benchmark": "motion", "commit": commit, "machine": machine(), "work": str(work),
          "setting": {"layouts": list(FORMATS), "subjects_per_layout": args.subjects, "clips_per_subject": args.clips,
                      "frames": args.frames, "data_seed": args.data_seed, "amplitude_px224": args.amplitude, "distractions": True,
                      "background_motion": args.background_motion,
                      "face_px": 112, "protocol": "megc2019", "mode": args.mode, "mubert_recipe": "frozen (CPU): 4 cached views, last block, at most 160 steps",
                      "threads": args.threads or "torch default",
                      "epochs": args.epochs, "seeds": args.seeds, "shard": args.shard, "shard_folds": folds,
                      "pretrain_steps": args.pretrain_steps,
                      "pretrain_batch": args.pretrain_batch,
                      "pretrain_frames": ("transductive: every clip of the benchmark, labels unused" if inits else
                                          "none: random encoder (seeded) for every μ-BERT row"
                                          if args.pretrain_steps == 0 else "no row here was pretrained on this benchmark's frames"),
                      "disjoint_init": args.disjoint_init},
          "chance_uf1": "≈ 1/3 (3 classes; the shuffled row is the measured chance)",
          "seconds": {"data": round(data_s, 1), "pretrain": pre_s}, "results": results,
          "change_overlap": change_overlap(work, inits.get("ours"))})


def check_reused(res: Path, method: str, inits: dict, cache: Path) -> None:
    """A finished run is reused only when it was made with the model config this row builds now: e.g. a run
    of `micronbert` made before the face prior became its default is a learned-poi run, not this row's."""
    if method.startswith("flow-cnn") or method == "disjoint-pretrain":
        return
    from micronbert.config import place_poi_prior, preset, to_dict
    from micronbert.faces.cache import cache_margin
    from micronbert.model.checkpoint import model_config_from_dict, read_config, resolve_weights
    from micronbert.train.methods import recognition_config

    init = inits.get(init_of(method)) if method != "no-pretrain" else None
    cfg = (model_config_from_dict(read_config(resolve_weights(init)[1])["model"], str(init), trained_head=False)
           if init else preset("tiny"))
    want = to_dict(place_poi_prior(recognition_config(MODEL_OF.get(method, method), cfg), cache_margin(cache)))
    made = read_config(res / "run.json").get("run", {}).get("method", {}).get("model", {})
    differ = sorted(k for k in want if k in made and made[k] != want[k])
    if differ:
        raise SystemExit(f"{res} was made with another model config than row {method!r} builds now "
                         f"({', '.join(f'{k}: {made[k]} there, {want[k]} now' for k in differ)}); move it aside")


def run_name(method: str, seed: int, args) -> str:
    """The run folder of one row and seed under W/runs (LOSO names are those of every earlier run)."""
    mode = "" if args.mode == "loso" else f"-{args.mode}"
    return f"{method}{mode}-seed{seed}{'-kept' if args.keep_fold_models else ''}"


def evaluate_argv(method: str, seed: int, args, samples: list[str], cache: Path, out: Path, inits: dict) -> list[str]:
    """The `micronbert evaluate` command line of one row and seed (inits: a PRETRAININGS name -> its folder)."""
    argv = ["evaluate", "--samples", *samples, "--protocol", "megc2019", "--cache", str(cache), "--seed", str(seed),
            "--out", str(out)]
    if args.mode != "loso":
        argv += ["--mode", args.mode]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    if args.shard:
        argv += ["--shard", args.shard]
    if args.keep_fold_models:
        argv += ["--keep-fold-models"]
    if method.startswith("flow-cnn"):
        return argv + ["--model", method]
    argv += ["--model", MODEL_OF.get(method, method), "--freeze-encoder", "--epochs", str(args.epochs)]
    if method == "disjoint-pretrain":
        argv += ["--init", str(args.disjoint_init)]
    elif method != "no-pretrain" and inits:
        argv += ["--init", str(inits[init_of(method)])]
    return argv


def probe(weights: str | None, n: int = 64) -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from micronbert.config import preset
    from micronbert.data.builtin import face_photos
    from micronbert.data.pairs import fit_square
    from micronbert.model.checkpoint import load_pretrained
    from micronbert.model.mubert import MicronBertModel
    from micronbert.testing.pairs import local_warp_pairs  # the localisation test's own pairs

    SIZE = 112  # noqa: N806  (the localisation test's faces)
    torch.set_num_threads(1)
    faces = [fit_square(img, SIZE) for img in face_photos().values()]

    def pairs(amp, sigma, seed=123):
        return local_warp_pairs(faces, n, amp, sigma, seed=seed)

    @torch.no_grad()
    def signals(model, x, y):
        tok_x, tok_y = (model.encoder.norm(h) for h in model.encode_pair(x, y))
        dma = model.dma
        maps = {}
        for name in ("paper", "relative", "cosine", "distance"):
            dma.signal = name
            maps[name] = -torch.log(dma(tok_y[:, 1:], tok_x[:, 1:], tok_x[:, 1:])[1].clamp_min(1e-30))
        dma.signal = "paper"
        unmoved = -torch.log(dma(tok_x[:, 1:], tok_x[:, 1:], tok_x[:, 1:])[1].clamp_min(1e-30))
        return maps, unmoved

    models = {}
    if weights:
        models["pretrained"], _ = load_pretrained(weights, with_decoder=False)
    else:
        for seed in (0, 1, 2):
            torch.manual_seed(seed)
            models[f"init_seed{seed}"] = MicronBertModel(preset("tiny"), with_decoder=False, with_agreement=False)
    out = {"n_pairs": n, "face_px": SIZE, "signals": {}, "poi": {}}
    for label, model in models.items():
        model.eval()
        row = {}
        for setting, amp, sigma in (("1px", 1.0, 0), ("1.5px_noise3", 1.5, 3), ("2.5px", 2.5, 0)):
            x, y, m = pairs(amp, sigma)
            maps, unmoved = signals(model, x, y)
            row[setting] = {k: round(float(np.mean([m[i][v[i].argmax()] for i in range(n)])), 3)
                            for k, v in ((k, v.numpy()) for k, v in maps.items())}
            row[setting]["r_paper_moved_vs_unmoved"] = round(float(np.corrcoef(maps["paper"].numpy().ravel(),
                                                                             unmoved.numpy().ravel())[0, 1]), 4)
            row[setting]["chance"] = round(float(m.mean()), 3)
        out["signals"][label] = row
        out["poi"][label] = _poi_stats(model)
    return out


def _poi_stats(model) -> dict:
    """PoI saliency on aligned real faces: mass inside the 68-landmark hull, effective patches."""
    import numpy as np
    import torch

    from micronbert.data.builtin import face_photos
    from micronbert.faces import FaceAligner
    from micronbert.faces.template import hull_patch_share
    from micronbert.model.mubert import normalise_images
    from micronbert.model.poi import poi_saliency

    size, patch = model.cfg.img_size, model.cfg.patch_size
    aligner = FaceAligner(size=size)
    imgs, masks = [], []
    for img in face_photos().values():
        try:
            face = aligner.align_image(img)
        except Exception:  # a photo without a usable face is skipped
            continue
        masks.append(hull_patch_share(face.landmarks_aligned, size, patch))
        imgs.append(face.image)
    masks = np.stack(masks)
    with torch.no_grad():
        tokens = model.encoder(normalise_images(torch.from_numpy(np.stack(imgs))))
    res = {"faces": len(imgs), "hull_area_share": round(float(masks.mean()), 3)}

    def spread(s):
        s = s / s.sum(1, keepdims=True)
        return {"mass_in_hull": round(float((s * masks).sum(1).mean()), 3),
                "effective_patches": round(float((1 / (s ** 2).sum(1)).mean()), 1),
                "max_over_min": round(float((s.max(1) / s.min(1)).mean()), 1)}

    for tau in (0.1, 0.2, 0.5, 1.0):
        res[f"tau_{tau:g}"] = spread(poi_saliency(tokens, tau).numpy())
    # Another candidate for a face-selective map: where the contextual token attends in the last block
    # (self-distilled ViTs' attention maps outline the object), mean over heads.
    attention = _cls_attention(model.encoder, normalise_images(torch.from_numpy(np.stack(imgs))))
    res["cls_attention_last_block"] = spread(attention[:, :, 1:].mean(1).numpy())
    return res


def _cls_attention(encoder, images):
    """(B, heads, 1 + N): the last block's attention weights of the contextual token over all tokens."""
    import torch

    with torch.no_grad():
        x = encoder.blocks[-1].norm1(encoder.hidden(images, len(encoder.blocks) - 1))
        attn = encoder.blocks[-1].attn
        b, n, d = x.shape
        q, k, _ = attn.qkv(x).reshape(b, n, 3, attn.num_heads, d // attn.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        return torch.softmax(q[:, :, :1] @ k.transpose(-1, -2) / (d // attn.num_heads) ** 0.5, dim=-1)[:, :, 0]


def change_overlap(work: Path, weights: Path | None) -> dict:
    """Where do the change maps light up on the benchmark's clips? Per clip, the overlap of the k largest
    change cells with the synthetic action's region (k = its size; the demo's measure), for the distance, the
    cosine and the paper's DMA signal (same weights: `weights`, else a seed-0 random encoder), with and without
    registration, and for the per-patch pixel difference |apex − onset|² of the registered pair."""
    import numpy as np
    import torch

    from micronbert.config import preset
    from micronbert.demo.report import overlap_stats
    from micronbert.faces.cache import FaceCache
    from micronbert.faces.register import register_pair
    from micronbert.model.checkpoint import load_pretrained
    from micronbert.model.mubert import MicronBertModel, normalise_images
    from micronbert.synth import action_map, read_actions

    torch.set_num_threads(1)
    if weights:
        model, _ = load_pretrained(weights, with_decoder=False)
    else:
        torch.manual_seed(0)
        model = MicronBertModel(preset("tiny"), with_decoder=False, with_agreement=False)
    model.eval()
    cache = FaceCache(work / "cache")
    rows: dict[str, list] = {}
    for fmt in FORMATS:
        for row in read_actions(work / fmt).itertuples():
            if not cache.has(row.dataset, row.sample_id):
                continue
            clip = cache.load(row.dataset, row.sample_id)
            onset, apex = clip.frame(int(row.onset)), clip.frame(int(row.apex))
            registered, _ = register_pair(onset, apex, "translation")
            g = model.cfg.grid
            act = action_map(row.bumps, g, crop_size=clip.frames.shape[1], to_crop=np.asarray(clip.transform))
            for reg_name, a in (("registered", registered), ("unregistered", apex)):
                x = normalise_images(torch.from_numpy(np.stack([onset, a])))
                with torch.no_grad():
                    tok = model.encoder(x)
                    for signal in ("distance", "cosine", "paper"):
                        model.dma.signal = signal
                        m = model.dma(tok[1:, 1:], tok[:1, 1:], tok[:1, 1:])[1][0].view(g, g).numpy()
                        st = overlap_stats(-np.log(np.clip(m, 1e-30, None)), act)
                        rows.setdefault(f"dma_{signal}_{reg_name}", []).append((st["overlap"], st["chance"]))
            p = model.cfg.patch_size
            diff = ((registered.astype(np.float64) - onset) ** 2).sum(-1).reshape(g, p, g, p).sum((1, 3))
            st = overlap_stats(diff, act)
            rows.setdefault("pixel_difference_registered", []).append((st["overlap"], st["chance"]))
    model.dma.signal = model.cfg.dma_signal
    return {"weights": str(weights) if weights else "random encoder (seed 0)", "clips": len(rows.get("dma_cosine_registered", [])),
            **{k: {"overlap": round(float(np.nanmean([o for o, _ in v])), 3),
                   "chance": round(float(np.nanmean([c for _, c in v])), 3)} for k, v in rows.items()}}


def _sd(values) -> float:
    values = list(values)
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _score_shard(results: dict) -> list[str]:
    """Fill each run's scores from the folds that every run of `results` finished; returns those folds."""
    from common_folds import score_on_common_folds

    scored = score_on_common_folds([Path(r["run"]) for res in results.values() for r in res["runs"]])
    for res in results.values():
        for r in res["runs"]:
            s = scored["runs"][r["run"]]
            r.update({k: s[k] for k in ("uf1", "uar", "accuracy", "n_samples", "samples_sha256", "wrong",
                                        "predictions_differing_from_first_run")},
                     n_folds=len(scored["folds"]))
            print(f"{Path(r['run']).name} on {len(scored['folds'])} folds: UF1 {s['uf1']:.3f}", file=sys.stderr)
    return scored["folds"]


def _shuffled(samples: list[str], work: Path) -> list[str]:
    """Copies of the sample tables with the emotions permuted within each layout, among the rows that
    MEGC2019 keeps: the very samples the other rows evaluate, with each layout's class counts kept.
    (Permuting across layouts would hand a SAMM emotion to a CASME II row, where MEGC2019 does not map
    it, and the control would score another, smaller sample set.)"""
    import numpy as np

    from micronbert.data.protocol import load_protocol
    from micronbert.data.samples import read_samples, write_samples

    megc = load_protocol("megc2019")
    rng = np.random.default_rng(12345)
    out = []
    for s in samples:
        t = read_samples(s).copy()
        kept = megc.apply(t)["sample_id"]
        rows = np.flatnonzero(t["sample_id"].isin(set(kept)).to_numpy())
        emotion = t["emotion"].to_numpy().copy()
        emotion[rows] = emotion[rows[rng.permutation(len(rows))]]
        t["emotion"] = emotion
        path = work / f"shuffled_{Path(s).name}"
        write_samples(t, path)
        out.append(str(path))
    return out


def _run(cli, argv):
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
        rc = cli(argv)
    if rc:
        raise SystemExit(f"`micronbert {' '.join(argv)}` failed ({rc}):\n{buf.getvalue()[-3000:]}")


if __name__ == "__main__":
    main()
