"""The flat pair index (implicit anchors, keyed permutation, compact file names) and seeking video reads."""
import numpy as np
import pytest

from micronbert.data.frames import VideoReader, iter_video, write_video
from micronbert.data.pairs import FrameNames, FrameSource, FrameStore, PairSchedule, discover_sources, keyed_permutation
from micronbert.errors import MicronbertError


def test_frame_names_are_stored_as_a_pattern_or_a_blob():
    contiguous = FrameNames([(n, f"img{n}.jpg") for n in range(1, 2001)])
    assert contiguous[0] == "img1.jpg" and contiguous[1999] == "img2000.jpg" and contiguous.nbytes() == 0
    padded = FrameNames([(n, f"reg_image{n:06d}.bmp") for n in range(5, 400, 3)])  # gaps: numbers kept, int32
    assert padded[1] == "reg_image000008.bmp" and padded.nbytes() == 4 * len(padded)
    odd = FrameNames([(1, "a1.png"), (2, "b2.png"), (7, "a7.png")])  # no single pattern: one blob
    assert [odd[i] for i in range(3)] == ["a1.png", "b2.png", "a7.png"]
    with pytest.raises(IndexError):
        odd[3]


@pytest.mark.parametrize("n", [1, 2, 3, 17, 1000, 4097])
def test_keyed_permutation_is_a_bijection(n):
    out = keyed_permutation(np.arange(n), n, key=12345)
    assert sorted(out.tolist()) == list(range(n))
    if n >= 1000:  # and it shuffles: few fixed points, another key gives another order
        assert (out == np.arange(n)).mean() < 0.01
        assert not np.array_equal(out, keyed_permutation(np.arange(n), n, key=6))


def test_schedule_memory_does_not_grow_with_frames():
    small = [FrameSource("folder", f"/c{i}", 30.0, 100) for i in range(50)]
    big = [FrameSource("folder", f"/c{i}", 30.0, 100_000) for i in range(50)]
    a, b = PairSchedule(small, 64, (0.04, 0.25), 0), PairSchedule(big, 64, (0.04, 0.25), 0)
    assert a.nbytes() == b.nbytes() < 5000
    assert len(b) == 50 * (100_000 - 1)
    # every epoch visits every anchor once
    sched = PairSchedule(small[:3], 10, (0.04, 0.25), 0)
    src, t, t2, _ = sched.spec_arrays(np.arange(len(sched)))
    assert len(set(zip(src.tolist(), t.tolist()))) == len(sched)
    assert ((t2 - t >= 1) & (t2 - t <= 8) & (t2 < 100)).all()


@pytest.fixture(scope="module")
def coded_video(tmp_path_factory):
    rng = np.random.default_rng(0)
    frames = [np.full((32, 32, 3), 8 * i, np.uint8) + rng.integers(0, 4, (32, 32, 3), dtype=np.uint8)
              for i in range(30)]
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    write_video(path, frames, fps=25)
    return path


def test_video_reader_seeks_to_the_same_frames_as_decoding_in_order(coded_video):
    decoded = list(iter_video(coded_video))
    reader = VideoReader(coded_video)
    for t in [17, 3, 4, 29, 0, 12, 13, 25]:  # random order, forward runs and backward seeks
        assert np.array_equal(reader.frame(t), decoded[t]), t
    with pytest.raises(MicronbertError, match="not decodable"):
        reader.frame(30)


def test_a_truncated_video_counts_the_frames_it_holds(tmp_path):
    import av

    # The header (moov) first, as cameras and `-movflags faststart` write it: after the cut the header
    # still says 30 frames, the file holds fewer.
    whole, cut = tmp_path / "whole.mp4", tmp_path / "cut.mp4"
    rng = np.random.default_rng(0)
    with av.open(str(whole), "w", format="mp4", options={"movflags": "faststart"}) as out:
        st = out.add_stream("mpeg4", rate=25)
        st.width = st.height = 32
        st.pix_fmt = "yuv420p"
        for _ in range(30):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), format="rgb24")
            for packet in st.encode(frame):
                out.mux(packet)
        for packet in st.encode():
            out.mux(packet)
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with av.open(str(cut)) as c:
        assert c.streams.video[0].frames == 30
    sources = discover_sources([cut], fps=25)
    n = sources[0].n_frames
    assert 2 <= n < 30  # not the header's count
    store = FrameStore(sources, 32)
    for t in range(n):
        store.get(0, t)
    with pytest.raises(MicronbertError, match="not decodable"):
        store.get(0, n + 2)  # past the end: an error, never the last frame again
    sched = PairSchedule(sources, 4, (0.04, 0.2), 0)
    _, t, t2, _ = sched.spec_arrays(np.arange(len(sched)))
    assert (t2 > t).all() and (t2 < n).all()  # no pair clamped onto the last frame


def _name_by_name(names, prefix=None):
    """The reference: every name parsed on its own, as list_frames did before the column check."""
    from micronbert.data.frames import frame_number, is_image

    found = {}
    for name in sorted(n for n in names if prefix is None or n.startswith(prefix)):
        n = frame_number(name) if is_image(name) and not name.startswith(".") else None
        if n is not None and n not in found:
            found[n] = name
    return sorted(found.items())


@pytest.mark.parametrize("case", [
    [f"img{n:05d}.jpg" for n in range(1, 300)],                       # padded, contiguous
    [f"img{n}.jpg" for n in range(1, 1200, 7)],                        # several widths, gaps
    [f"img{n:03d}.jpg" for n in range(1, 2000, 13)],                   # padded to 3, then wider
    [f"img{n:02d}.png" for n in range(0, 50)] + ["notes.txt", ".img99.png", "sub", "clip.mp4"],
    [f"reg_image{n:06d}.bmp" for n in range(5, 400, 3)] + [f"{n:06d}.bmp" for n in range(2, 9)],
    ["img1.jpg", "img01.jpg", "img2.jpg", "img002.JPG", "img3.jpeg"],  # one number, two names
    [f"006_{n:05d}.jpg" for n in range(100)] + [f"006_{n:05d}.JPG" for n in range(100, 120)],
    [f"frame{n}x.tif" for n in range(90, 120)] + ["frame7y.tif", "a.b.12.png", "über3.jpg", "ö4.jpg"],
    [f"img{n}.jpg" for n in (0, 5, 12, 2_500_000_000, 7)] + ["img.jpg", "img1.2.jpg"],
    [],
])
def test_numbering_by_columns_equals_name_by_name(case):
    import random

    from micronbert.data.frames import number_names

    names = list(case)
    random.Random(len(names)).shuffle(names)  # os.listdir order is arbitrary
    listing = number_names(names)
    expected = _name_by_name(names)
    assert list(zip(listing.numbers.tolist(), listing.names)) == expected
    framed = {name for _, name in expected}
    losers = {n for n in names if n not in framed and _name_by_name([n])}  # images that lost a shared number
    assert sorted(listing.others) == sorted(set(names) - framed - losers)
    stored = FrameNames(listing)
    assert [stored[i] for i in range(len(stored))] == [name for _, name in expected]
    assert list(zip(number_names(names, "img").numbers.tolist(), number_names(names, "img").names)) == \
        _name_by_name(names, "img")


def test_a_padded_folder_is_verified_without_a_name_per_frame(tmp_path):
    from micronbert.data.frames import scan_frames

    for n in [*range(3, 40), *range(50, 60)]:
        (tmp_path / f"img{n:05d}.jpg").touch()
    (tmp_path / "info.txt").touch()
    listing = scan_frames(tmp_path)
    assert listing.pattern == ("img", 5, ".jpg") and listing._names is None and listing.others == ["info.txt"]
    names = FrameNames(listing)
    assert names.numbers is not None and names.numbers.dtype == np.int32 and names[37] == "img00050.jpg"
