"""Alignment on real faces: eyes level and at the template after alignment (landmarks re-detected on
the aligned crop), clip-consistent transforms, per-frame mode with presence flags."""
from __future__ import annotations

import numpy as np
import pytest

from micronbert.errors import MicronbertError
from micronbert.faces import (FaceAligner, apply_transform, eye_centres, region_points, similarity_transform,
                              template_landmarks)

MAX_ANGLE = 2.0  # degrees
MAX_POS = 3.0  # % of the crop size


def test_template_geometry():
    t = template_landmarks(224, 0.15)
    assert t.shape == (68, 2)
    assert t.min() >= 0.15 * 224 - 1e-9 and t.max() <= 0.85 * 224 + 1e-9
    left, right = eye_centres(t)
    assert left[1] == pytest.approx(right[1])  # level eyes
    assert (left[0] + right[0]) / 2 == pytest.approx(112)  # centred
    assert t[30, 0] == pytest.approx(112) and t[8, 1] > t[30, 1] > left[1] > t[19, 1]  # chin, nose, eyes, brows
    t2 = template_landmarks(112, 0.25)
    assert np.allclose((t2 - 0.25 * 112) / (0.5 * 112), (t - 0.15 * 224) / (0.7 * 224))
    assert region_points("lip_corners", 224, 0.15).shape == (2, 2)
    with pytest.raises(MicronbertError):
        template_landmarks(224, 0.6)


def test_similarity_transform_recovers_a_known_one():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 100, (5, 2))
    a = 1.7 * np.array([[np.cos(0.3), -np.sin(0.3)], [np.sin(0.3), np.cos(0.3)]])
    m = np.hstack([a, [[4.0], [-9.0]]])
    est = similarity_transform(src, apply_transform(m, src))
    assert np.allclose(est, m, atol=1e-9)
    mirrored = src * [-1, 1]  # a reflection is not a similarity: never fit one
    est = similarity_transform(src, mirrored)
    assert np.linalg.det(est[:, :2]) > 0


@pytest.mark.parametrize("size,margin", [(224, 0.15), (128, 0.25)])
def test_stills_eyes_level_and_on_template(frontal_photos, eye_check, size, margin):
    al = FaceAligner(size=size, margin=margin)
    worst = []
    for name, img in frontal_photos.items():
        face = al.align_image(img)
        assert face.image.shape == (size, size, 3) and face.image.dtype == np.uint8
        assert face.transform.shape == (2, 3) and face.landmarks.shape == (68, 2)
        assert np.allclose(face.landmarks_aligned, apply_transform(face.transform, face.landmarks))
        geo = eye_check(al, face.image)
        assert geo is not None, f"{name}: no face re-detected in the aligned crop"
        angle, pos = geo
        assert abs(angle) < MAX_ANGLE, (name, angle)
        assert pos < MAX_POS, (name, pos)
        worst.append((name, round(angle, 2), round(pos, 2)))
    print(worst)


def test_profile_photo_still_aligns(photos, aligner):
    face = aligner.align_image(photos["45-m7-di-ph"])
    assert face.image.shape == (224, 224, 3)


def test_every_frame_of_a_real_video_frame_mode(video_frames, eye_check):
    # All 72 frames of single_face.mp4, per-frame landmarks with smoothing (the head moves).
    al = FaceAligner(mode="frame")
    clip = al.align_clip(video_frames)
    assert clip.face_found and clip.present.all() and clip.mode == "frame"
    assert clip.frames.shape == (len(video_frames), 224, 224, 3)
    assert clip.transform.shape == (len(video_frames), 2, 3) and clip.landmarks.shape == (len(video_frames), 68, 2)
    geo = np.array([eye_check(al, f) for f in clip.frames])
    assert np.abs(geo[:, 0]).max() < MAX_ANGLE, np.abs(geo[:, 0]).max()
    assert geo[:, 1].max() < MAX_POS, geo[:, 1].max()


def test_clip_mode_uses_one_transform(video_frames, aligner, eye_check):
    frames = video_frames[10:40:3]
    clip = aligner.align_clip(frames, reference=2)
    assert clip.reference == 2 and clip.transform.shape == (2, 3) and clip.face_found
    expected = np.stack([aligner.warp(f, clip.transform) for f in frames])
    assert np.array_equal(clip.frames, expected)
    assert clip.transforms().shape == (len(frames), 2, 3)
    angle, pos = eye_check(aligner, clip.frames[2])  # the reference frame itself is on template
    assert abs(angle) < MAX_ANGLE and pos < MAX_POS


def test_still_repeated_as_clip_gives_identical_frames(photos):
    img = photos["astronaut"]
    for mode in ("clip", "frame"):
        clip = FaceAligner(mode=mode).align_clip([img] * 5)
        assert clip.face_found and clip.present.all()
        for f in clip.frames[1:]:
            assert np.array_equal(f, clip.frames[0]), mode


def test_reference_without_face_falls_to_next_frame(photos, noise_frames, aligner):
    img = photos["grace_hopper"]
    clip = aligner.align_clip([noise_frames[0], img, img], reference=0, check_presence=True)
    assert clip.face_found and clip.reference == 1
    assert any("fitted on frame 1" in n for n in clip.notes)
    assert clip.present.tolist() == [False, True, True]


def test_no_face_clip_is_flagged(noise_frames, aligner):
    for mode in ("clip", "frame"):
        clip = FaceAligner(mode=mode).align_clip(noise_frames)
        assert not clip.face_found and not clip.present.any()
        assert clip.frames.shape == (len(noise_frames), 224, 224, 3)
        assert any("no face found" in n for n in clip.notes)
    with pytest.raises(MicronbertError, match="no face"):
        aligner.align_image(noise_frames[0])


def test_frame_mode_presence_on_a_video_that_loses_the_face():
    from micronbert.data.builtin import feat_data_dir
    from micronbert.data.frames import iter_video

    # face_noface.mov: the face leaves the picture part-way; every 6th frame keeps the test short.
    frames = [f for i, f in enumerate(iter_video(feat_data_dir() / "face_noface.mov")) if i % 6 == 0]
    clip = FaceAligner(mode="frame").align_clip(frames)
    assert clip.face_found
    assert clip.present[:5].all() and not clip.present[-5:].any()
    assert np.isnan(clip.landmarks[~clip.present]).all()
    assert any("no face found in" in n for n in clip.notes)
