import math

import pytest
import torch

from micronbert.model.dma import DiagonalMicroAttention, diagonal_attention, diagonal_attention_naive


@pytest.mark.parametrize("n,chunk,heads", [(196, 64, 1), (100, 33, 2), (50, 256, 1)])
def test_fast_equals_naive_forward_and_backward(n, chunk, heads):
    torch.manual_seed(n)
    q = torch.randn(3, heads, n, 16, requires_grad=True)
    k = torch.randn(3, heads, n, 16, requires_grad=True)
    upstream = torch.randn(3, heads, n)
    fast = diagonal_attention(q, k, 0.25, chunk)
    (fast * upstream).sum().backward()
    gq, gk = q.grad.clone(), k.grad.clone()
    q.grad = k.grad = None
    naive = diagonal_attention_naive(q, k, 0.25)
    (naive * upstream).sum().backward()
    assert torch.allclose(fast, naive, atol=1e-5, rtol=0)
    assert torch.allclose(gq, q.grad, atol=1e-5, rtol=0)
    assert torch.allclose(gk, k.grad, atol=1e-5, rtol=0)


def test_gradcheck_float64():
    torch.manual_seed(0)
    q = torch.randn(2, 1, 20, 4, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 1, 20, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: diagonal_attention(a, b, 0.5, 7), (q, k))


def test_diagonal_is_low_where_frames_differ():
    torch.manual_seed(0)
    dma = DiagonalMicroAttention(64, heads=1)  # Q and K start as one projection
    a = torch.randn(2, 49, 64)
    b = a.clone()
    b[:, 10] = torch.randn(2, 64)  # one location changed
    _, diag = dma(b, a, a)
    assert (diag.argmin(1) == 10).all()


def test_plain_cross_attention_ablation_differs():
    torch.manual_seed(0)
    x, y = torch.randn(2, 16, 32), torch.randn(2, 16, 32)
    dma = DiagonalMicroAttention(32, diagonal=True)
    plain = DiagonalMicroAttention(32, diagonal=False)
    plain.load_state_dict(dma.state_dict())
    f_dma, m_dma = dma(x, y, y)
    f_plain, m_plain = plain(x, y, y)
    assert torch.allclose(m_dma, m_plain, atol=1e-6)  # same map for display
    assert not torch.allclose(f_dma, f_plain, atol=1e-4)  # different features


def _texture_tokens(n=64, d=32, seed=0):
    """Tokens whose distinctiveness varies a lot across patches (a few near-duplicates, a few unique)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(1, n, d, generator=g)
    base[:, : n // 2] = base[:, :1] + 0.05 * torch.randn(1, n // 2, d, generator=g)  # half look alike
    return base


@pytest.mark.parametrize("signal", ["cosine", "distance", "relative", "paper"])
def test_every_signal_is_a_map_in_0_1_and_one_where_nothing_changed(signal):
    torch.manual_seed(0)
    dma = DiagonalMicroAttention(32, cosine_temperature=0.1, signal=signal)
    x = _texture_tokens()
    _, same = dma(x, x, x)
    assert same.shape == (1, 64) and (same > 0).all() and (same <= 1 + 1e-6).all()
    if signal != "paper":
        # unchanged = 1 whatever the texture; the paper's softmax diagonal is low for look-alike patches
        assert torch.allclose(same, torch.ones_like(same), atol=1e-4)
    else:
        assert same[0, :32].max() < 0.5 * same[0, 32:].min()


@pytest.mark.parametrize("signal", ["cosine", "distance", "relative"])
def test_corrected_signals_find_a_small_change_on_a_look_alike_patch_where_the_paper_signal_does_not(signal):
    torch.manual_seed(0)
    x = _texture_tokens()
    y = x.clone()
    y[:, 5] += 0.3 * torch.randn(1, 32, generator=torch.Generator().manual_seed(9))  # small change, common texture
    fixed = DiagonalMicroAttention(32, cosine_temperature=0.1, signal=signal)
    paper = DiagonalMicroAttention(32, cosine_temperature=0.1, signal="paper")
    paper.load_state_dict(fixed.state_dict())
    _, m = fixed(y, x, x)
    _, m_paper = paper(y, x, x)
    assert m.argmin(1).item() == 5
    assert m_paper.argmin(1).item() != 5  # the look-alike patches are lower than the changed one


@pytest.mark.parametrize("signal", ["cosine", "distance", "relative", "paper"])
def test_signal_gradients_match_the_naive_reference(signal):
    torch.manual_seed(1)
    x, y = torch.randn(2, 30, 16), torch.randn(2, 30, 16)
    fast = DiagonalMicroAttention(16, cosine_temperature=0.2, signal=signal, chunk=7)
    naive = DiagonalMicroAttention(16, cosine_temperature=0.2, signal=signal, chunk=0)
    naive.load_state_dict(fast.state_dict())
    traced = DiagonalMicroAttention(16, cosine_temperature=0.2, signal=signal, traceable=True)
    traced.load_state_dict(fast.state_dict())
    outs = []
    for m in (fast, naive, traced):
        m.zero_grad()
        f, d = m(x, y, y)
        (f.sum() + d.sum()).backward()
        outs.append((f.detach(), d.detach(), m.to_q.weight.grad.clone()))
    for f, d, g in outs[1:]:
        assert torch.allclose(f, outs[0][0], atol=1e-5)
        assert torch.allclose(d, outs[0][1], atol=1e-5)
        assert torch.allclose(g, outs[0][2], atol=1e-4)


@pytest.mark.parametrize("signal", ["cosine", "distance"])
def test_self_normalised_signals_need_a_temperature(signal):
    with pytest.raises(ValueError, match="temperature"):
        DiagonalMicroAttention(16, cosine_temperature=0.0, signal=signal)


def _identity_projection_maps(first, second):
    """cosine and distance change maps of the same tokens through identity Q/K projections."""
    maps = {}
    for signal in ("cosine", "distance"):
        dma = DiagonalMicroAttention(first.shape[-1], cosine_temperature=0.1, signal=signal)
        with torch.no_grad():
            dma.to_q.weight.copy_(torch.eye(first.shape[-1]))
            dma.to_q.bias.zero_()
            dma.to_k.load_state_dict(dma.to_q.state_dict())
        maps[signal] = dma.change_map(first, second)
    return maps


def test_distance_signal_weighs_a_change_by_its_size_not_by_the_patch_norm():
    """Cosine turns a faint patch's small change into a large angle; the distance signal, normalised once
    per frame pair, ranks the larger absolute change first. For unit tokens the two are the same map."""
    gen = torch.Generator().manual_seed(3)
    x = torch.nn.functional.normalize(torch.randn(1, 16, 32, generator=gen), dim=-1)
    x[:, 3] *= 0.1  # a faint patch
    y = x.clone()
    y[:, 3] += 0.05 * torch.nn.functional.normalize(torch.randn(1, 32, generator=gen), dim=-1)
    y[:, 7] += 0.2 * torch.nn.functional.normalize(torch.randn(1, 32, generator=gen), dim=-1)
    maps = _identity_projection_maps(y, x)
    assert maps["cosine"].argmin(1).item() == 3
    assert maps["distance"].argmin(1).item() == 7
    unit = torch.nn.functional.normalize(torch.randn(1, 16, 32, generator=gen), dim=-1)
    moved = torch.nn.functional.normalize(unit + 0.1 * torch.randn(1, 16, 32, generator=gen), dim=-1)
    same = _identity_projection_maps(moved, unit)
    assert torch.allclose(same["cosine"], same["distance"], atol=1e-5)


def test_match_map_is_the_softmax_diagonal_on_the_same_logits_whatever_the_signal():
    torch.manual_seed(0)
    cosine = DiagonalMicroAttention(32, cosine_temperature=0.1, signal="cosine")
    paper = DiagonalMicroAttention(32, cosine_temperature=0.1, signal="paper")
    paper.load_state_dict(cosine.state_dict())
    a, b = torch.randn(2, 25, 32), torch.randn(2, 25, 32)
    _, softmax_map = paper(b, a, a)
    _, cosine_map, match = cosine(b, a, a, match=True)
    assert torch.allclose(match, softmax_map, atol=1e-6)
    assert not torch.allclose(cosine_map, softmax_map, atol=1e-3)


def test_contrastive_identity_target_punishes_collapse_the_cosine_signal_rewards():
    # Every patch the same token: the cosine change map says "unchanged everywhere" (−log a = 0, its
    # best), while the softmax diagonal cannot tell the place from any other (a = 1/N): the contrastive
    # identity term is at its worst exactly where the signal term is at its best.
    torch.manual_seed(0)
    dma = DiagonalMicroAttention(32, cosine_temperature=0.1, signal="cosine")
    same = torch.randn(1, 1, 32).expand(2, 49, 32).contiguous()
    _, change, match = dma(same, same, same, match=True)
    assert torch.allclose(-torch.log(change), torch.zeros_like(change), atol=1e-5)
    assert torch.allclose(-torch.log(match), torch.full((2, 49), math.log(49)), atol=1e-4)
    distinct = torch.randn(2, 49, 32)
    assert (-torch.log(dma(distinct, distinct, distinct, match=True)[2])).mean() < 0.5 * math.log(49)
