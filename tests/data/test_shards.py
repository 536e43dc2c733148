import json
import os

import numpy as np
import pytest
import torch

from micronbert.data.frames import read_image
from micronbert.data.pairs import fit_square
from micronbert.data.shard_stream import ShardPairStream
from micronbert.data.shards import decode_jpeg, iter_shard, load_manifest, write_shards
from micronbert.errors import MicronbertError
from torchrun_helper import run_torchrun


@pytest.fixture(scope="module")
def frame_shards(tmp_path_factory, face_frames_dir):
    out = tmp_path_factory.mktemp("shards") / "frames"
    write_shards([str(face_frames_dir)], out, size=4, img_size=32)
    return out


def test_frame_shards_round_trip(frame_shards, face_frames_dir):
    m = load_manifest(frame_shards)
    assert m["kind"] == "frames" and m["samples"] == 16 and m["img_size"] == 32
    assert [s["count"] for s in m["shards"]] == [4, 4, 4, 4]
    assert sorted(p.name for p in frame_shards.iterdir()) == ["manifest.json"] + [f"shard-00000{i}.tar" for i in range(4)]
    seen = []
    for s in m["shards"]:
        for key, files in iter_shard(frame_shards / s["name"]):
            meta = json.loads(files["json"])
            assert key == f"s000000_f{meta['frame']:06d}" and meta["fps"] == 30.0
            img = decode_jpeg(files["jpg"])
            ref = fit_square(read_image(face_frames_dir / f"img{meta['frame'] + 1}.jpg"), 32)
            assert img.shape == (32, 32, 3) and np.abs(img.astype(int) - ref).mean() < 6  # JPEG, lossy
            seen.append(meta["frame"])
    assert seen == list(range(16))  # a source's frames stay contiguous and in order
    with pytest.raises(MicronbertError, match="already holds shards"):
        write_shards([str(face_frames_dir)], frame_shards, size=4, img_size=32)


def test_shards_are_readable_by_webdataset(frame_shards):
    wds = pytest.importorskip("webdataset")
    urls = sorted(str(p) for p in frame_shards.glob("shard-*.tar"))
    samples = list(wds.WebDataset(urls, shardshuffle=False))
    assert len(samples) == 16
    assert {"__key__", "jpg", "json"} <= set(samples[0])
    assert decode_jpeg(samples[0]["jpg"]).shape == (32, 32, 3)


def test_pair_shards_store_ready_pairs(tmp_path, face_frames_dir):
    m = write_shards([str(face_frames_dir)], tmp_path / "p", size=5, img_size=32, pairs=True, delta_s=(0.04, 0.2))
    assert m["kind"] == "pairs" and m["samples"] == 15  # anchors t = 0..14 (δmin = 1 frame)
    for s in m["shards"]:
        for _, files in iter_shard(tmp_path / "p" / s["name"]):
            meta = json.loads(files["json"])
            assert 1 <= meta["delta"] <= 6 and meta["frame_tp"] - meta["frame"] == meta["delta"]
            assert decode_jpeg(files["t.jpg"]).shape == decode_jpeg(files["tp.jpg"]).shape == (32, 32, 3)
    stream = ShardPairStream([tmp_path / "p"], batch=3, img_size=32, buffer=4)
    a, b = next(iter(stream))
    assert a.shape == b.shape == (3, 32, 32, 3) and a.dtype == torch.uint8


def _take(stream, n):
    it = iter(stream)
    return [next(it) for _ in range(n)]


def test_stream_splits_shards_over_ranks_and_workers(frame_shards):
    kw = dict(batch=2, img_size=32, seed=3, buffer=8)
    for epoch in (0, 1):
        parts = [ShardPairStream([frame_shards], rank=r, world=2, **kw)._my_shards(epoch, w, 2)
                 for r in range(2) for w in range(2)]
        names = [p for part in parts for p, _ in part]
        assert sorted(names) == sorted(set(names)) and len(names) == 4  # disjoint, and together all shards
    with pytest.raises(MicronbertError, match="cannot be split"):
        ShardPairStream([frame_shards], rank=0, world=4, **kw)._my_shards(0, 0, 2)
    # pairs come from one source, δ within range, and the stream is deterministic
    a1, b1 = _take(ShardPairStream([frame_shards], **kw), 1)[0]
    a2, b2 = _take(ShardPairStream([frame_shards], **kw), 1)[0]
    assert torch.equal(a1, a2) and torch.equal(b1, b2) and a1.shape == (2, 32, 32, 3)


def test_stream_resume_skips_to_the_step_with_workers(frame_shards):
    kw = dict(batch=2, img_size=32, seed=1, buffer=4)
    loader = lambda s: torch.utils.data.DataLoader(s, batch_size=None, num_workers=2)  # noqa: E731
    full = _take(loader(ShardPairStream([frame_shards], **kw)), 7)
    resumed = _take(loader(ShardPairStream([frame_shards], start_step=3, **kw)), 4)
    for (a, b), (c, d) in zip(full[3:], resumed):
        assert torch.equal(a, c) and torch.equal(b, d)


def test_shard_cli(tmp_path, face_frames_dir):
    from micronbert.cli import main

    assert main(["shard", "--frames", str(face_frames_dir), "--out", str(tmp_path / "s"), "--size", "10",
                 "--img-size", "32"]) == 0
    assert [s["count"] for s in load_manifest(tmp_path / "s")["shards"]] == [10, 6]


@pytest.mark.slow
def test_two_rank_gloo_pretraining_reads_disjoint_shards(tmp_path, frame_shards):
    out, trace = tmp_path / "run", tmp_path / "trace"
    run_torchrun(["pretrain", "--preset", "test", "--frames", str(frame_shards), "--steps", "6", "--batch-size", "4",
                  "--log-every", "3", "--warmup-steps", "1", "--out", str(out), "--device", "cpu"],
                 env={"MICRONBERT_TRACE_SHARDS": str(trace)})
    run = json.loads((out / "run.json").read_text())
    assert run["world_size"] == 2 and run["data"]["shards"] == [str(frame_shards)]
    read = {}  # (rank, epoch) -> shards read
    for r in (0, 1):
        for line in (trace / f"rank{r}-worker0.txt").read_text().splitlines():
            epoch, name = line.split()
            read.setdefault((r, int(epoch)), set()).add(name)
    epochs = {e for _, e in read}
    assert epochs and all((0, e) in read and (1, e) in read for e in epochs)
    for e in epochs:  # within every epoch the ranks read disjoint halves of the shards
        assert not (read[0, e] & read[1, e])
        assert len(read[0, e] | read[1, e]) == 4 or e == max(epochs)  # the last epoch may be cut short
    assert len(epochs) >= 2
    assert (out / "model.safetensors").is_file()


@pytest.fixture(scope="module")
def six_sources(tmp_path_factory, face_frames_dir):
    """Six frame folders of 16 frames (copies of one clip under six names: what differs is the source)."""
    root = tmp_path_factory.mktemp("six")
    for i in range(6):
        d = root / f"person{i}"
        d.mkdir()
        for f in face_frames_dir.iterdir():
            (d / f.name).write_bytes(f.read_bytes())
    return root


def _distinct_sources_per_batch(shards, buffer, batches=12):
    stream = ShardPairStream([shards], batch=8, img_size=32, buffer=buffer, seed=4)
    it = stream.spec_batches()
    return float(np.mean([len({s.source for s in next(it)}) for _ in range(batches)]))


def test_batches_from_shards_mix_sources(tmp_path, six_sources):
    mixed = tmp_path / "mixed"
    write_shards([str(six_sources)], mixed, size=16, img_size=32, chunk=2)
    m = load_manifest(mixed)
    assert all(len(s["sources"]) >= 3 for s in m["shards"])  # chunks of many sources in every shard
    one_source = tmp_path / "one"  # chunks as long as a source: each shard holds one person
    write_shards([str(six_sources)], one_source, size=16, img_size=32, chunk=16)
    assert all(len(s["sources"]) == 1 for s in load_manifest(one_source)["shards"])
    mixed_n = _distinct_sources_per_batch(mixed, buffer=16)
    alone_n = _distinct_sources_per_batch(one_source, buffer=16)
    print(f"distinct sources per batch of 8: mixed {mixed_n:.2f}, one source per shard {alone_n:.2f}")
    assert alone_n == 1.0 and mixed_n >= 3.0
    # a larger shuffle buffer mixes the one-source shards too
    assert _distinct_sources_per_batch(one_source, buffer=64) >= 3.0


def test_parallel_writing_gives_the_same_shards(tmp_path, six_sources):
    a = write_shards([str(six_sources)], tmp_path / "a", size=20, img_size=32, chunk=5)
    b = write_shards([str(six_sources)], tmp_path / "b", size=20, img_size=32, chunk=5, workers=2)
    assert [s["name"] for s in a["shards"]] == [s["name"] for s in b["shards"]]
    for s in a["shards"]:
        assert (tmp_path / "a" / s["name"]).read_bytes() == (tmp_path / "b" / s["name"]).read_bytes()
    assert not list((tmp_path / "b").glob(".*.tmp"))


def test_resume_reads_only_the_window_it_stopped_in(tmp_path, six_sources):
    shards = tmp_path / "s"
    write_shards([str(six_sources)], shards, size=8, img_size=32, chunk=4)  # 12 shards of 8 frames
    kw = dict(batch=4, img_size=32, seed=2, buffer=8)  # a window = one shard
    full = ShardPairStream([shards], trace=tmp_path / "t_full", **kw)
    it = iter(full)
    batches = [next(it) for _ in range(30)]  # past the first epoch (96 pairs = 24 batches)
    resumed = ShardPairStream([shards], start_step=26, trace=tmp_path / "t_res", **kw)
    it = iter(resumed)
    for a, b in batches[26:]:
        c, d = next(it)
        assert torch.equal(a, c) and torch.equal(b, d)
    read = (tmp_path / "t_res" / "rank0-worker0.txt").read_text().splitlines()
    assert read[0].startswith("1 ") and len(read) <= 2  # epoch 1, from the window of step 26 on: no replay
    # the consumed tars are not needed at all: delete every shard read before step 24, resume again
    for line in (tmp_path / "t_full" / "rank0-worker0.txt").read_text().splitlines()[:24 * 4 // 8]:
        name = line.split()[1]
        if name not in {r.split()[1] for r in read}:
            (shards / name).unlink(missing_ok=True)
    c, d = next(iter(ShardPairStream([shards], start_step=26, **kw)))
    assert torch.equal(batches[26][0], c)


def test_a_corrupt_frame_is_skipped_and_reported_when_sharding(tmp_path, face_frames_dir, capsys):
    src = tmp_path / "clip"
    src.mkdir()
    for f in face_frames_dir.iterdir():
        (src / f.name).write_bytes(f.read_bytes())
    (src / "img5.jpg").write_bytes(b"not a jpeg")
    m = write_shards([str(src)], tmp_path / "s", size=4, img_size=32)
    assert m["samples"] == 15 and len(m["skipped"]) == 1 and "img5.jpg" in m["skipped"][0]
    assert "img5.jpg" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["ustar", "gnu", "pax"])
def test_shard_reading_equals_tarfile_for_every_tar_format(tmp_path, fmt):
    # Our shards (USTAR) are parsed from their headers; other writers' tars (GNU long names, PAX) and
    # damaged ones go through tarfile: every path gives what tarfile gives.
    import io
    import tarfile

    rng = np.random.default_rng(0)
    samples = [(f"{'k' * (120 if fmt != 'ustar' else 8)}{i:03d}", {"jpg": rng.bytes(int(n)), "json": b'{"a": 1}'})
               for i, n in enumerate(rng.integers(0, 2000, 7))]
    path = tmp_path / "x.tar"
    with tarfile.open(path, "w", format={"ustar": tarfile.USTAR_FORMAT, "gnu": tarfile.GNU_FORMAT,
                                         "pax": tarfile.PAX_FORMAT}[fmt]) as tar:
        for key, files in samples:
            for ext, data in files.items():
                info = tarfile.TarInfo(f"dir/{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    assert list(iter_shard(path)) == samples

    def outcome(read):
        try:
            return read()
        except tarfile.ReadError as exc:
            return type(exc)

    def by_tarfile():
        with tarfile.open(path, "r|") as tar:
            return [(m.name, tar.extractfile(m).read()) for m in tar if m.isfile()]

    whole = path.read_bytes()
    for cut in (3000, 2560, 1100):  # inside a member, at a header, inside the first data
        path.write_bytes(whole[:cut])
        ours = outcome(lambda: [(k, f) for k, f in iter_shard(path)])
        ref = outcome(by_tarfile)
        if isinstance(ref, list):  # the same members, grouped by key
            names = [f"{k}.{e}" for k, f in ours for e in f]
            assert names == [os.path.basename(n) for n, _ in ref]
        else:
            assert ours is ref


def test_batch_decoding_flips_and_converts_like_the_reference(frame_shards):
    stream = ShardPairStream([frame_shards], batch=4, img_size=32, seed=3)
    specs = next(stream.spec_batches())
    assert any(s.flip for s in specs) and not all(s.flip for s in specs)
    a, b = stream._collate(specs)
    for i, s in enumerate(specs):
        for got, data in ((a[i], s.a), (b[i], s.b)):
            ref = decode_jpeg(data)
            assert torch.equal(got, torch.from_numpy(np.ascontiguousarray(ref[:, ::-1] if s.flip else ref)))
