"""Every command fed bad input: one line on stderr, no traceback, the documented exit status, and not
one input file changed (hashes before and after). Commands run in-process through cli.main.

Exit status (README "Exit status"): 1 error, 2 bad flag or value (checked before any work).
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from micronbert.cli import main
from micronbert.data.frames import write_image
from micronbert.testing import fake

sys.path.insert(0, str(Path(__file__).parent / "infer"))
from infer_helpers import make_classifier_dir  # noqa: E402

ERR, USAGE = 1, 2


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A fake CASME II tree, its sample table, a frame folder, a model, and weights of the wrong shape."""
    base = tmp_path_factory.mktemp("bad inputs")  # a space in the path on purpose
    fd = fake.fake_casme2(base / "casme2", dirty=False)
    samples = base / "samples.csv"
    assert main(["index", "--dataset", "casme2", "--root", str(fd.root), "--out", str(samples)]) == 0
    frames = base / "clip"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        write_image(frames / f"img{i}.png", rng.integers(0, 255, (48, 48, 3), dtype=np.uint8))
    model = make_classifier_dir(base / "model", "test")
    wrong = make_classifier_dir(base / "wrong", "test")
    cfg = json.loads((wrong / "config.json").read_text())
    cfg["model"]["embed_dim"] = 64  # weights saved for 32
    (wrong / "config.json").write_text(json.dumps(cfg))
    bad_cfgs = {}
    for name, change in {"img_size_str": {"img_size": "112"}, "patch0": {"patch_size": 0},
                         "depth0": {"depth": 0}}.items():
        d = make_classifier_dir(base / name, "test")
        cfg = json.loads((d / "config.json").read_text())
        cfg["model"].update(change)
        (d / "config.json").write_text(json.dumps(cfg))
        bad_cfgs[name] = d
    afile = base / "a_file.txt"
    afile.write_text("not a folder\n")
    folder = base / "existing_folder"
    folder.mkdir()
    return {"base": base, "root": fd.root, "sheet": fd.sheet, "samples": samples, "frames": frames,
            "frame": frames / "img0.png", "frame2": frames / "img1.png", "model": model, "wrong": wrong,
            "file": afile, "folder": folder, **bad_cfgs, "video": base / "missing.mp4"}


def _fill(arg, inp):
    return [a.format(**{k: str(v) for k, v in inp.items()}) if isinstance(a, str) else a for a in arg]


# (id, argv with {placeholders}, exit status, text the error line must contain)
CASES = [
    # index: outputs never land on the sheet, a folder, or a dataset file
    ("index-out-is-sheet", "index --dataset casme2 --root {root} --annotations {sheet} --out {sheet}", USAGE,
     "would be overwritten"),
    ("index-out-is-folder", "index --dataset casme2 --root {root} --out {folder}", USAGE, "existing folder"),
    ("index-out-is-dataset-file", "index --dataset casme2 --root {root} --out {sheet}", USAGE, "file of the dataset"),
    ("index-out-under-file", "index --dataset casme2 --root {root} --out {file}/s.csv", USAGE, "is a file"),
    ("index-root-missing", "index --dataset casme2 --root {base}/nope --out {base}/o/s.csv", ERR, "nope"),
    ("index-name-without-folder", "index --dataset casme2 --root {root} --name x --out {base}/o/s.csv", USAGE,
     "--name"),
    # faces
    ("faces-out-inside-clip", "faces {frames} --out {frames}/crops", USAGE, "inside the input folder"),
    ("faces-out-is-clip", "faces {frames} --out {frames}", USAGE, "overwritten"),
    ("faces-out-is-file", "faces {frames} --out {file}", USAGE, "existing file"),
    ("faces-out-contains-clip", "faces {frames} --out {base}", USAGE, "contains the input folder"),
    ("faces-size-0", "faces {frames} --out {base}/f --size 0", USAGE, "--size"),
    ("faces-smooth-0", "faces {frames} --out {base}/f --smooth 0", USAGE, "--smooth"),
    ("faces-margin-nan", "faces {frames} --out {base}/f --margin nan", USAGE, "finite"),
    ("faces-source-missing", "faces {base}/nope --out {base}/f", ERR, "nope"),
    # prepare
    ("prepare-out-is-table", "prepare --samples {samples} --out {samples}", USAGE, "existing file"),
    ("prepare-out-in-frames", "prepare --samples {samples} --out {root}/CASME2_RAW_selected/sub01/EP02_01f/c",
     USAGE, "inside the input folder"),
    ("prepare-size-0", "prepare --samples {samples} --out {base}/c --size 0", USAGE, "--size"),
    ("prepare-workers-0", "prepare --samples {samples} --out {base}/c --workers 0", USAGE, "--workers"),
    ("prepare-margin-negative", "prepare --samples {samples} --out {base}/c --margin -1", USAGE, "--margin"),
    ("prepare-table-missing", "prepare --samples {base}/nope.csv --out {base}/c", ERR, "nope.csv"),
    # predict
    ("predict-max-intervals-0", "predict {frames} --weights {model} --out {base}/p --max-intervals 0", USAGE,
     "--max-intervals"),
    ("predict-fps-negative", "predict {frames} --weights {model} --out {base}/p --fps -5", USAGE, "--fps"),
    ("predict-max-duration-0", "predict {frames} --weights {model} --out {base}/p --max-duration 0", USAGE,
     "--max-duration"),
    ("predict-max-frames-0", "predict {frames} --weights {model} --out {base}/p --max-frames 0", USAGE,
     "--max-frames"),
    ("predict-min-score-nan", "predict {frames} --weights {model} --out {base}/p --min-score nan", USAGE, "finite"),
    ("predict-onset-only", "predict {frames} --weights {model} --out {base}/p --onset 1", USAGE, "--apex"),
    ("predict-out-is-input", "predict {frames} --weights {model} --out {frames}", USAGE, "overwritten"),
    ("predict-out-in-model", "predict {frames} --weights {model} --out {model}/p", USAGE, "inside the input"),
    ("predict-out-is-file", "predict {frames} --weights {model} --out {file}", USAGE, "existing file"),
    ("predict-input-missing", "predict {video} --weights {model} --out {base}/p", ERR, "missing.mp4"),
    ("predict-wrong-shape-weights", "predict {frames} --weights {wrong} --out {base}/p", ERR, "wrong"),
    ("predict-config-img-size-str", "predict {frames} --weights {img_size_str} --out {base}/p", ERR, "img_size"),
    ("predict-config-patch-0", "predict {frames} --weights {patch0} --out {base}/p", ERR, "patch_size"),
    ("predict-config-depth-0", "predict {frames} --weights {depth0} --out {base}/p", ERR, "depth"),
    # dma-map and export
    ("dma-map-out-is-frame", "dma-map --weights {model} {frame} {frame2} --out {frame}", USAGE, "overwritten"),
    ("dma-map-out-is-folder", "dma-map --weights {model} {frame} {frame2} --out {folder}", USAGE, "existing folder"),
    ("dma-map-wrong-shape", "dma-map --weights {wrong} {frame} {frame2} --out {base}/m.png", ERR, "wrong"),
    ("dma-map-config-depth-0", "dma-map --weights {depth0} {frame} {frame2} --out {base}/m.png", ERR, "depth"),
    ("export-onnx-is-folder", "export --weights {model} --onnx {folder}", USAGE, "existing folder"),
    ("export-opset-old", "export --weights {model} --onnx {base}/m.onnx --opset 5", USAGE, "opset"),
    # pretrain, shard, evaluate, finetune: their numeric flags obey the shared rules
    ("pretrain-batch-0", "pretrain --frames {frames} --out {base}/pt --batch-size 0", USAGE, "--batch-size"),
    ("pretrain-swap-2", "pretrain --frames {frames} --out {base}/pt --swap-ratio 2", USAGE, "--swap-ratio"),
    ("pretrain-lr-nan", "pretrain --frames {frames} --out {base}/pt --lr nan", USAGE, "finite"),
    ("pretrain-lr-text", "pretrain --frames {frames} --out {base}/pt --lr fast", USAGE, "--lr"),
    ("pretrain-ckpt-every-0", "pretrain --frames {frames} --out {base}/pt --ckpt-every 0", USAGE, "--ckpt-every"),
    ("pretrain-log-every-0", "pretrain --frames {frames} --out {base}/pt --log-every 0", USAGE, "--log-every"),
    ("pretrain-delta-reversed", "pretrain --frames {frames} --out {base}/pt --delta 1 0", USAGE, "--delta"),
    ("pretrain-fps-negative", "pretrain --frames {frames} --out {base}/pt --fps -5", USAGE, "--fps"),
    ("pretrain-steps-0", "pretrain --frames {frames} --out {base}/pt --steps 0", USAGE, "--steps"),
    ("shard-delta-reversed", "shard --frames {frames} --out {base}/sh --delta 1 0", USAGE, "--delta"),
    ("shard-quality-0", "shard --frames {frames} --out {base}/sh --quality 0", USAGE, "--quality"),
    ("evaluate-lr-negative", "evaluate --samples {samples} --out {base}/ev --lr -1", USAGE, "--lr"),
    ("evaluate-batch-0", "evaluate --samples {samples} --out {base}/ev --batch-size 0", USAGE, "--batch-size"),
    ("evaluate-epochs-0", "evaluate --samples {samples} --out {base}/ev --epochs 0", USAGE, "--epochs"),
]

CUDA_CASES = [
    ("pretrain-device-cuda", "pretrain --frames {frames} --out {base}/pt --device cuda", USAGE, "cuda"),
    ("evaluate-device-cuda", "evaluate --samples {samples} --out {base}/ev --device cuda", USAGE, "cuda"),
    ("evaluate-device-bogus", "evaluate --samples {samples} --out {base}/ev --device tpu9", USAGE, "device"),
]


def _hashes(base: Path) -> dict[str, str]:
    return {str(p.relative_to(base)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(base.rglob("*")) if p.is_file()}


def _check(argv, want_rc, want_text, inputs, capsys):
    before = _hashes(inputs["base"])
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse usage errors
        rc = exc.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert rc == want_rc, (rc, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "error" in lines[0], err
    assert want_text in lines[0], lines[0]
    assert _hashes(inputs["base"]) == before, "an input file changed"
    # nothing written where the command was refused before its work
    for name in ("pt", "sh", "ev", "c", "f", "p", "m.png", "m.onnx"):
        assert not (inputs["base"] / name).exists()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, inputs, capsys):
    _, argv, rc, text = case
    _check(_fill(argv.split(), inputs), rc, text, inputs, capsys)


@pytest.mark.parametrize("case", CUDA_CASES, ids=[c[0] for c in CUDA_CASES])
def test_bad_device(case, inputs, capsys):
    import torch

    if torch.cuda.is_available() and "cuda" in case[1]:
        pytest.skip("a GPU is present")
    _, argv, rc, text = case
    _check(_fill(argv.split(), inputs), rc, text, inputs, capsys)


def test_at_least_forty_cases():
    assert len(CASES) + len(CUDA_CASES) >= 40


def test_every_option_has_help_and_no_double_default():
    from micronbert.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        for action in p._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{name} {action.option_strings[0]} has no help text"
        text = p.format_help()
        assert "(default: None)" not in text, name
        for line_no, line in enumerate(text.splitlines()):
            assert line.count("default") <= 2, (name, line)


def test_subprocess_usage_error_is_one_line(tmp_path):
    """The installed entry point behaves as main() does (one real process for the whole table)."""
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "micronbert.cli", "pretrain", "--frames", str(tmp_path),
                           "--out", str(tmp_path / "o"), "--batch-size", "0"], capture_output=True, text=True)
    assert proc.returncode == USAGE and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "--batch-size" in proc.stderr
