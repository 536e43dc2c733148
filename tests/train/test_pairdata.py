"""What evaluation loads per sample: the (onset, apex) pair and the frames just before and after the apex,
and the views a prediction averages over."""
import numpy as np
import pandas as pd

from micronbert.faces.cache import FaceCache
from micronbert.train.pairdata import PairData, apex_neighbours, load_pairs, pair_source


def test_apex_neighbours_stay_inside_the_clip():
    assert apex_neighbours([1, 2, 3, 4, 5], 1, 3, 5) == [2, 4]
    assert apex_neighbours([1, 2, 3, 4, 5], 1, 2, 5) == [None, 3]   # the onset is not an apex view
    assert apex_neighbours([1, 2, 3, 4, 5], 1, 5, 5) == [4, None]   # nothing after the offset
    assert apex_neighbours([1, 2, 3, 4, 5], 1, 3, 0) == [2, None]   # offset unknown: nothing after the apex
    assert apex_neighbours([14, 10, 12], 10, 12, 14) == [None, 14]  # by position in the ordered frames
    assert apex_neighbours([1, 2, 4], 1, 3, 4) == [None, None]       # an apex the clip lacks


def test_the_cache_source_gives_the_apex_neighbours_and_load_pairs_weights_the_missing_one_zero(tmp_path):
    cache = FaceCache(tmp_path / "cache")
    rng = np.random.default_rng(0)
    frames = {}
    rows = []
    for i, apex in enumerate((13, 15)):  # the second clip's apex is its offset
        frames[i] = rng.integers(0, 255, (6, 32, 32, 3)).astype(np.uint8)
        cache.save("casme2", f"s{i}", frames[i], np.arange(10, 16), meta={"onset": 10, "apex": apex, "offset": 15})
        rows.append({"dataset": "casme2", "sample_id": f"s{i}", "onset": 10, "apex": apex, "offset": 15})
    table, data = load_pairs(pd.DataFrame(rows), pair_source(str(tmp_path / "cache"), 32))
    assert len(table) == 2 and data.neighbours.shape == (2, 2, 32, 32, 3)
    assert data.has_neighbour.tolist() == [[True, True], [True, False]]
    np.testing.assert_array_equal(data.neighbours[0, 0], frames[0][2])  # frame 12
    np.testing.assert_array_equal(data.neighbours[0, 1], frames[0][4])  # frame 14
    np.testing.assert_array_equal(data.neighbours[1, 0], frames[1][4])
    np.testing.assert_array_equal(data.neighbours[1, 1], data.apex[1])   # a placeholder, weight 0
    # a source that gives pairs only: no neighbours
    _, plain = load_pairs(pd.DataFrame(rows), lambda row: (frames[0][0], frames[0][3]))
    assert plain.neighbours is None and len(plain.prediction_views(True, True)) == 2


def test_prediction_views_are_the_pair_its_neighbours_and_their_mirror_images():
    rng = np.random.default_rng(1)
    onset, apex = (rng.integers(0, 255, (2, 8, 8, 3)).astype(np.uint8) for _ in range(2))
    near = rng.integers(0, 255, (2, 2, 8, 8, 3)).astype(np.uint8)
    has = np.array([[True, False], [True, True]])
    data = PairData(onset, apex, near, has)
    views = data.prediction_views(flip=True, neighbours=True)
    assert len(views) == 6
    apexes = [apex, near[:, 0], near[:, 1]]
    for k, (v, w) in enumerate(views):
        mirrored = k >= 3
        want = apexes[k % 3][:, :, ::-1] if mirrored else apexes[k % 3]
        np.testing.assert_array_equal(v.apex, want)
        np.testing.assert_array_equal(v.onset, onset[:, :, ::-1] if mirrored else onset)
        assert w.tolist() == ([True, True] if k % 3 == 0 else has[:, k % 3 - 1].tolist())
    assert len(data.prediction_views(flip=False, neighbours=True)) == 3
    assert len(data.prediction_views(flip=True, neighbours=False)) == 2
    assert len(data.prediction_views(flip=False, neighbours=False)) == 1


def test_the_cache_source_gives_each_clip_its_own_face_hull_and_views_carry_it(tmp_path):
    """The PoI prior "own": each clip's reference landmarks mapped into the crop (and to the model's size),
    the template's hull for a clip without landmarks; a mirrored view flips the mask with the frames."""
    from micronbert.faces.template import hull_mask, template_landmarks

    cache = FaceCache(tmp_path / "cache")
    frames = np.zeros((3, 64, 64, 3), np.uint8)
    lm = template_landmarks(64, 0.15) * 0.5 + [4.0, 10.0]  # a small face left of centre, in crop pixels
    shift = np.array([[1.0, 0.0, -20.0], [0.0, 1.0, -5.0]])  # source pixel -> crop pixel
    cache.save("casme2", "own", frames, [1, 2, 3], landmarks=lm + [20.0, 5.0], transform=shift,
               meta={"onset": 1, "apex": 2, "offset": 3})
    cache.save("casme2", "none", frames, [1, 2, 3], meta={"onset": 1, "apex": 2, "offset": 3})
    rows = [{"dataset": "casme2", "sample_id": s, "onset": 1, "apex": 2, "offset": 3} for s in ("own", "none")]
    _, data = load_pairs(pd.DataFrame(rows), pair_source(str(tmp_path / "cache"), 32))
    assert data.face.shape == (2, 32, 32)
    np.testing.assert_array_equal(data.face[0], hull_mask(lm / 2, 32))  # the cache's 64 px -> 32 px
    np.testing.assert_array_equal(data.face[1], hull_mask(template_landmarks(32, 0.15), 32))
    assert data.face[0][:, :16].sum() > 3 * data.face[0][:, 16:].sum()  # the face is on the left
    views = data.prediction_views(flip=True, neighbours=True)
    np.testing.assert_array_equal(views[-1][0].face, data.face[:, :, ::-1])
    assert all(v.face is not None for v, _ in views)
    assert data.registered("translation").face is data.face
    np.testing.assert_array_equal(data.mirrored().mirrored().face, data.face)
    # a source without masks (raw frames): no face
    _, plain = load_pairs(pd.DataFrame(rows), lambda row: (frames[0, :32, :32], frames[0, :32, :32]))
    assert plain.face is None
