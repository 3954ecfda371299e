"""``python -m tfxr.benchmark``: options, the runner's commands, a tiny smoke run of each subcommand."""
from __future__ import annotations

import json
import sys

import pytest

from tests.benchmark.helpers import check_result
from tests.conftest import tfxr
from tfxr.benchmark import __main__ as cli
from tfxr.benchmark.analysis import Variant
from tfxr.benchmark.options import TimelineOptions, rank_env
from tfxr.benchmark.runner import RESULT_MARK, Timing, parse_worker_output, variant_command
from tfxr.config import parse_config
from tfxr.errors import ConfigError


def test_worker_result_line_survives_launcher_prefixes():
    line = RESULT_MARK + json.dumps({"rates": [1.0, 2.0, 3.0]})
    assert parse_worker_output(f"noise\n[0]<stdout>:{line}\n")["rates"] == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError):
        parse_worker_output("no result here")


def test_each_layout_is_launched_by_tfxr_launch_lines():
    t = Timing(steps=2, repeats=3, warmup=1)
    single = variant_command(Variant(), t, "")
    assert single[:3] == [sys.executable, "-m", "tfxr.benchmark"] and "--pin-core" not in single
    assert variant_command(Variant(layout="one-core"), t, "")[-2:] == ["--pin-core", "0"]
    mpi = variant_command(Variant(layout="ranks", workers=2), t, "")
    assert mpi[0] == "mpirun" and "slot:PE=1" in mpi and mpi[mpi.index("-np") + 1] == "2"
    gloo = variant_command(Variant(layout="ranks", workers=2, launcher="gloo"), t, "")
    assert "--gloo" in gloo and gloo[-1] == "--pin-local-rank"
    assert "--data" not in single and variant_command(Variant(input="pipeline"), t, "d")[-2:] == ["--data", "d"]


def test_rank_env_takes_only_horovod_settings_checked():
    assert rank_env("HOROVOD_FUSION_THRESHOLD=8388608") == (("HOROVOD_FUSION_THRESHOLD", "8388608"),)
    assert rank_env("HOROVOD_HIERARCHICAL_ALLREDUCE=true") == (("HOROVOD_HIERARCHICAL_ALLREDUCE", "1"),)
    for bad, why in (("LD_PRELOAD=/tmp/x.so", "unknown key"), ("HOROVOD_FUSION_THRESHOLD=-1", "below the minimum"),
                     ("HOROVOD_FUSION_THRESHOLD", "key=value")):
        with pytest.raises(ConfigError, match=why):
            rank_env(bad)


def test_one_dispatcher_keeps_out_before_the_subcommand(monkeypatch, capsys):
    """``--out DIR`` before the subcommand (as `make benchmark` and the result files write it),
    ``suite`` by default, the converter's arguments after ``--``; the command line recorded
    in the results is the one typed."""
    seen, measure = [], cli.measure
    monkeypatch.setattr(cli, "measure", lambda command, argv, typed: seen.append((command, argv, typed)))
    for argv in (["--out", "r", "train", "--np", "1"], [], ["--out=r"], ["convert", "--", "--source", "x"],
                 ["--out", "r", "timeline", "tl.json"]):
        assert cli.main(argv) == 0
    prog = "python -m tfxr.benchmark"
    assert seen == [("train", ["--out", "r", "--np", "1"], f"{prog} --out r train --np 1"),
                    ("suite", [], f"{prog} suite"), ("suite", ["--out=r"], f"{prog} --out=r"),
                    ("convert", ["--", "--source", "x"], f"{prog} convert -- --source x"),
                    ("timeline", ["--out", "r", "tl.json"], f"{prog} --out r timeline tl.json")]
    cfg, _ = parse_config(TimelineOptions, seen[-1][1], "t")     # timeline FILE, wherever --out is
    assert (cfg.file, cfg.out) == ("tl.json", "r")
    capsys.readouterr()
    assert cli.main(["trian"]) == 2
    assert capsys.readouterr().err == ("tfxr: error: unknown command 'trian' "
                                       "(allowed: suite, train, convert, input, timeline, profile)\n")
    assert cli.main(["--out"]) == 2 and capsys.readouterr().err == "tfxr: error: --out needs a value\n"
    with pytest.raises(ConfigError, match="train takes no arguments after --"):
        measure("train", ["--", "x"], "typed")


def test_help_hides_the_worker_and_bad_options_are_clear(tmp_path):
    help_text = tfxr("tfxr.benchmark", "--help").stdout
    assert "_worker" not in help_text and "suite" in help_text and "timeline" in help_text
    for args, message in ((["train", "--onednn", "maybe"], "onednn: unknown value 'maybe' (allowed: on, off)"),
                          (["train", "--repeats", "2"], "repeats: 2 is below the minimum 3"),
                          (["train", "--np", "1,512"], "--np 512"),
                          (["train", "--input", "pipeline"], "needs --data"),
                          (["train", "--input", "synthetic"], "input: unknown value 'synthetic'"),
                          (["train", "--rank-env", "PATH=/tmp"], "--rank-env PATH=/tmp"),
                          (["suite", "--only", "tb_cnn"], "only: unknown value 'tb_cnn'"),
                          (["input", "--steps", "3"], "input needs --data"),
                          (["convert", "--workers", "0", "--", "--source", "synthetic"], "workers: 0 is below"),
                          (["train", "--", "x"], "train takes no arguments after --"),
                          (["timeline"], "timeline needs the timeline file"),
                          (["timeline", "missing.json"], "missing.json: cannot read the timeline"),
                          (["suite", "--only", "accumulate", "--loop-steps", "6"], "--loop-steps 6: the accumulation")):
        r = tfxr("tfxr.benchmark", "--out", str(tmp_path), *args, check=False)
        assert r.returncode == 2 and r.stderr.startswith("tfxr: error: ") and message in r.stderr, (args, r.stderr)
        assert len(r.stderr.splitlines()) == 1
    assert not list(tmp_path.iterdir())                                      # nothing written


#: a 2-rank Horovod timeline of one step: one tensor, ranks ready 20 us apart, one allreduce
TIMELINE = [{"name": "process_name", "ph": "M", "pid": 1, "args": {"name": "grad_0"}},
            {"name": "CYCLE_START", "ph": "i", "ts": 0, "pid": 0, "s": "g"},
            {"name": "NEGOTIATE_ALLREDUCE", "ph": "B", "ts": 10, "pid": 1},
            {"name": "0", "ph": "X", "ts": 10, "pid": 1, "dur": 0}, {"name": "1", "ph": "X", "ts": 30, "pid": 1, "dur": 0},
            {"ph": "E", "ts": 30, "pid": 1},
            {"name": "ALLREDUCE", "ph": "B", "ts": 30, "pid": 1}, {"name": "MPI_ALLREDUCE", "ph": "B", "ts": 35, "pid": 1},
            {"ph": "E", "ts": 55, "pid": 1}, {"ph": "E", "ts": 60, "pid": 1}]


def test_timeline_prints_tfxr_timeline_summary(tmp_path):
    """``timeline FILE`` (a relative path, from another working directory) shows tfxr.timeline's summary."""
    from tfxr.timeline import format_summary, summarize

    (tmp_path / "tl.json").write_text(json.dumps(TIMELINE))
    r = tfxr("tfxr.benchmark", "timeline", "tl.json", "--out", "res", cwd=tmp_path)
    expected = format_summary(summarize(str(tmp_path / "tl.json"))).replace(str(tmp_path / "tl.json"), "tl.json")
    assert r.stdout.strip() == expected and "1 step(s), 1 allreduced tensor(s)" in r.stdout
    saved = check_result(tmp_path / "res", "timeline", min_bars=0)
    assert saved["summary"]["steps"] == 1 and saved["command"] == "python -m tfxr.benchmark timeline tl.json --out res"


def test_train_smoke_with_scaling_baselines(tmp_path):
    """Tiny tb_cnn run: every layout measured, medians inside their repeats, the ceiling of
    the run measured (GEMM) and never below a rate reached, PNG written."""
    tfxr("tfxr.benchmark", "--out", str(tmp_path), "train", "--image-size", "32", "--batch-size", "4",
         "--steps", "2", "--repeats", "3", "--warmup", "1", "--np", "1,2", "--gemm-size", "128", timeout=600)
    result = check_result(tmp_path, "train")
    layouts = [m["variant"]["layout"] for m in result["measurements"]]
    assert layouts == ["all-cores", "one-core", "independent", "ranks"]
    for m in result["measurements"]:
        s = m["images_per_s"]
        assert len(s["repeats"]) == 3 and s["min"] <= s["median"] <= s["max"] and s["min"] > 0
        assert 0 < m["flop_fraction"] <= 1 and m["flops_per_image"] > 0
    ceiling = result["fp32_ceiling"]
    assert ceiling["gemm_per_core"] == pytest.approx(result["gemm"]["gflops"]["median"] * 1e9 / result["gemm"]["cores"])
    assert ceiling["per_core"] >= max(ceiling["gemm_per_core"], ceiling["nominal_per_core"])
    independent = result["measurements"][2]
    assert len(independent["per_process"]) == 2
    assert independent["images_per_s"]["repeats"] == pytest.approx([a + b for a, b in zip(*independent["per_process"])])
    (row,) = result["scaling"]
    assert row["vs_bound"] == pytest.approx(result["measurements"][3]["images_per_s"]["median"]
                                            / independent["images_per_s"]["median"])
    assert (tmp_path / "train_scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_convert_and_input_smoke(tmp_path, synthetic_tfrec):
    tfxr("tfxr.benchmark", "--out", str(tmp_path), "convert", "--workers", "1", "--np", "1", "--repeats", "1", "--",
         "--source", "synthetic", "--num-images", "24", "--image-size", "32", "--shards", "2")
    conv = check_result(tmp_path, "convert")
    assert conv["runs"][0]["images"] == 24 and conv["runs"][0]["images_per_s"]["median"] > 0
    tfxr("tfxr.benchmark", "--out", str(tmp_path), "input", "--data", str(synthetic_tfrec), "--batch-size", "8",
         "--steps", "2", "--repeats", "3", "--warmup", "1")
    runs = check_result(tmp_path, "input")["runs"]
    assert [(r["input"], r["augment"]) for r in runs] == [
        ("tfrecord pipeline", "off"), ("tfrecord pipeline", "on"),
        ("augment_batch alone, compiled (tfxr)", "on"), ("augment_batch alone, separate TF ops (before)", "on")]
    for r in runs:
        for key in ("images_per_s", "cpu_ms_per_batch"):
            assert 0 < r[key]["min"] <= r[key]["median"] <= r[key]["max"], (r["input"], key)
