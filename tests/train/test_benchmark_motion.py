"""benchmarks/motion.py's own parts.

- The label-shuffled control scores the very samples the other rows score: labels are permuted within
  each layout among the rows MEGC2019 keeps (across layouts, a SAMM emotion landed in a CASME II row,
  MEGC2019 dropped it, and the control scored 174 of 300 samples).
- The probe's contextual-token attention (a PoI candidate) is the encoder's own attention.
"""
import os
import sys

import pandas as pd

from micronbert.data.protocol import load_protocol
from micronbert.data.samples import COLUMNS, read_samples, write_samples

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import motion  # noqa: E402

EMOTIONS = {"casme2": ["happiness", "disgust", "repression", "surprise", "others", "happiness"] * 3,
            "samm": ["Happiness", "Anger", "Contempt", "Surprise", "Other", "Fear"] * 3}


def table(dataset, emotions):
    rows = [{c: "" for c in COLUMNS} | {"dataset": dataset, "subject": f"s{i % 3}", "sample_id": f"s{i % 3}/c{i}",
                                         "clip": f"c{i}", "onset": 1, "apex": 2, "offset": 3, "emotion": e,
                                         "n_frames": 3, "frames_dir": f"/x/c{i}"} for i, e in enumerate(emotions)]
    return pd.DataFrame(rows, columns=COLUMNS)


def test_the_shuffled_tables_keep_the_samples_and_each_layouts_class_counts(tmp_path):
    megc = load_protocol("megc2019")
    paths = []
    for dataset, emotions in EMOTIONS.items():
        paths.append(str(tmp_path / f"{dataset}.csv"))
        write_samples(table(dataset, emotions), paths[-1])
    out = motion._shuffled(paths, tmp_path)
    moved = 0
    for before, after in zip(paths, out):
        a, b = megc.apply(read_samples(before)), megc.apply(read_samples(after))
        assert list(a["sample_id"]) == list(b["sample_id"])  # the same samples, in the same order
        assert sorted(a["label"]) == sorted(b["label"])       # the layout's class counts
        moved += int((a["label"] != b["label"]).sum())
    assert moved > 0  # and the labels did move


def test_the_probes_contextual_attention_is_the_blocks_own():
    # the weights motion.py reports, applied to the block's values, give the block's contextual output
    import torch

    from micronbert.model.encoder import ViTEncoder

    torch.manual_seed(0)
    enc = ViTEncoder(32, 8, 3, 32, 2, 4, 2.0).eval()
    images = torch.randn(2, 3, 32, 32)
    weights = motion._cls_attention(enc, images)  # (B, heads, 1 + N)
    assert weights.shape == (2, 4, 17)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 4))
    block = enc.blocks[-1]
    x = block.norm1(enc.hidden(images, 1))
    b, n, d = x.shape
    v = block.attn.qkv(x).reshape(b, n, 3, 4, d // 4)[:, :, 2]              # (B, N+1, heads, d/heads)
    mixed = torch.einsum("bhn,bnhc->bhc", weights, v).reshape(b, d)
    with torch.no_grad():
        assert torch.allclose(block.attn.proj(mixed), block.attn(x)[:, 0], atol=1e-5)


def test_each_rows_evaluate_command_uses_its_own_encoder(tmp_path):
    args = motion.argparse.Namespace(threads=1, shard="0/4", keep_fold_models=True, epochs=30, mode="loso",
                                     disjoint_init=str(tmp_path / "other_pretrained"))
    inits = {name: tmp_path / f"pretrained_{name}" for name in ("ours", "paper", "face")}

    def argv(method):
        a = motion.evaluate_argv(method, 1, args, ["s.csv"], tmp_path / "cache", tmp_path / "out", inits)
        init = a[a.index("--init") + 1] if "--init" in a else None
        return a[a.index("--model") + 1], init, a

    assert argv("micronbert")[:2] == ("micronbert", str(inits["ours"]))
    assert argv("paper")[:2] == ("paper", str(inits["paper"]))
    assert argv("learned-poi")[:2] == ("learned-poi", str(inits["ours"]))
    # the same model as micronbert, on the encoder pretrained with the face prior
    assert argv("face-poi-pretrained")[:2] == ("micronbert", str(inits["face"]))
    assert argv("no-pretrain")[:2] == ("no-pretrain", None)
    # not transductive: the same model as micronbert, on the encoder pretrained on other frames
    assert argv("disjoint-pretrain")[:2] == ("micronbert", args.disjoint_init)
    assert argv("shuffled")[:2] == ("micronbert", str(inits["ours"]))
    model, init, full = argv("flow-cnn")
    assert (model, init) == ("flow-cnn", None) and "--freeze-encoder" not in full
    assert full[full.index("--shard") + 1] == "0/4" and "--keep-fold-models" in full


def test_lodo_rows_ask_evaluate_for_lodo_in_their_own_run_folders(tmp_path):
    loso = motion.argparse.Namespace(threads=None, shard=None, keep_fold_models=False, epochs=30, disjoint_init=None,
                                     mode="loso")
    lodo = motion.argparse.Namespace(**{**vars(loso), "mode": "lodo"})
    inits = {"ours": tmp_path / "pretrained_ours"}
    for method in ("micronbert", "flow-cnn"):
        a = motion.evaluate_argv(method, 0, lodo, ["s.csv"], tmp_path / "cache", tmp_path / "out", inits)
        assert a[a.index("--mode") + 1] == "lodo"
        assert "--mode" not in motion.evaluate_argv(method, 0, loso, ["s.csv"], tmp_path / "cache", tmp_path / "out",
                                                    inits)
    # LOSO runs keep the names every earlier run was written under, so they resume; LODO ones never collide
    assert motion.run_name("micronbert", 2, loso) == "micronbert-seed2"
    assert motion.run_name("micronbert", 2, lodo) == "micronbert-lodo-seed2"
    kept = motion.argparse.Namespace(**{**vars(loso), "keep_fold_models": True})
    assert motion.run_name("no-poi", 0, kept) == "no-poi-seed0-kept"


def test_a_finished_run_made_with_another_model_config_is_not_reused_as_this_rows(tmp_path):
    """`micronbert` runs made before the face prior became its default are learned-poi runs: reusing one as
    today's micronbert row would report the wrong model under its name."""
    import json

    import pytest

    from micronbert.config import preset, to_dict
    from micronbert.faces.cache import FaceCache
    from micronbert.model.checkpoint import save_model
    from micronbert.model.mubert import MicronBertModel

    cfg = preset("test")
    save_model(tmp_path / "pretrained_ours", MicronBertModel(cfg).state_dict(), cfg)
    FaceCache(tmp_path / "cache").check_settings({"size": 32, "margin": 0.15, "detector": "template"})
    inits = {"ours": tmp_path / "pretrained_ours"}

    def finished(name, **model):
        res = tmp_path / "runs" / name
        res.mkdir(parents=True)
        (res / "run.json").write_text(json.dumps({"run": {"method": {"model": {**to_dict(cfg), **model}}}}))
        return res

    old = finished("micronbert-seed0")  # poi_prior none: the default before
    with pytest.raises(SystemExit, match="poi_prior: none there, face now"):
        motion.check_reused(old, "micronbert", inits, tmp_path / "cache")
    motion.check_reused(old, "learned-poi", inits, tmp_path / "cache")  # what it is
    motion.check_reused(finished("micronbert-seed1", poi_prior="face"), "micronbert", inits, tmp_path / "cache")
