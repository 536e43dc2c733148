import torch

from micronbert.config import PretrainConfig, preset
from micronbert.model.mubert import MicronBertModel
from micronbert.model.poi import poi_saliency


def test_saliency_has_mean_one_and_follows_similarity():
    tokens = torch.randn(2, 1 + 9, 16)
    tokens[:, 3] = tokens[:, 0] * 2  # patch 2 points where the contextual token points
    s = poi_saliency(tokens, 0.1)
    assert s.shape == (2, 9)
    assert torch.allclose(s.mean(1), torch.ones(2), atol=1e-5)
    assert (s.argmax(1) == 2).all()


def test_poi_gating_changes_the_output():
    torch.manual_seed(0)
    with_poi = MicronBertModel(preset("test", use_poi=True), with_decoder=False, with_agreement=False)
    no_poi = MicronBertModel(preset("test", use_poi=False), with_decoder=False, with_agreement=False)
    no_poi.load_state_dict(with_poi.state_dict())
    a, b = with_poi.encode_pair(torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32))
    gated, ungated = with_poi.micro_features(a, b), no_poi.micro_features(a, b)
    assert torch.allclose(gated["dma_map"], ungated["dma_map"])
    assert torch.allclose(ungated["poi_map"], torch.ones_like(ungated["poi_map"]))
    assert not torch.allclose(gated["features"], ungated["features"], atol=1e-4)
    assert torch.allclose(gated["features"], ungated["features"] * gated["poi_map"].unsqueeze(-1), atol=1e-6)


def _step(model, pcfg):
    x = torch.randn(4, 3, 32, 32)
    losses = model.pretrain_losses(x, x + 0.05 * torch.randn_like(x), pcfg, torch.Generator().manual_seed(0))
    losses["loss"].backward()
    return losses


def test_teacher_is_a_stop_gradient_target_moved_by_ema():
    for variant in ("mse", "dino"):
        torch.manual_seed(0)
        model = MicronBertModel(preset("test", poi_variant=variant))
        losses = _step(model, PretrainConfig(local_crops=2))
        assert {"loss", "loss_rec", "loss_agg", "loss_rec_swapped"} <= set(losses)
        teacher = model.agreement.teacher_encoder
        assert all(p.grad is None for p in teacher.parameters())
        assert model.encoder.blocks[0].attn.qkv.weight.grad is not None
        before = teacher.blocks[0].attn.qkv.weight.clone()
        with torch.no_grad():
            model.encoder.blocks[0].attn.qkv.weight.add_(1.0)
        model.agreement.update_teacher(model.encoder, 0.9)
        moved = teacher.blocks[0].attn.qkv.weight - before
        assert torch.allclose(moved, torch.full_like(moved, 0.1), atol=1e-5)


def test_poi_off_has_no_agreement_loss():
    model = MicronBertModel(preset("test", use_poi=False))
    assert model.agreement is None
    assert "loss_agg" not in _step(model, PretrainConfig())


def test_default_saliency_does_not_discard_most_of_the_face():
    """τ = 0.1 put the weight on ~62 of 196 patches of real faces (max/min ~180×) without favouring the
    face (docs/motion.md); the default keeps most patches in play."""
    import numpy as np

    from micronbert.data.builtin import face_photos
    from micronbert.data.pairs import fit_square
    from micronbert.model.mubert import normalise_images

    cfg = preset("tiny")
    torch.manual_seed(0)
    model = MicronBertModel(cfg, with_decoder=False, with_agreement=False).eval()
    faces = np.stack([fit_square(img, cfg.img_size) for img in face_photos().values()])
    with torch.no_grad():
        tokens = model.encoder(normalise_images(torch.from_numpy(faces)))

    def effective(tau):
        s = poi_saliency(tokens, tau)
        s = s / s.sum(1, keepdim=True)
        return float((1 / (s ** 2).sum(1)).mean())
    assert effective(cfg.poi_temperature) > 0.75 * cfg.num_patches
    assert effective(0.1) < 0.6 * cfg.num_patches  # the old default, for contrast


def test_face_prior_confines_the_saliency_to_the_template_face_and_adds_nothing_to_a_checkpoint():
    from micronbert.faces.template import template_face_share
    from micronbert.model.poi import POI_PRIOR_FLOOR, face_log_prior

    cfg = preset("tiny")
    assert face_log_prior(cfg) is None
    hull = template_face_share(cfg.img_size, cfg.patch_size, forehead=False)
    face = template_face_share(cfg.img_size, cfg.patch_size, forehead=True)
    torch.manual_seed(0)
    tokens = torch.randn(4, 1 + cfg.num_patches, cfg.embed_dim)
    mass = {}
    for prior in ("none", "face", "hull"):
        s = poi_saliency(tokens, cfg.poi_temperature, face_log_prior(preset("tiny", poi_prior=prior)))
        s = (s / s.sum(1, keepdim=True)).numpy()
        mass[prior] = ((s * hull).sum(1).mean(), (s * face).sum(1).mean())
    assert mass["none"][0] < 0.5  # about the hull's area share: the map alone has no idea where the face is
    assert mass["hull"][0] >= 0.9 and mass["face"][1] >= 0.9
    assert mass["face"][1] > mass["hull"][1] - 0.02 and mass["face"][0] < mass["hull"][0]  # the forehead is in
    # outside the face a patch weighs FLOOR of an inside one (before the learned map)
    w = face_log_prior(preset("tiny", poi_prior="hull")).exp().numpy()
    assert abs(w[hull == 0].max() - POI_PRIOR_FLOOR) < 1e-6 and abs(w[hull == 1].min() - 1.0) < 1e-6
    # the prior is derived from the config, not stored: weights saved without it load into a model with it
    plain = MicronBertModel(cfg, with_decoder=False, with_agreement=False)
    confined = MicronBertModel(preset("tiny", poi_prior="face"), with_decoder=False, with_agreement=False)
    confined.load_state_dict(plain.state_dict())
    assert set(plain.state_dict()) == set(confined.state_dict())


def test_face_prior_puts_most_saliency_on_each_real_face_s_own_landmarks():
    """Real photos aligned as prepare aligns: the saliency mass inside each face's own 68-landmark hull,
    through the model's maps (what heat-maps show)."""
    import numpy as np

    from micronbert.data.builtin import face_photos
    from micronbert.faces import FaceAligner
    from micronbert.faces.template import hull_patch_share
    from micronbert.model.mubert import normalise_images

    aligner = FaceAligner(size=112)
    faces = [aligner.align_image(img) for img in face_photos().values()]
    x = normalise_images(torch.from_numpy(np.stack([f.image for f in faces])))
    own = np.stack([hull_patch_share(f.landmarks_aligned, 112, 8) for f in faces])
    mass = {}
    for prior in ("none", "hull"):
        torch.manual_seed(0)
        model = MicronBertModel(preset("tiny", poi_prior=prior), with_decoder=False, with_agreement=False).eval()
        s = model.maps(x, x)["poi_map"].reshape(len(faces), -1).numpy()
        mass[prior] = ((s / s.sum(1, keepdims=True)) * own).sum(1)
    assert mass["none"].mean() < 0.5
    assert mass["hull"].mean() > 0.75 and (mass["hull"] > mass["none"] + 0.25).all()
    # "own": each face's own hull, given with the pair (as pair_source gives the cache's landmarks)
    from micronbert.model.poi import mask_patch_share
    from micronbert.faces.template import own_hull_mask

    masks = np.stack([own_hull_mask(f.landmarks_aligned, 112) for f in faces])
    share = mask_patch_share(torch.from_numpy(masks), 8)
    assert np.allclose(share.numpy(), own)
    torch.manual_seed(0)
    model = MicronBertModel(preset("tiny", poi_prior="own"), with_decoder=False, with_agreement=False).eval()
    s = model.maps(x, x, face_share=share)["poi_map"].reshape(len(faces), -1).numpy()
    mass_own = ((s / s.sum(1, keepdims=True)) * own).sum(1)
    assert mass_own.min() >= 0.9 and (mass_own > mass["hull"]).all()
    # without its hull a pair falls back to the template's, weighed as an own hull is
    template = mask_patch_share(torch.from_numpy(np.stack([own_hull_mask(None, 112)] * len(faces))), 8)
    torch.testing.assert_close(model.maps(x, x)["poi_map"], model.maps(x, x, face_share=template)["poi_map"])
