"""The fine-tuning recipe: paired augmentation, class weights, layer decay, determinism, classifier folders."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from micronbert.config import preset
from micronbert.errors import MicronbertError
from micronbert.model.heads import MicronBertClassifier
from micronbert.model.classifier import load_classifier, predict_pairs, save_classifier
from micronbert.train.methods import MicronBertMethod, build_method, default_recipe
from micronbert.train.pairdata import PairData
from micronbert.train.finetune import train_loop
from micronbert.train.recipe import (FinetuneConfig, class_weights, classifier_param_groups, epochs_for, family_recipe,
                                     paired_augment)

pytestmark = pytest.mark.usefixtures("one_thread")


def pair_data(table, pairs):
    return PairData(np.stack([pairs[s][0] for s in table["sample_id"]]),
                    np.stack([pairs[s][1] for s in table["sample_id"]]))


def test_paired_augmentation_moves_both_frames_together():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 32, 32).repeat(4, 1, 1, 1)
    a, b, _ = paired_augment(x, x.clone(), FinetuneConfig(), g)
    assert torch.equal(a, b)                      # identical frames stay identical: no fake motion
    assert not torch.allclose(a, x)               # and something did change
    assert not torch.allclose(a[0], a[1])         # each sample draws its own transform
    y = x.clone()
    y[:, :, 10:14, 10:14] += 0.3                  # a local change between the frames survives augmentation
    a2, b2, _ = paired_augment(x, y.clamp(0, 1), FinetuneConfig(), torch.Generator().manual_seed(0))
    assert (b2 - a2).abs().sum() > 0


def test_class_weights_balance_the_training_fold():
    w = class_weights(np.array([0, 0, 0, 1]), 3)
    # N / (C_present * n_c) = 4/(2*3), 4/(2*1); a class absent from training gets 0
    assert w.tolist() == pytest.approx([4 / 6, 2.0, 0.0])
    assert class_weights(np.array([0, 1]), 2, "none").tolist() == [1.0, 1.0]
    with pytest.raises(MicronbertError):
        FinetuneConfig(class_weights="sqrt")


def test_max_steps_caps_a_large_training_set_in_whole_epochs_and_ends_the_schedule():
    model = torch.nn.Linear(2, 3)
    x, labels = torch.randn(100, 2), np.arange(100) % 3
    calls, lrs = [], []
    opt_groups = [{"params": list(model.parameters()), "weight_decay": 0.0, "lr_scale": 1.0}]

    def logits(idx, train, gen):
        calls.append(len(idx))
        lrs.append(opt_groups[0]["lr"] if "lr" in opt_groups[0] else None)
        return model(x[idx])

    cfg = FinetuneConfig(epochs=30, max_steps=20, batch_size=16, lr=1e-2, min_lr=0.0, warmup_epochs=0)
    info = train_loop(model, logits, np.arange(100), labels, 3, cfg, opt_groups, torch.Generator().manual_seed(0), "cpu")
    # 7 steps per epoch: 20 steps hold two whole epochs, so every sample is seen equally often
    assert len(info["history"]) == 2 and info["best_epoch"] == 2 and sum(calls) == 200 and len(calls) == 14
    assert lrs[-1] < 0.05 * cfg.lr      # the cosine schedule spans the epochs that run, not the 30 asked for
    assert epochs_for(dataclasses.replace(cfg, max_steps=0), 100) == 30
    assert epochs_for(dataclasses.replace(cfg, max_steps=3), 100) == 1    # at least one epoch
    # the CPU recipe: a demo-sized fold (42 training pairs) keeps its 30 epochs, a MEGC2019-sized one (~330) gets fewer
    frozen = family_recipe("frozen")
    assert epochs_for(frozen, 42) == frozen.epochs == 30 and epochs_for(frozen, 330) < 30
    with pytest.raises(MicronbertError):
        FinetuneConfig(max_steps=-1)


def test_layer_wise_lr_decay_scales_deeper_layers_more_lightly():
    cfg = preset("test", depth=2)
    model = MicronBertClassifier(cfg, 3)
    groups = classifier_param_groups(model, 0.05, layer_decay=0.5, depth=2)
    scale_of = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert scale_of[id(named["head.fc.weight"])] == 1.0
    assert scale_of[id(named["backbone.dma.to_q.weight"])] == 1.0
    assert scale_of[id(named["backbone.encoder.blocks.1.attn.qkv.weight"])] == 0.5
    assert scale_of[id(named["backbone.encoder.blocks.0.attn.qkv.weight"])] == 0.25
    assert scale_of[id(named["backbone.encoder.patch_embed.proj.weight"])] == 0.125
    nodecay = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    assert id(named["head.fc.bias"]) in nodecay and id(named["head.fc.weight"]) not in nodecay
    assert len({id(p) for g in groups for p in g["params"]}) == sum(1 for p in model.parameters())


def test_micronbert_learns_its_training_set_and_is_deterministic(synthetic, classes3):
    table, pairs, _ = synthetic(size=32, n_subjects=3, per_class=4)
    data, labels = pair_data(table, pairs), table["label"].to_numpy()
    recipe = FinetuneConfig(epochs=25, batch_size=8, lr=1e-3, augment=False, dropout=0.0)
    runs = []
    for _ in range(2):
        m = MicronBertMethod(preset("test"), classes3, recipe)
        m.prepare(data)
        model, info = m.fit(np.arange(len(table)), labels, seed=7)
        runs.append((m.predict(model, np.arange(len(table))), info))
    probs, info = runs[0]
    assert info["history"][-1]["loss"] < 0.5 * info["history"][0]["loss"]
    assert (probs.argmax(1) == labels).mean() > 0.9   # it can fit the motion (generalising needs pretraining)
    np.testing.assert_array_equal(runs[0][0], runs[1][0])


def pair_and_mirror(model, data, neighbours=True):
    """What a recipe with test_flip and test_neighbours predicts, computed view by view through the plain
    inference path (registration, for μ-BERT, included): per sample, the mean over the pair, (onset,
    apex ± 1) where the clip has those frames, and the mirror image of each (the face masks with it)."""
    mirror = lambda x: None if x is None else np.ascontiguousarray(x[:, :, ::-1])  # noqa: E731
    pairs = [(data.apex, np.ones(len(data), bool))]
    if neighbours and data.neighbours is not None:
        pairs += [(data.neighbours[:, k], data.has_neighbour[:, k]) for k in range(data.neighbours.shape[1])]
    total, count = 0, 0
    for apex, has in pairs:
        p = (predict_pairs(model, data.onset, apex, face=data.face)
             + predict_pairs(model, mirror(data.onset), mirror(apex), face=mirror(data.face)))
        total, count = total + p * has[:, None], count + 2 * has
    return total / count[:, None]


def with_neighbours(data):
    """The pairs with two neighbouring frames per apex (fake ones: the apex shifted by a pixel, or by two)
    and the last sample lacking the frame after its apex."""
    near = np.stack([np.roll(data.apex, 1, axis=2), np.roll(data.apex, 2, axis=1)], 1)
    has = np.ones((len(data), 2), bool)
    has[-1, 1] = False
    return PairData(data.onset, data.apex, near, has)


@pytest.mark.parametrize("model_name,frozen", [("micronbert", True), ("micronbert", False), ("flow-cnn", False)])
def test_prediction_averages_the_pair_its_neighbours_and_their_mirror_images(synthetic, classes3, model_name,
                                                                            frozen):
    """The recipe's prediction views: the frozen cache, the frames (full recipe) and the flow CNN each predict
    the per-sample mean over exactly the views a sample has; switching both off predicts from the pair."""
    table, pairs, _ = synthetic(size=32, n_subjects=2, per_class=1)
    data, labels = with_neighbours(pair_data(table, pairs)), table["label"].to_numpy()
    idx = np.arange(len(table))
    for views in (True, False):
        switch = None if views else False
        recipe = default_recipe(model_name, frozen, epochs=1, test_flip=switch, test_neighbours=switch)
        assert recipe.test_flip is views and recipe.test_neighbours is views
        m = build_method(model_name, classes3, recipe, preset_name="test", size=32)
        m.prepare(data)
        assert len(m.view_weights) == (5 if views else 0)
        model, _ = m.fit(idx, labels, seed=0)
        want = pair_and_mirror(model, data) if views else predict_pairs(model, data.onset, data.apex)
        np.testing.assert_allclose(m.predict(model, idx), want, atol=1e-5)
        np.testing.assert_allclose(m.predict(model, idx[-2:]), want[-2:], atol=1e-5)  # any subset of samples


@pytest.mark.parametrize("compare", ["tokens", "residual"])
def test_frozen_encoder_caches_views_and_trains_only_its_last_block_and_the_rest(synthetic, classes3, compare):
    table, pairs, _ = synthetic(size=32, n_subjects=2, per_class=2)
    data, labels = pair_data(table, pairs), table["label"].to_numpy()
    cfg = preset("test", dma_compare=compare)
    init = MicronBertClassifier(cfg, 3).backbone.state_dict()
    m = MicronBertMethod(cfg, classes3, default_recipe("micronbert", True, epochs=2), init_state=init)
    m.prepare(data)
    # the CPU recipe: clean + 4 augmented views of the frozen part's output (all blocks but the last),
    # for the onset, the apex and (directional DMA) its four shifted copies
    assert len(m.tokens) == 6 and all(t.shape == (5, len(table), 1 + 16, 32) for t in m.tokens)
    model, _ = m.fit(np.arange(len(table)), labels, seed=0)
    enc = model.backbone.encoder
    last = f"blocks.{len(enc.blocks) - 1}."
    trains = {k for k, p in enc.named_parameters() if p.requires_grad}
    assert trains and all(k.startswith((last, "norm.")) for k in trains)
    assert all(torch.equal(v, init[f"encoder.{k}"]) for k, v in enc.state_dict().items()
               if f"encoder.{k}" in init and not k.startswith((last, "norm.")))
    assert not torch.equal(enc.state_dict()[last + "mlp.fc1.weight"], init[f"encoder.{last}mlp.fc1.weight"])
    # predictions from the cache equal full forward passes through the frozen encoder: the recipe's
    # test_flip averages the pair's and its mirror image's (cached apart, never trained on)
    assert m.recipe.test_flip and len(m.view_data) == 1  # the pairs have no neighbouring frames here
    cached = m.predict(model, np.arange(len(table)))
    np.testing.assert_allclose(cached, pair_and_mirror(model, data), atol=1e-5)
    assert not np.allclose(cached, predict_pairs(model, data.onset, data.apex), atol=1e-4)


def test_frozen_encoder_caches_the_frames_read_for_direction_at_their_own_depth(synthetic, classes3):
    """Direction read after one of three blocks: the shifted apexes and the onset they are matched with
    are cached after that block and never go through the trained last block; predictions from the cache
    still equal a full forward pass."""
    table, pairs, _ = synthetic(size=32, n_subjects=2, per_class=2)
    data, labels = pair_data(table, pairs), table["label"].to_numpy()
    cfg = preset("test", depth=3, dma_direction_blocks=1)
    init = MicronBertClassifier(cfg, 3).backbone.state_dict()
    m = MicronBertMethod(cfg, classes3, default_recipe("micronbert", True, epochs=2), init_state=init)
    m.prepare(data)
    assert m.cached_depths == [2, 2, 1, 1, 1, 1, 1] and len(m.tokens) == 7
    model, _ = m.fit(np.arange(len(table)), labels, seed=0)
    np.testing.assert_allclose(m.predict(model, np.arange(len(table))), pair_and_mirror(model, data), atol=1e-5)


def test_a_random_frozen_encoder_is_the_same_in_the_cache_and_every_folds_model(synthetic, classes3):
    """no-pretrain with the frozen recipe: the evaluation's seed draws one random encoder; a fold that trains
    under its own seed must still hold that encoder, or its prediction views and its saved classifier would
    run through another one than the cached tokens it was trained on."""
    table, pairs, _ = synthetic(size=32, n_subjects=2, per_class=2)
    data, labels = pair_data(table, pairs), table["label"].to_numpy()
    idx = np.arange(len(table))
    m = build_method("no-pretrain", classes3, default_recipe("no-pretrain", True, epochs=1), preset_name="test",
                     size=32)
    m.prepare(data, seed=0)
    fold_a, _ = m.fit(idx, labels, seed=3)   # LOSO folds train under seed + fold index
    fold_b, _ = m.fit(idx, labels, seed=4)
    frozen = [k for k, p in fold_a.backbone.encoder.named_parameters() if not p.requires_grad]
    enc_a, enc_b = fold_a.backbone.encoder.state_dict(), fold_b.backbone.encoder.state_dict()
    assert frozen and all(torch.equal(enc_a[k], enc_b[k]) for k in frozen)
    # the cached path (pair) and the full forward passes (its mirror image, a saved model) agree
    np.testing.assert_allclose(m.predict(fold_a, idx), pair_and_mirror(fold_a, data), atol=1e-5)


def test_classifier_folder_round_trip(tmp_path, synthetic, classes3):
    table, pairs, _ = synthetic(size=32, n_subjects=2, per_class=1)
    data = pair_data(table, pairs)
    for name in ("micronbert", "flow-cnn", "no-dma"):
        method = build_method(name, classes3, default_recipe(name, epochs=1), preset_name="test", size=32)
        method.prepare(data)
        model, _ = method.fit(np.arange(len(table)), table["label"].to_numpy(), seed=0)
        out = method.save(model, tmp_path / name, "synth")
        cfg = json.loads((out / "config.json").read_text())
        assert cfg["model_type"] == ("flow-cnn" if name == "flow-cnn" else "micronbert")
        assert cfg["classes"] == classes3 and cfg["protocol"] == "synth" and cfg["input"] == {"size": 32,
                                                                                             "aligned": True}
        assert "epochs" in cfg["finetune"] and (out / "model.safetensors").is_file()
        loaded, classes, _ = load_classifier(out)
        assert classes == classes3
        np.testing.assert_allclose(pair_and_mirror(loaded, data), method.predict(model, np.arange(len(table))),
                                   atol=1e-5)
    assert json.loads((tmp_path / "no-dma" / "config.json").read_text())["model"]["use_dma"] is False


def test_predict_engineers_loader_reads_our_folder(tmp_path, classes3):
    api = pytest.importorskip("micronbert.infer.api")
    model = MicronBertClassifier(preset("test"), 3)
    save_classifier(tmp_path / "m", model, classes3, "synth", FinetuneConfig())
    loaded = api.load_micronbert_classifier(tmp_path / "m")
    assert loaded[2] == classes3  # (model, ModelConfig, classes, config)


def test_no_pretrain_ignores_init_weights_but_keeps_its_architecture(tmp_path, classes3):
    from micronbert.model.checkpoint import save_model
    from micronbert.model.mubert import MicronBertModel

    cfg = preset("test", depth=2)
    pre = MicronBertModel(cfg, with_decoder=True, with_agreement=True)
    save_model(tmp_path / "pre", pre.state_dict(), cfg)
    rec = default_recipe("micronbert", epochs=1)
    with_init = build_method("micronbert", classes3, rec, init=str(tmp_path / "pre"))
    scratch = build_method("no-pretrain", classes3, rec, init=str(tmp_path / "pre"))
    assert with_init.init_state is not None and scratch.init_state is None
    assert scratch.cfg.depth == 2
    torch.manual_seed(0)
    built = with_init.build()
    assert torch.equal(built.backbone.encoder.blocks[1].mlp.fc1.weight, pre.encoder.blocks[1].mlp.fc1.weight)
    assert build_method("no-poi", classes3, rec, init=str(tmp_path / "pre")).cfg.use_poi is False
    with pytest.raises(MicronbertError):
        build_method("resnet", classes3, rec)


def test_augmentation_moves_the_face_mask_exactly_as_the_frames():
    cfg = FinetuneConfig(jitter=0.0)
    face = torch.zeros(4, 32, 32)
    face[:, 6:20, 4:14] = 1.0  # a face left of centre
    x = face[:, None].repeat(1, 3, 1, 1)  # frames that show the mask itself
    o, a, f = paired_augment(x, x.clone(), cfg, torch.Generator().manual_seed(3), face)
    assert torch.allclose(o[:, 0], f, atol=1e-5)  # (the mask is 0 at the crop's edge, so the paddings agree)
    assert not torch.allclose(f, face)
    # the face is the only new input: every other draw is the one made without it
    o2, a2, none = paired_augment(x, x.clone(), cfg, torch.Generator().manual_seed(3))
    assert none is None and torch.equal(o, o2) and torch.equal(a, a2)


def test_own_face_prior_reads_each_clips_mask_in_the_cache_and_in_full_passes(synthetic, classes3):
    """own-poi: the frozen cache keeps each view's face share (the mask moved as the view moved the frames),
    training and prediction read it, predictions from the cache equal full passes given the masks, and the
    mask changes what own-poi predicts but not what the template-prior μ-BERT predicts."""
    from micronbert.model.poi import mask_patch_share

    table, pairs, _ = synthetic(size=32, n_subjects=2, per_class=2)
    data, labels = pair_data(table, pairs), table["label"].to_numpy()
    idx = np.arange(len(table))
    rng = np.random.default_rng(0)
    data.face = np.zeros((len(table), 32, 32), np.uint8)
    for i in idx:  # a box of its own per clip
        top, left = rng.integers(0, 12, 2)
        data.face[i, top:top + 18, left:left + 18] = 1
    other = PairData(data.onset, data.apex, face=np.ascontiguousarray(data.face[::-1]))
    probs = {}
    for name in ("own-poi", "micronbert"):
        for which, d in (("masks", data), ("other masks", other)):
            m = build_method(name, classes3, default_recipe(name, True, epochs=1), preset_name="test", size=32)
            m.prepare(d, seed=0)
            if name == "own-poi":
                assert m.shares.shape == (m.tokens[0].shape[0], len(table), m.cfg.num_patches)
                torch.testing.assert_close(m.shares[0], mask_patch_share(torch.from_numpy(d.face), m.cfg.patch_size))
                assert not torch.allclose(m.shares[1], m.shares[0])  # an augmented view moved the face
            else:
                assert m.shares is None
            model, _ = m.fit(idx, labels, seed=0)
            probs[name, which] = m.predict(model, idx)
            np.testing.assert_allclose(probs[name, which], pair_and_mirror(model, d), atol=1e-5)
    assert np.abs(probs["own-poi", "masks"] - probs["own-poi", "other masks"]).max() > 1e-4
    np.testing.assert_allclose(probs["micronbert", "masks"], probs["micronbert", "other masks"], atol=1e-6)
