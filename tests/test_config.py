"""Typed config: parsing of --set values, unknown keys, wrong types, presets, JSON round trip."""

from __future__ import annotations

import pytest

from ganforge.config import coerce, parse_value
from ganforge.errors import ConfigError
from ganforge.training.config import RunConfig, build_config, parse_sets, resolve_key


@pytest.mark.parametrize(
    "text, value",
    [
        ("3", 3),
        ("1e-4", 1e-4),
        ("true", True),
        ("False", False),
        ("none", None),
        ("abc", "abc"),
        ("0.5,0.999", [0.5, 0.999]),
        ("[64, 128]", [64, 128]),
        ("folder:/x", "folder:/x"),
    ],
)
def test_parse_value(text, value):
    assert parse_value(text) == value


def test_coerce_types():
    from typing import Literal

    assert coerce(3, float, "k") == 3.0 and isinstance(coerce(3, float, "k"), float)
    assert coerce(4.0, int, "k") == 4
    assert coerce([1, 2], tuple[int, ...], "k") == (1, 2)
    assert coerce([0.5, 0.9], tuple[float, float], "k") == (0.5, 0.9)
    assert coerce(None, int | None, "k") is None
    assert coerce([32, 48], int | tuple[int, int] | None, "k") == (32, 48)
    for bad, tp in [(True, int), ("1", int), (1.5, int), ([1], tuple[float, float]), ("x", Literal["a"])]:
        with pytest.raises(ConfigError, match="'k'"):
            coerce(bad, tp, "k")


def test_resolve_key_sections():
    assert resolve_key("dcgan", "lr_d") == ("model", "lr_d")
    assert resolve_key("dcgan", "batch_size") == ("train", "batch_size")
    assert resolve_key("dcgan", "data.resolution") == ("data", "resolution")
    with pytest.raises(ConfigError, match="unknown config section"):
        resolve_key("dcgan", "nope.x")
    with pytest.raises(ConfigError, match="did you mean train.seed"):
        resolve_key("dcgan", "train.sed")


def test_layers_preset_then_overrides():
    cfg = build_config("dcgan", "mnist5k", preset="demo", overrides=parse_sets(["ngf=16", "train.steps=10"]))
    assert cfg.model.ngf == 16 and cfg.model.ndf == 32 and cfg.train.steps == 10 and cfg.data.resolution == 32


def test_run_config_json_round_trip():
    cfg = build_config("dcgan", "mnist5k", overrides=parse_sets(["betas=0.0,0.9", "data.resolution=[32,48]"]))
    again = RunConfig.from_dict(cfg.to_dict())
    assert again.model == cfg.model and again.data == cfg.data and again.train == cfg.train
    assert again.model.betas == (0.0, 0.9) and again.data.size == (32, 48)


def test_config_json_with_unexpected_types_is_refused():
    d = build_config("gan", "gauss1d").to_dict()
    d["model"]["z_dim"] = "sixteen"
    with pytest.raises(ConfigError, match="model.z_dim"):
        RunConfig.from_dict(d)
    d = build_config("gan", "gauss1d").to_dict()
    d["train"]["surprise"] = 1
    with pytest.raises(ConfigError, match="surprise"):
        RunConfig.from_dict(d)


def test_set_values_are_read_for_their_key_type():
    # String keys keep commas and the word none (docs/techniques.md, docs/evaluation.md, usage.md).
    cfg = build_config(
        "dcgan",
        "mnist5k",
        overrides=parse_sets(
            [
                "tech.diffaugment=color,translation,cutout",
                "eval_metrics=fid,kid",
                "lr_decay=none",
                "data.root=none",
            ]
        ),
    )
    assert cfg.tech.diffaugment == "color,translation,cutout" and cfg.train.eval_metrics == "fid,kid"
    assert cfg.train.lr_decay == "none" and cfg.data.root is None  # a nullable key still takes none as null
    assert build_config("wgan-gp", "ring8", overrides=parse_sets(["d_norm=none"])).model.d_norm == "none"
    # Other keys still read JSON and a,b lists; wrong values still fail naming the key.
    cfg = build_config("dcgan", "mnist5k", overrides=parse_sets(["betas=0.5,0.9", "ngf=16", "ema=false"]))
    assert cfg.model.betas == (0.5, 0.9) and cfg.model.ngf == 16
    with pytest.raises(ConfigError, match="model.ngf.*expected an integer"):
        build_config("dcgan", "mnist5k", overrides=parse_sets(["ngf=abc"]))
    with pytest.raises(ConfigError, match="model.d_norm"):
        build_config("wgan-gp", "ring8", overrides=parse_sets(["d_norm=batch,none"]))


def test_best_metric_is_checked_before_training():
    with pytest.raises(
        ConfigError,
        match=r"'train.best_metric' = 'foo' is not a result of eval_metrics='fid'; choose one of fid",
    ):
        build_config("dcgan", "mnist5k", overrides=[("best_metric", "foo")])
    cfg = build_config("dcgan", "mnist5k", overrides=[("eval_metrics", "fid,pr"), ("best_metric", "recall")])
    assert cfg.train.best_key == "recall"


def test_lowercase_nan_and_inf_reach_the_range_checks():
    for item, match in [
        ("lr_g=nan", "'model.lr_g' must be > 0 and finite, got nan"),
        ("ema_rampup=inf", "'train.ema_rampup' must be finite and > 0"),
        ("ema_kimg=-inf", "'train.ema_kimg' must be finite and > 0"),
    ]:
        with pytest.raises(ConfigError, match=match):
            build_config("dcgan", "mnist5k", overrides=parse_sets([item]))
    assert (
        build_config("dcgan", "mnist5k", overrides=parse_sets(["ema_rampup=none"])).train.ema_rampup is None
    )


def test_a_device_of_an_unknown_form_is_refused_at_dry_run():
    with pytest.raises(ConfigError, match=r"'train.device' must be auto, cpu, cuda or cuda:N, got 'tpu'"):
        build_config("dcgan", "mnist5k", overrides=parse_sets(["device=tpu"]))
    # The form is checked, not the hardware: a GPU run's config dry-runs on a laptop.
    for ok in ("auto", "cpu", "cuda", "cuda:3"):
        assert build_config("dcgan", "mnist5k", overrides=[("device", ok)]).train.device == ok


def test_data_root_and_download_are_refused_where_nothing_reads_them():
    for data in ("mnist5k", "digits", "ring8"):
        with pytest.raises(
            ConfigError, match=rf"data.root is only read by .*mnist.*{data!r} does not use it"
        ):
            build_config("dcgan", data, overrides=parse_sets(["data.root=/srv/data"]))
        with pytest.raises(ConfigError, match=r"drop --set data.download"):
            build_config("dcgan", data, overrides=parse_sets(["data.download=true"]))
    with pytest.raises(ConfigError, match=r"--data folder:PATH"):
        build_config("dcgan", "folder:/tmp", overrides=parse_sets(["data.root=/srv/data"]))
    assert build_config("dcgan", "mnist", overrides=parse_sets(["data.root=/srv"])).data.root == "/srv"
