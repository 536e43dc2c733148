"""The pretraining identity term: −log a_i on swapped patches, of the softmax diagonal ('contrastive')
or of the change map itself ('signal')."""
import pytest
import torch

from micronbert.config import PretrainConfig, preset
from micronbert.model.mubert import MicronBertModel
from micronbert.errors import MicronbertError


def _losses(signal: str, identity_loss: str):
    torch.manual_seed(0)
    model = MicronBertModel(preset("test", dma_signal=signal), with_agreement=False)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    pcfg = PretrainConfig(identity_loss=identity_loss, swap_ratio=0.5)
    losses = model.pretrain_losses(x, x + 0.1, pcfg, torch.Generator().manual_seed(2))
    losses["loss"].backward()
    return losses, model


def test_contrastive_identity_term_is_on_the_softmax_diagonal_and_changes_nothing_else():
    contrastive, model = _losses("cosine", "contrastive")
    signal, _ = _losses("cosine", "signal")
    assert torch.equal(contrastive["loss_rec"], signal["loss_rec"])  # the same draws, the same reconstruction
    assert not torch.allclose(contrastive["loss_identity"], signal["loss_identity"])
    both, _ = _losses("cosine", "both")
    assert torch.allclose(both["loss_identity"], contrastive["loss_identity"] + signal["loss_identity"], rtol=1e-5)
    # on the paper's signal the change map is the softmax diagonal: the two settings agree
    paper_c, _ = _losses("paper", "contrastive")
    paper_s, _ = _losses("paper", "signal")
    assert torch.allclose(paper_c["loss_identity"], paper_s["loss_identity"])
    # the term trains both DMA projections (a contrastive target needs the keys too)
    assert model.dma.to_q.weight.grad.abs().sum() > 0 and model.dma.to_k.weight.grad.abs().sum() > 0


def test_identity_loss_is_checked():
    with pytest.raises(MicronbertError, match="identity_loss"):
        PretrainConfig(identity_loss="infonce")
