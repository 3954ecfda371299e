"""tfxr.config: precedence defaults < YAML < flags < --set, unknown keys and values, types,
nested sections with flag aliases, validation of configs built in Python."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import ClassVar

import pytest

from tests.conftest import run
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
    with pytest.raises(ConfigError, match="--size: 0 is below the minimum 1"):
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
        (8, 32, 3, "true", True, 512)
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


def test_a_bad_value_is_named_as_the_user_typed_it(tmp_path, monkeypatch):
    """The flag (an alias of a nested field too), the --set key, or the config file and its
    key: never only the field's internal dotted name."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.yaml").write_text("rate: 0.25\ninner:\n  size: 0\n")
    cases = ((["--size", "-2"], "--size: -2 is below the minimum 1"),
             (["--rate", "2"], "--rate: 2.0 is above the maximum 1.0"),
             (["--count", "many"], "--count: cannot use 'many' as int"),
             (["--set", "size=0"], "--set size: 0 is below the minimum 1"),
             (["--set", "inner.mode=c"], "--set inner.mode: unknown value 'c'"),
             (["--config", "run.yaml"], "run.yaml: inner.size: 0 is below the minimum 1"))
    for argv, message in cases:
        with pytest.raises(ConfigError) as raised:
            parse(argv)
        assert str(raised.value).startswith(message), (argv, str(raised.value))
    # a flag or --set that replaces the file's bad value is what counts, as before
    assert parse(["--config", "run.yaml", "--size", "5"]).inner.size == 5
    assert parse(["--config", "run.yaml", "--set", "inner.size=6"]).inner == Inner(size=6)
    (tmp_path / "run.yaml").write_text("inner:\n  sise: 3\n")
    with pytest.raises(ConfigError, match=r"^run.yaml: unknown config key\(s\) \['inner.sise'\]"):
        parse(["--config", "run.yaml", "--size", "5"])


def test_configs_module_imports_no_tensorflow():
    """Every command's config (tfxr.configs, the evaluators' too) is read without TensorFlow or
    Keras, so that the data tools start in a second: checked in a fresh interpreter."""
    code = ("import sys, tfxr.configs as c, tfxr.config; "
            "assert c.EvalConfig and c.DetectionEvalConfig and c.LocalizeConfig and c.GanEvalConfig; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'horovod') if m in sys.modules))")
    assert run([sys.executable, "-c", code]).stdout.strip() == "[]"   # run from the repository
