"""`micronbert faces` on a real video, a frame folder and a video without a face."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd

from micronbert.cli import main
from micronbert.commands.faces import NO_FACE_EXIT


def test_faces_on_a_frame_folder(tmp_path, video_frames, sample_writer, capsys):
    src = tmp_path / "frames"
    sample_writer(src, list(video_frames[:10]), start=5)
    out = tmp_path / "out"
    assert main(["faces", str(src), "--out", str(out), "--size", "96"]) == 0
    df = pd.read_csv(out / "faces.csv")
    assert df.frame.tolist() == list(range(5, 15)) and df.present.all()
    assert df.image.tolist() == [f"{n:06d}.png" for n in range(5, 15)]
    m = df[[f"m{i}{j}" for i in range(2) for j in range(3)]].to_numpy()
    assert np.allclose(m, m[0])  # clip mode: one transform for all frames
    from micronbert.data.frames import read_image

    assert read_image(out / "000005.png").shape == (96, 96, 3)
    assert "10 frames aligned" in capsys.readouterr().out


def test_faces_frame_mode_on_a_video(tmp_path):
    from micronbert.data.builtin import face_videos

    out = tmp_path / "out"
    assert main(["faces", str(face_videos()[0]), "--out", str(out), "--mode", "frame", "--format", "jpg",
                 "--size", "112"]) == 0
    df = pd.read_csv(out / "faces.csv")
    assert len(df) == 72 and df.present.all() and len(list(out.glob("*.jpg"))) == 72


def test_video_without_a_face_exits_cleanly(tmp_path):
    from micronbert.data.builtin import no_face_video

    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "micronbert", "faces", str(no_face_video()), "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == NO_FACE_EXIT
    assert f"no face found in {no_face_video()}, frames 0-" in r.stderr and "Traceback" not in r.stderr
    df = pd.read_csv(out / "faces.csv")
    assert len(df) > 50 and not df.present.any() and not list(out.glob("*.png"))


def test_missing_source_is_one_line_error(tmp_path, capsys):
    assert main(["faces", str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "o")]) == 1
    assert "not found" in capsys.readouterr().err
