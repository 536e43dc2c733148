"""The pretraining flag group is shared by `pretrain` and `scaling`: the same flags build the same configs,
and scaling's precedence holds (its flags, then --model's switches, then --pretrain-args)."""
from __future__ import annotations

import pytest

from micronbert.cli import build_parser
from micronbert.commands._flags import pretrain_configs
from micronbert.commands.scaling import pretrain_setup


def _pretrain(*flags):
    return pretrain_configs(build_parser().parse_args(["pretrain", "--out", "x", *flags]))


def _scaling(*flags):
    args = build_parser().parse_args(["scaling", "--frames", "f", "--out", "x", "--samples", "s.csv", *flags])
    return pretrain_setup(args)


def test_scaling_builds_the_configs_pretrain_builds_from_the_same_flags():
    assert _scaling() == _pretrain()
    flags = ("--preset", "test", "--batch-size", "8", "--lr", "0.001", "--warmup-steps", "3", "--fps", "25",
             "--swap-ratio", "0.3", "--poi", "dino", "--no-swap")
    assert _scaling(*flags, "--steps", "7", "--seed", "4") == _pretrain(*flags, "--steps", "7", "--seed", "4")


def test_pretrain_args_win_and_model_switches_apply():
    model_cfg, pcfg = _scaling("--lr", "0.002", "--steps", "9", "--pretrain-args", "--lr 0.005 --swap-ratio 0.2")
    assert (pcfg.lr, pcfg.swap_ratio, pcfg.steps) == (0.005, 0.2, 9)
    model_cfg, _ = _scaling("--model", "no-dma")
    assert model_cfg.use_dma is False and model_cfg.use_poi is True
    with pytest.raises(SystemExit):
        _scaling("--pretrain-args", "--no-such-flag")


def test_frozen_recipe_flags_reach_the_recipe():
    from micronbert.commands._flags import recipe_from_args

    base = ["evaluate", "--samples", "s.csv", "--protocol", "megc2019", "--cache", "c", "--out", "x", "--freeze-encoder"]
    default = recipe_from_args(build_parser().parse_args(base))
    assert (default.cached_views, default.train_blocks, default.max_steps) == (4, 1, 160)  # the CPU recipe's own
    plain = recipe_from_args(build_parser().parse_args(base + ["--cached-views", "0", "--train-blocks", "0",
                                                               "--max-steps", "0"]))
    assert (plain.cached_views, plain.train_blocks, plain.max_steps) == (0, 0, 0)


def test_dma_compare_flag_reaches_the_model_config():
    assert _pretrain()[0].dma_compare == "tokens"
    assert _pretrain("--dma-compare", "residual")[0].dma_compare == "residual"
    assert _scaling("--dma-compare", "residual")[0].dma_compare == "residual"
    assert _pretrain()[0].dma_project_qk and not _pretrain("--dma-no-projection")[0].dma_project_qk


def test_poi_prior_flag_and_a_rows_own_prior_reach_the_pretraining_config():
    assert _pretrain()[0].poi_prior == "none"
    assert _pretrain("--poi-prior", "face")[0].poi_prior == "face"
    # micronbert's face prior is a recognition default (methods.RECOGNITION_DEFAULTS): pretraining keeps the map
    assert _scaling("--model", "micronbert")[0].poi_prior == "none"
    assert _scaling("--model", "hull-poi")[0].poi_prior == "hull"
    # each clip's own hull needs its landmarks, which pretraining's frame pairs do not carry
    assert _scaling("--model", "own-poi")[0].poi_prior == "none"
    for bad in ("eyes", "own"):
        with pytest.raises(SystemExit):
            _pretrain("--poi-prior", bad)
