import numpy as np

from micronbert.cli import main
from micronbert.config import preset
from micronbert.data.frames import read_image
from micronbert.infer.visualise import change_map, overlay
from micronbert.model.checkpoint import save_model
from micronbert.model.mubert import MicronBertModel


def test_change_map_is_bright_where_the_diagonal_is_low():
    dma = np.full((4, 4), 0.5)
    dma[1, 2] = 0.01
    cm = change_map(dma)
    assert cm[1, 2] == 1.0 and cm.min() == 0.0
    assert np.all(change_map(np.full((3, 3), 0.2)) == 0)  # a flat map has no change


def test_overlay_keeps_the_image_where_the_map_is_cold():
    img = np.full((32, 32, 3), 100, np.uint8)
    out = overlay(img, np.zeros((4, 4)), alpha=0.0)
    assert np.array_equal(out, img)
    hot = overlay(img, np.ones((4, 4)), alpha=1.0)
    assert not np.array_equal(hot, img)


def test_dma_map_command_draws_and_saves_maps(tmp_path, face_frames_dir):
    cfg = preset("test")
    save_model(tmp_path / "m", MicronBertModel(cfg).state_dict(), cfg)
    a, b = face_frames_dir / "img1.jpg", face_frames_dir / "img5.jpg"
    rc = main(["dma-map", "--weights", str(tmp_path / "m"), str(a), str(b), "--out", str(tmp_path / "map.png"),
               "--npz", str(tmp_path / "maps.npz")])
    assert rc == 0
    png = read_image(tmp_path / "map.png")
    assert png.shape[0] > 100 and png.shape[1] > 4 * png.shape[0] // 2  # five panels side by side
    maps = np.load(tmp_path / "maps.npz")
    assert maps["dma_map"].shape == (cfg.grid, cfg.grid) and maps["poi_map"].shape == (cfg.grid, cfg.grid)
    assert np.all(maps["dma_map"] > 0) and np.all(maps["dma_map"] <= 1)


def test_dma_map_command_names_a_missing_weights_folder(tmp_path, capsys, face_frames_dir):
    rc = main(["dma-map", "--weights", str(tmp_path / "none"), str(face_frames_dir / "img1.jpg"),
               str(face_frames_dir / "img2.jpg"), "--out", str(tmp_path / "x.png")])
    assert rc == 1 and str(tmp_path / "none") in capsys.readouterr().err
