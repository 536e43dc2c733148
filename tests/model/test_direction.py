"""Directional DMA: the shifts, the sign of the motion it reads, and its ablation (no-direction)."""
import pytest
import torch

from micronbert.config import preset
from micronbert.errors import MicronbertError
from micronbert.model import heads as heads_module
from micronbert.model.direction import motion_from_changes, shift_content, shifted_views
from micronbert.model.heads import MicronBertClassifier


def _image(seed=0, batch=4, size=32):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.avg_pool2d(torch.randn(batch, 3, size, size, generator=g), 3, 1, 1)


def _classifier(seed=0, **switches):
    torch.manual_seed(seed)
    return MicronBertClassifier(preset("test", **switches), num_classes=3, dropout=0.0).eval()


def test_shift_content_moves_the_content_with_edges_repeated_and_blends_below_a_pixel():
    x = torch.arange(12.0).view(1, 1, 3, 4)
    right = shift_content(x, 1, 0)
    assert torch.equal(right[..., 1:], x[..., :-1]) and torch.equal(right[..., 0], x[..., 0])
    down = shift_content(x, 0, -1)  # up: row i takes row i + 1, the last row repeats
    assert torch.equal(down[..., :-1, :], x[..., 1:, :]) and torch.equal(down[..., -1, :], x[..., -1, :])
    assert torch.allclose(shift_content(x, 0.5, 0), (x + right) / 2)
    assert [v.shape for v in shifted_views(x, 0.5)] == [x.shape] * 4
    with pytest.raises(ValueError):
        shift_content(x, 1.5, 0)


def test_motion_is_the_central_difference_of_the_shifted_change_maps():
    changes = torch.tensor([3.0, 1.0, 2.0, 5.0]).view(4, 1, 1)  # right, left, down, up
    assert motion_from_changes(changes).flatten().tolist() == [2.0, -3.0]


@pytest.mark.parametrize("seed", [0, 1])
def test_the_direction_read_from_dma_has_the_sign_of_the_motion_from_initialisation(seed):
    model, onset = _classifier(seed), _image(seed)
    with torch.no_grad():
        for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            motion = model.forward_all(onset, shift_content(onset, dx, dy))["dma_motion"]  # (B, N, 2)
            along = motion[..., 0] * dx + motion[..., 1] * dy
            across = motion[..., 1] if dx else motion[..., 0]
            assert (along > 0).float().mean() >= 0.9, (dx, dy)
            assert across.mean().abs() < 0.3 * along.mean(), (dx, dy)


def test_no_direction_ignores_the_shifted_apexes_and_the_full_model_does_not(monkeypatch):
    onset = _image()
    apex = shift_content(onset, 0.5, 0)
    full, no_dir = _classifier(), _classifier(dma_shift_px=0.0)
    assert len(full.pair_frames(onset, apex)) == 6 and len(no_dir.pair_frames(onset, apex)) == 2
    assert _classifier(use_dma=False).shift_px == 0.0  # read from the diagonal: gone with DMA
    with torch.no_grad():
        before = (full(onset, apex), no_dir(onset, apex))
        noisy = [v + 0.3 * torch.randn_like(v) for v in shifted_views(apex, 0.5)]
        monkeypatch.setattr(heads_module, "shifted_views", lambda images, px: noisy)
        after = (full(onset, apex), no_dir(onset, apex))
    assert not torch.allclose(before[0], after[0], atol=1e-6)
    assert torch.equal(before[1], after[1])
    # the same weights but the head's two direction input channels: the encoder and DMA are shared
    shared = {k: v for k, v in full.state_dict().items() if not k.startswith("head.conv.0.weight")}
    missing, unexpected = no_dir.load_state_dict(shared, strict=False)
    assert missing == ["head.conv.0.weight"] and not unexpected
    assert full.head.conv[0].weight.shape[1] == no_dir.head.conv[0].weight.shape[1] + 2


def test_from_hidden_refuses_a_pair_without_the_shifted_apexes():
    model, onset = _classifier(), _image()
    with torch.no_grad():
        hidden = model.backbone.encode_pair(onset, onset)
        with pytest.raises(ValueError, match="shifted apexes"):
            model.from_hidden(*hidden)


def test_direction_read_after_fewer_blocks_does_not_depend_on_the_later_ones():
    """dma_direction_blocks = k: the onset and the shifted apexes are matched after k blocks, so the
    later blocks change the change map and the logits but not the motion; read after all blocks (the
    default 0), the motion changes with them."""
    onset = _image()
    apex = shift_content(onset, 0.5, 0)
    early, late = _classifier(depth=2, dma_direction_blocks=1), _classifier(depth=2)
    assert early.frame_depths == [2, 2, 1, 1, 1, 1, 1] and late.frame_depths == [2] * 6
    assert len(early.pair_frames(onset, apex)) == 7  # the onset again, to be matched after one block
    with torch.no_grad():
        before = [m.forward_all(onset, apex) for m in (early, late)]
        for m in (early, late):
            for p in m.backbone.encoder.blocks[1].parameters():
                p.add_(0.2 * torch.randn_like(p))
        after = [m.forward_all(onset, apex) for m in (early, late)]
        enc = early.backbone.encoder
        ref = early.backbone.motion(enc.hidden(onset, 1), [enc.hidden(v, 1) for v in shifted_views(apex, 0.5)])
        with pytest.raises(ValueError, match="hid_onset_direction"):
            early.from_hidden(enc.hidden(onset), enc.hidden(apex), [enc.hidden(v) for v in shifted_views(apex, 0.5)])
    assert torch.equal(before[0]["dma_motion"], after[0]["dma_motion"])
    assert not torch.allclose(before[0]["dma_map"], after[0]["dma_map"])
    assert not torch.allclose(before[1]["dma_motion"], after[1]["dma_motion"])
    torch.testing.assert_close(after[0]["dma_motion"], ref)
    with pytest.raises(MicronbertError, match="dma_direction_blocks"):
        preset("test", depth=2, dma_direction_blocks=3)
