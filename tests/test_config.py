"""tfxr.config: precedence defaults < YAML < flags < --set, unknown keys and values, types,
nested sections with flag aliases, validation of configs built in Python."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import pytest

from tfxr.config import ConfigError, option, parse_config, validate


@dataclass
class Inner:
    size: int = option(4, minimum=1)
    mode: str = option("a", choices=("a", "b"))
    flag: bool = False


@dataclass
class Outer:
    name: str = "x"
    rate: float = option(0.5, minimum=0.0, maximum=1.0)
    count: int = 3
    maybe: float | None = option(None, minimum=0.0)
    tags: list[str] = field(default_factory=list)
    inner: Inner = field(default_factory=Inner)
    FLAG_ALIASES: ClassVar[dict] = {"size": "inner.size", "flag": "inner.flag"}


def parse(argv):
    return parse_config(Outer, argv, "t")[0]


def test_precedence_defaults_yaml_flags_set(tmp_path):
    assert parse([]) == Outer()
    y = tmp_path / "c.yaml"
    y.write_text("name: from_yaml\ncount: 7\nrate: 0.1\ninner:\n  size: 9\n  mode: b\n")
    cfg = parse(["--config", str(y)])
    assert (cfg.name, cfg.count, cfg.rate, cfg.inner.size, cfg.inner.mode) == ("from_yaml", 7, 0.1, 9, "b")
    cfg = parse(["--config", str(y), "--count", "8", "--size", "10"])         # flags beat YAML
    assert (cfg.name, cfg.count, cfg.inner.size, cfg.inner.mode) == ("from_yaml", 8, 10, "b")
    cfg = parse(["--config", str(y), "--count", "8", "--set", "count=11", "--set", "inner.size=12",
                 "--size", "10"])                                            # --set beats flags
    assert (cfg.count, cfg.inner.size) == (11, 12)
    cfg = parse(["--set", "size=5", "--flag"])                               # aliases in --set too
    assert (cfg.inner.size, cfg.inner.flag) == (5, True)


def test_types_are_coerced_or_rejected(tmp_path):
    cfg = parse(["--count", "4", "--rate", "1", "--set", "tags=a,b", "--set", "maybe=0.25"])
    assert (cfg.count, cfg.rate, cfg.tags, cfg.maybe) == (4, 1.0, ["a", "b"], 0.25)
    assert isinstance(cfg.rate, float) and isinstance(cfg.count, int)
    assert parse(["--set", "maybe=none"]).maybe is None
    with pytest.raises(ConfigError, match="count: cannot use 'many' as int"):
        parse(["--count", "many"])
    with pytest.raises(ConfigError, match="count: cannot use 2.5 as int"):
        parse(["--set", "count=2.5"])
    with pytest.raises(ConfigError, match="inner.flag: cannot use 'perhaps' as bool"):
        parse(["--set", "inner.flag=perhaps"])
    y = tmp_path / "c.yaml"
    y.write_text("inner: 3\n")
    with pytest.raises(ConfigError, match="inner: expected a mapping"):
        parse(["--config", str(y)])


def test_unknown_keys_and_values_name_what_is_allowed(tmp_path):
    with pytest.raises(ConfigError, match=r"inner.mode: unknown value 'c' \(allowed: a, b\)"):
        parse(["--set", "inner.mode=c"])
    with pytest.raises(ConfigError, match="rate: 1.5 is above the maximum 1.0"):
        parse(["--rate", "1.5"])
    with pytest.raises(ConfigError, match="inner.size: 0 is below the minimum 1"):
        parse(["--size", "0"])
    with pytest.raises(ConfigError, match="unknown key 'inner.sise'"):
        parse(["--set", "inner.sise=3"])
    with pytest.raises(ConfigError, match="'count' has no sub-keys"):
        parse(["--set", "count.x=3"])
    y = tmp_path / "c.yaml"
    y.write_text("nmae: typo\n")
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['nmae'\]"):
        parse(["--config", str(y)])
    y.write_text("size: 3\n")                                 # a flag alias is not a YAML key
    with pytest.raises(ConfigError, match="size is now inner.size"):
        parse(["--config", str(y)])
    y.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        parse(["--config", str(y)])
    with pytest.raises(ConfigError, match="no-such.yaml"):
        parse(["--config", str(tmp_path / "no-such.yaml")])


def test_validate_checks_configs_built_in_python():
    validate(Outer())
    with pytest.raises(ConfigError, match="inner.mode: unknown value 'z'"):
        validate(Outer(inner=Inner(mode="z")))
    with pytest.raises(ConfigError, match="maybe: -1 is below the minimum 0.0"):
        validate(Outer(maybe=-1))


def test_train_config_nests_the_pipeline_and_keeps_its_flags(tmp_path):
    from tfxr.train import TrainConfig

    cfg, _ = parse_config(TrainConfig, ["--batch-size", "8", "--image-size", "32", "--channels", "3", "--cache",
                                        "--deterministic", "--set", "pipeline.shuffle_buffer=512",
                                        "--set", "pipeline.augment.noise_std=0", "--epochs", "3"], "t")
    p = cfg.pipeline
    assert (p.batch_size, p.image_size, p.channels, p.cache, p.deterministic, p.shuffle_buffer) == \
        (8, 32, 3, True, True, 512)
    assert p.augment.noise_std == 0 and p.augment.flip and cfg.epochs == 3
    y = tmp_path / "old.yaml"
    y.write_text("batch_size: 16\n")
    with pytest.raises(ConfigError, match="batch_size is now pipeline.batch_size"):
        parse_config(TrainConfig, ["--config", str(y)], "t")


def test_a_renamed_key_is_still_read_under_its_former_name(tmp_path):
    """pipeline.synthetic_fraction is now pipeline.generated_fraction (GAN-generated records):
    YAML and --set still take the former name; giving both is one clear error."""
    from tfxr.config import renamed_paths
    from tfxr.train import TrainConfig

    y = tmp_path / "old.yaml"
    y.write_text("pipeline:\n  synthetic_fraction: 0.25\n")
    assert parse_config(TrainConfig, ["--config", str(y)], "t")[0].pipeline.generated_fraction == 0.25
    cfg, _ = parse_config(TrainConfig, ["--set", "pipeline.synthetic_fraction=0"], "t")
    assert cfg.pipeline.generated_fraction == 0.0
    y.write_text("pipeline:\n  synthetic_fraction: 0.25\n  generated_fraction: 0.5\n")
    with pytest.raises(ConfigError, match="the same setting given twice"):
        parse_config(TrainConfig, ["--config", str(y)], "t")
    assert renamed_paths(TrainConfig)["pipeline.synthetic_fraction"] == "pipeline.generated_fraction"
