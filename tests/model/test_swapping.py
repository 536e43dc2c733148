import pytest
import torch

from micronbert.model.swapping import blockwise_swap, swap_mask


@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_exact_fraction_swapped(ratio):
    g = torch.Generator().manual_seed(0)
    mask = swap_mask(7, 14, ratio, generator=g)
    assert mask.shape == (7, 196)
    assert (mask.sum(1) == round(ratio * 196)).all()


def test_swapped_patches_come_from_the_other_frame():
    g = torch.Generator().manual_seed(1)
    p, size = 8, 32
    a = torch.randn(4, 3, size, size)
    b = torch.randn(4, 3, size, size)
    swapped, mask = blockwise_swap(a, b, p, 0.5, generator=g)
    grid = size // p
    for i in range(4):
        for j in range(grid * grid):
            r, c = divmod(j, grid)
            sl = (i, slice(None), slice(r * p, (r + 1) * p), slice(c * p, (c + 1) * p))
            expected = b[sl] if mask[i, j] else a[sl]
            assert torch.equal(swapped[sl], expected)
    # samples get different masks (one rand per sample, not one mask for the batch)
    assert not all(torch.equal(mask[0], mask[i]) for i in range(1, 4))


def test_blocks_of_patches_swap_together():
    g = torch.Generator().manual_seed(2)
    mask = swap_mask(3, 8, 0.5, block=2, generator=g).view(3, 4, 2, 4, 2)
    assert (mask.sum((2, 4)) % 4 == 0).all()  # each 2×2 block is all-or-nothing
    assert (mask.flatten(1).sum(1) == 32).all()


def test_bad_ratio_and_block_rejected():
    with pytest.raises(ValueError):
        swap_mask(1, 4, 1.5)
    with pytest.raises(ValueError):
        swap_mask(1, 5, 0.5, block=2)
