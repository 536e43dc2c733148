"""Media checks shared by faces/prepare/predict: odd-sized frames left out, truncated videos noted."""
from __future__ import annotations

import cv2
import numpy as np
import pandas as pd

from micronbert.cli import main
from micronbert.data.frames import write_image
from micronbert.faces.media import VideoStream, write_video_stream


def test_faces_leaves_out_a_frame_of_another_size(tmp_path, photos, capsys):
    face = cv2.resize(photos["grace_hopper"], (240, 300))
    src = tmp_path / "clip"
    src.mkdir()
    for i in range(4):
        write_image(src / f"img{i}.png", face if i != 2 else cv2.resize(face, (120, 150)))
    assert main(["faces", str(src), "--out", str(tmp_path / "out"), "--size", "64"]) == 0
    err = capsys.readouterr().err
    assert "differs from the clip's 240x300 left out: 2" in err
    df = pd.read_csv(tmp_path / "out" / "faces.csv")
    assert df.loc[df.frame == 2, "present"].item() == 0 and pd.isna(df.loc[df.frame == 2, "image"].item())
    assert len(list((tmp_path / "out").glob("*.png"))) == 3


def test_truncated_video_is_counted_by_decoding(tmp_path):
    import av

    rng = np.random.default_rng(0)
    path = tmp_path / "v.mp4"
    # header first (faststart), so a file cut in half still says 90 frames, as a broken download does
    with av.open(str(path), "w", format="mp4", options={"movflags": "faststart"}) as out:
        st = out.add_stream("mpeg4", rate=30)
        st.width = st.height = 64
        st.pix_fmt = "yuv420p"
        for _ in range(90):
            img = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
            for packet in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in st.encode():
            out.mux(packet)
    full = VideoStream(path)
    assert sum(1 for _ in full) == 90 and full.note is None
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    stream = VideoStream(cut)
    n = sum(1 for _ in stream)
    assert stream.header_frames == 90 and 0 < n < 90
    assert f"header says 90 frames but only {n} decoded" in stream.note
