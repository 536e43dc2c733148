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
