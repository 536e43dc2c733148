"""The synthetic benchmark: real layouts that `index --strict` accepts, and actions where they belong."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from micronbert.synth import (FORMATS, Distractions, displacement_field, intensity, make_clips, read_actions,
                             synthesize)
from micronbert.faces.template import REGIONS


def test_distinct_people(people):
    # 7 photos + one video frame, each a different real person; each face was detected
    names = [p.name for p in people]
    assert len(names) == len(set(names)) == 8
    assert "wolfgang_langer" in names and "astronaut" in names


@pytest.mark.parametrize("fmt", FORMATS)
def test_dataset_passes_index_strict(fmt, tmp_path, people):
    from micronbert.cli import main

    root = tmp_path / fmt
    summary = synthesize(fmt, root, subjects=3, clips_per_subject=3, seed=1, n_frames=5, people=people)
    out = tmp_path / "samples.csv"
    rc = main(["index", "--dataset", fmt, "--root", str(root), "--out", str(out), "--strict"])
    assert rc == 0
    df = pd.read_csv(out, dtype=str)
    assert len(df) == 9 and df["subject"].nunique() == 3
    actions = read_actions(root)
    # the ground truth names exactly the indexed samples, with the same labels and frames
    merged = actions.merge(df, on=["dataset", "sample_id"], suffixes=("", "_idx"))
    assert len(merged) == 9
    assert (merged["emotion"] == merged["emotion_idx"]).all()
    assert (merged["onset"].astype(int) == merged["onset_idx"].astype(int)).all()
    assert (merged["apex"].astype(int) == merged["apex_idx"].astype(int)).all()
    assert summary["samples"] == 9 and len(summary["distinct_people"]) == 3


def test_layout_details(tmp_path, people):
    synthesize("samm", tmp_path / "samm", subjects=1, clips_per_subject=1, n_frames=3, people=people)
    files = sorted((tmp_path / "samm" / "SAMM" / "006" / "006_1_1").iterdir())
    assert all(f.name.startswith("006_") and f.suffix == ".jpg" and len(f.stem) == 9 for f in files)
    import cv2

    img = cv2.imread(str(files[0]), cv2.IMREAD_UNCHANGED)
    assert img.ndim == 2 and img.shape == (540, 960)  # grey, as SAMM ships
    synthesize("smic", tmp_path / "smic", subjects=1, clips_per_subject=1, n_frames=3, people=people)
    bmp = list((tmp_path / "smic" / "HS" / "s1" / "micro").rglob("*.bmp"))
    assert len(bmp) == 3 and all(len(b.stem) == len("image") + 6 for b in bmp)


def _region_mask(landmarks, regions, shape, radius):
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]]
    mask = np.zeros(shape, bool)
    for x, y in landmarks[sum((REGIONS[r] for r in regions.split("+")), [])]:
        mask |= (xs - x) ** 2 + (ys - y) ** 2 <= radius ** 2
    return mask


@pytest.mark.parametrize("emotion,inside,outside", [
    ("happiness", "mouth+nose+jaw", "brows"), ("surprise", "brows", "mouth"), ("repression", "mouth+chin", "eyes"),
    ("disgust", "brows+nose+mouth", "jaw")])
def test_action_is_where_it_belongs(emotion, inside, outside, people):
    clips = make_clips("casme2", 2, 2, 2.0, 3, [emotion], 9, Distractions.none(), people=people)
    for c in clips:
        iod = np.linalg.norm(c.landmarks[36:42].mean(0) - c.landmarks[42:48].mean(0))
        radius = 0.45 * iod  # ~32 px at the 224-px scale
        on, ap = c.render(0).astype(np.float32), c.render(c.apex_pos).astype(np.float32)
        diff = np.abs(ap - on).mean(-1)
        near = _region_mask(c.landmarks, inside, diff.shape, radius)
        far = _region_mask(c.landmarks, outside, diff.shape, 0.3 * iod)
        # the image change (not only the field we asked for) sits in the landmark region of the class
        assert diff[near].sum() / diff.sum() > 0.8, (emotion, c.aus)
        assert diff[far].sum() / diff.sum() < 0.1, (emotion, c.aus)
        f = np.linalg.norm(displacement_field(c.bumps, *diff.shape), axis=-1)
        assert f[near].sum() / f.sum() > 0.8
        # amplitude: the peak displacement is the asked one (at 224 px) within the random gains
        s = np.sqrt(abs(np.linalg.det(np.array(eval(c.row("casme2")["to_crop"]))[:, :2])))
        assert 0.3 * c.amplitude224 < f.max() * s < 2.5 * c.amplitude224


def test_time_course_onset_apex_offset(people):
    c = make_clips("casme2", 1, 1, 2.0, 0, ["surprise"], 11, Distractions.none(), people=people)[0]
    on = c.render(0).astype(np.float32)
    change = [np.abs(c.render(i).astype(np.float32) - on).mean() for i in range(11)]
    k = c.apex_pos
    assert np.argmax(change) == k
    assert all(change[i] <= change[i + 1] + 1e-3 for i in range(k))          # rises to the apex
    assert all(change[i] >= change[i + 1] - 1e-3 for i in range(k, 10))     # falls to the offset
    assert change[-1] < 0.05 * change[k]
    t = np.arange(11)
    assert np.allclose(intensity(t, 0, 4, 10)[[0, 4, 10]], [0, 1, 0])


def test_randomness_and_distractions(people):
    a = make_clips("smic", 2, 3, 1.5, 0, people=people)
    b = make_clips("smic", 2, 3, 1.5, 0, people=people)
    c = make_clips("smic", 2, 3, 1.5, 1, people=people)
    assert np.array_equal(a[0].render(2), b[0].render(2))  # deterministic per seed
    assert not np.array_equal(a[0].render(2), c[0].render(2))
    amps = {round(x.amplitude224, 4) for x in a}
    assert len(amps) == len(a)  # per-sample amplitude
    # distractions present by default: the onset frame differs from the no-distraction render
    assert any(x.noise > 0 and x.jpeg > 0 and x.head is not None for x in a)
    # SMIC has no annotated apex: it is the middle frame, like the reader's
    assert all(x.apex_pos == (len(x.numbers) - 1) // 2 for x in a)


def test_more_subjects_than_people_are_marked(people):
    clips = make_clips("casme2", len(people) + 1, 1, 1.5, 0, ["happiness"], 3, people=people)
    last = clips[-1]
    assert not last.distinct and last.person.startswith(clips[0].person)
    assert clips[0].distinct
    assert not np.array_equal(last.base, clips[0].base)


def test_background_motion_moves_an_object_beside_the_face_and_leaves_the_rest_as_it_was(people):
    """--background-motion: motion that carries no label, outside the face in the aligned crop. The other
    draws (action, head drift, noise, ...) do not change when it is switched on."""
    import cv2

    from micronbert.faces.template import template_face_share
    from micronbert.synth.motion import crop_transform

    quiet = Distractions.none()
    plain = make_clips("casme2", 2, 2, 1.5, 0, n_frames=5, people=people)
    moving = make_clips("casme2", 2, 2, 1.5, 0, n_frames=5, people=people,
                        distractions=Distractions(background_p=1.0))
    assert all(c.background is None and c.row("casme2")["background_px224"] == 0.0 for c in plain)
    assert all(c.background is not None for c in moving)
    for a, b in zip(plain, moving):
        assert (a.head == b.head).all() and a.noise == b.noise and a.jpeg == b.jpeg
        assert a.row("casme2")["bumps"] == b.row("casme2")["bumps"]
        assert 0.5 * 4.0 <= b.row("casme2")["background_px224"] <= 4.0 + 1e-6
    # without other distractions and without the action: the apex differs from the onset only beside the face
    still = make_clips("casme2", 1, 3, 1e-6, 0, n_frames=5, people=people,
                       distractions=Distractions(**{**quiet.__dict__, "background_p": 1.0}))
    face = template_face_share(224, 16, forehead=True).reshape(14, 14)
    for c in still:
        m = crop_transform(c.landmarks)
        onset, apex = (cv2.warpAffine(c.render(p).astype(np.float32), m, (224, 224)) for p in (0, c.apex_pos))
        cells = np.abs(apex - onset).mean(-1).reshape(14, 16, 14, 16).mean((1, 3))
        assert cells[face == 0].max() > 2.0   # the object moved, in grey levels per 16-px cell
        assert cells[face > 0].max() < 0.5    # the face did not
