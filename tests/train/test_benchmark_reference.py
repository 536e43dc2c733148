"""benchmarks/reference_mubert.py: its normalisation follows the frames' device and dtype (`--device cuda`
used to fail with the statistics left on the CPU)."""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import reference_mubert as R  # noqa: E402


def test_normalise_stays_on_the_frames_device_in_float32():
    frames = torch.full((2, 8, 8, 3), 255, dtype=torch.uint8)
    x = R.normalise(frames)
    assert x.shape == (2, 3, 8, 8) and x.dtype == torch.float32 and x.device == frames.device
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225]))
    meta = R.normalise(frames.to("meta"))  # no data: only where the result lives
    assert meta.device.type == "meta" and meta.dtype == torch.float32


# -- the release mode ------------------------------------------------------------------------------------
import json  # noqa: E402
import math  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import _common as C  # noqa: E402
from micronbert.model.flops import pretrain_step_flops  # noqa: E402
from micronbert.model.mubert import MicronBertModel  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _release_pair(batch=2, name="test"):
    cfg, pcfg = R.configs("release", name, batch)
    torch.manual_seed(0)
    ours = MicronBertModel(cfg)
    ref = R.ReleaseMicronBert(cfg)
    ref.load_state_dict(ours.state_dict(), strict=True)  # our dino variant's names: same weights
    return cfg, pcfg, ours, ref


def _frames(cfg, batch=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (batch, cfg.img_size, cfg.img_size, 3), dtype=torch.uint8, generator=g)
            for _ in range(2)]


def test_release_mode_sets_up_our_dino_variant_like_the_release():
    cfg, pcfg = R.configs("release", "small", 4)
    assert (cfg.poi_variant, cfg.dma_signal, cfg.dma_cosine_temperature, cfg.dma_query) == ("dino", "paper", 0.0, "first")
    assert (pcfg.local_crops, pcfg.identity_weight, pcfg.batch_size) == (8, 0.0, 4)
    same_cfg, same_pcfg = R.configs("same-objective", "small", 4)
    assert same_cfg.poi_variant == "mse" and same_pcfg.identity_weight > 0
    with pytest.raises(ValueError):
        R.configs("nonsense", "small", 4)
    with pytest.raises(ValueError):  # the release reference is the dino variant only
        R.ReleaseMicronBert(same_cfg)


def test_release_step_runs_and_trains_with_finite_losses():
    cfg, pcfg, _, ref = _release_pair()
    opt = torch.optim.AdamW(ref.parameters(), lr=pcfg.lr, betas=pcfg.betas, weight_decay=pcfg.weight_decay)
    teacher_before = [p.clone() for p in ref.agreement.teacher_encoder.parameters()]
    student_before = [p.clone() for p in ref.encoder.parameters()]
    a, b = _frames(cfg)
    losses = [R.release_step(ref, opt, a, b, pcfg, torch.Generator().manual_seed(s)) for s in range(2)]
    assert all(math.isfinite(v) and v > 0 for v in losses)
    assert any(not torch.equal(p, q) for p, q in zip(student_before, ref.encoder.parameters()))
    assert any(not torch.equal(p, q) for p, q in zip(teacher_before, ref.agreement.teacher_encoder.parameters()))
    assert ref.agreement.center.abs().sum() > 0  # the DINO centre moved
    gain = ref.agreement.student_head.last_layer.parametrizations.weight.original0
    assert not gain.requires_grad and torch.all(gain == 1)  # the release's norm_last_layer


def test_release_crops_are_two_global_and_eight_local_96_px_at_224():
    cfg, pcfg = R.configs("release", "small", 1)
    crops = R.release_crops(torch.zeros(1, 3, 224, 224), cfg, pcfg, torch.Generator().manual_seed(0))
    assert [c.shape[-1] for c in crops] == [224, 224] + [96] * 8
    assert R.local_crop_size(R.configs("release", "tiny", 1)[0]) == 48


def test_release_student_sees_every_crop_once_per_resolution_and_the_teacher_the_two_global():
    cfg, pcfg, _, ref = _release_pair()
    calls = {"student": [], "teacher": []}
    ref.encoder.register_forward_hook(lambda m, i, o: calls["student"].append(tuple(i[0].shape)))
    ref.agreement.teacher_encoder.register_forward_hook(lambda m, i, o: calls["teacher"].append(tuple(i[0].shape)))
    a, b = (R.normalise(f) for f in _frames(cfg))
    R.release_losses(ref, a, b, pcfg)
    small = R.local_crop_size(cfg)
    # Ĩ_t, I_{t+δ}, then the 2 global crops in one call and the 8 local ones in another
    assert calls["student"] == [(2, 3, 32, 32), (2, 3, 32, 32), (4, 3, 32, 32), (16, 3, small, small)]
    assert calls["teacher"] == [(4, 3, 32, 32)]


def test_release_decoder_is_fed_by_the_dma_output_alone():
    cfg, pcfg, _, ref = _release_pair()
    seen = {}

    def keep(key, tensor):  # a forward hook that returns something replaces the output: return None
        seen.setdefault(key, tensor)

    ref.dma.register_forward_hook(lambda m, i, o: keep("dma", o[0]))
    ref.decoder.register_forward_hook(lambda m, i, o: keep("decoder", i[0]))
    a, b = (R.normalise(f) for f in _frames(cfg))
    base = R.release_losses(ref, a, b, pcfg, torch.Generator().manual_seed(3))["loss_rec"]
    assert seen["decoder"] is seen["dma"] and seen["decoder"].shape[1] == cfg.num_patches  # no contextual token
    with torch.no_grad():
        ref.dma.proj.weight.mul_(3.0)
    changed = R.release_losses(ref, a, b, pcfg, torch.Generator().manual_seed(3))["loss_rec"]
    assert not torch.isclose(base, changed)


def test_release_dma_is_the_raw_softmax_diagonal():
    cfg, _, _, ref = _release_pair()
    x, y = torch.randn(2, cfg.num_patches, cfg.embed_dim), torch.randn(2, cfg.num_patches, cfg.embed_dim)
    _, diag = ref.dma(x, y, x)
    q, k = ref.dma.to_q(x), ref.dma.to_k(y)
    expected = torch.softmax(q @ k.transpose(1, 2) / cfg.embed_dim ** 0.5, -1).diagonal(dim1=1, dim2=2)
    assert torch.allclose(diag, expected, atol=1e-6)


def test_release_and_our_dino_losses_are_of_the_same_magnitude():
    # the objectives differ (crops, teacher views, decoder input): no equality, same magnitude
    cfg, pcfg, ours, ref = _release_pair()
    a, b = (R.normalise(f) for f in _frames(cfg))
    with torch.no_grad():
        lo = ours.pretrain_losses(a, b, pcfg, torch.Generator().manual_seed(5))
        lr_ = R.release_losses(ref, a, b, pcfg, torch.Generator().manual_seed(5))
    for k in ("loss_rec", "loss_agg", "loss"):
        assert 0.5 <= float(lo[k]) / float(lr_[k]) <= 2.0, k


def test_release_flops_match_a_counted_step_and_the_issue_figures():
    from torch.utils.flop_counter import FlopCounterMode

    cfg, pcfg, _, ref = _release_pair()
    x = torch.randn(2, 3, cfg.img_size, cfg.img_size)
    with FlopCounterMode(display=False) as counter:
        R.release_losses(ref, x, x.flip(-1), pcfg)["loss"].backward()
    assert counter.get_total_flops() == R.release_step_flops(cfg, pcfg, 2)
    small, small_pcfg = R.configs("release", "small", 1)
    assert round(R.release_step_flops(small, small_pcfg, 1) / 1e9) == 524
    assert round(pretrain_step_flops(*R.configs("same-objective", "small", 1), 1) / 1e9) == 332


def test_release_losses_create_no_tensor_off_the_frames_device():
    # meta tensors carry no data: a tensor made on the CPU inside the step would make this raise,
    # as it would on CUDA
    cfg, pcfg = R.configs("release", "test", 2)
    ref = R.ReleaseMicronBert(cfg).to("meta")
    assert C.misplaced_tensors(ref, "meta") == []
    frames = torch.zeros(2, 32, 32, 3, dtype=torch.uint8, device="meta")
    out = R.release_losses(ref, R.normalise(frames), R.normalise(frames), pcfg)
    assert all(v.device.type == "meta" and v.dtype == torch.float32 for v in out.values())
    ref.agreement.register_buffer("center", torch.zeros(1, cfg.dino_out_dim))  # a CPU leftover
    assert C.misplaced_tensors(ref, "meta") == ["agreement.center"]
    with pytest.raises(RuntimeError):
        R.release_losses(ref, R.normalise(frames), R.normalise(frames), pcfg)


def test_misplaced_tensors_names_parameters_and_buffers_off_the_device():
    m = torch.nn.BatchNorm1d(2)
    assert C.misplaced_tensors(m, "cpu") == []
    assert sorted(C.misplaced_tensors(m, "cuda")) == sorted(n for n, _ in list(m.named_parameters()) + list(m.named_buffers()))
    assert C.misplaced_tensors(m.to("meta"), "meta") == []


@pytest.fixture
def step_benchmark(monkeypatch):
    import pretrain_step

    for k, v in C._MALLOC_ENV.items():  # as if already re-executed: run in this process
        monkeypatch.setenv(k, v)
    return pretrain_step


@pytest.mark.parametrize("mode", ["release", "same-objective"])
def test_pretrain_step_benchmark_runs_both_reference_modes(mode, step_benchmark, capsys):
    assert step_benchmark.main(["--quick", "--no-bf16", "--repeats", "1", "--reference", mode]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["reference_mode"] == mode and res["reference_is"] == R.MODES[mode]
    assert set(res["results"]) == {"reference", "ours"}
    if mode == "release":
        assert res["check"]["same_magnitude"] and res["check"]["equality_check"].startswith("does not apply")
        assert res["flops_per_step_reference"] > res["flops_per_step"]
    else:
        assert res["check"]["same"] and res["flops_per_step_reference"] == res["flops_per_step"]


# -- benchmarks/inference.py --device ---------------------------------------------------------------------
import inference as I  # noqa: E402


def test_inference_loads_the_model_on_the_device_and_times_a_pair(tmp_path):
    mb = I.load_on(I.make_model(tmp_path / "m", "test"), "cpu")
    assert mb.device == torch.device("cpu") and C.misplaced_tensors(mb.model, "cpu") == []
    frame = np.random.default_rng(0).integers(0, 256, (mb.size, mb.size, 3), dtype=np.uint8)
    assert I.model_per_pair_ms(mb, frame, frame, 2) > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given without CUDA")
def test_inference_and_step_benchmarks_refuse_cuda_without_a_device(step_benchmark, capsys):
    for main in (I.main, step_benchmark.main):
        with pytest.raises(SystemExit):
            main(["--device", "cuda"])
        assert "no CUDA device" in capsys.readouterr().err
