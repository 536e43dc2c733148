"""benchmarks/direction_probe.py: its direction rows are what the grid head receives (after all blocks or
fewer), the vertex recovers a displacement whatever the texture, and lip-corner-only clips are found."""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import direction_probe as dp  # noqa: E402
from test_error_factors import write_actions  # noqa: E402

from micronbert.config import preset  # noqa: E402
from micronbert.model.classifier import to_float  # noqa: E402
from micronbert.model.heads import MicronBertClassifier  # noqa: E402
from micronbert.model.mubert import normalise_images  # noqa: E402


def test_vertex_reads_the_displacement_where_the_central_difference_reads_texture_too():
    # per patch c(sx, sy) = k·((m_x + sx)² + (m_y + sy)²) + floor: motion m, texture steepness k
    m = torch.tensor([[0.3, -0.2, 0.1]]), torch.tensor([[0.1, 0.25, -0.3]])
    k = torch.tensor([[1.0, 5.0, 0.2]])
    s = 0.5

    def c(sx, sy):
        return k * ((m[0] + sx) ** 2 + (m[1] + sy) ** 2) + 0.7

    changes = torch.stack([c(0, 0), c(s, 0), c(-s, 0), c(0, s), c(0, -s)])
    torch.testing.assert_close(dp.vertex(changes, s, floor=0.01), torch.stack(m, -1))
    torch.testing.assert_close(dp.central(changes), 4 * s * k[..., None] * torch.stack(m, -1))


def test_the_direction_rows_are_the_classifiers_motion():
    cfg = preset("test", depth=2)
    torch.manual_seed(0)
    state = MicronBertClassifier(cfg, 3).backbone.state_dict()
    rng = np.random.default_rng(0)
    onset = rng.integers(0, 255, (3, 32, 32, 3)).astype(np.uint8)
    apex = np.roll(onset, 1, axis=2)
    for blocks in (None, 1):
        model = MicronBertClassifier(preset("test", depth=2, dma_direction_blocks=blocks or 0), 3).eval()
        model.load_backbone(state)
        with torch.no_grad():
            ref = model.forward_all(normalise_images(to_float(onset, "cpu")),
                                    normalise_images(to_float(apex, "cpu")))["dma_motion"]
        got = dp.central(dp.changes(state, cfg, onset, apex, cfg.dma_shift_px, batch=2, blocks=blocks))
        torch.testing.assert_close(got, ref)


def test_lip_corner_only_clips(tmp_path):
    (tmp_path / "casme2").mkdir()
    write_actions(tmp_path / "casme2" / "actions.csv")  # c0, c1: lip corners only; c2: brows
    got = dp.lip_corner_only(tmp_path, ["casme2/sub01/c0", "casme2/sub01/c2", "casme2/sub01/c1", "samm/x"])
    assert got.tolist() == [True, False, True, False]
