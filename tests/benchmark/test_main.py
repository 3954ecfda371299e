"""``python -m tfxr.benchmark``: options, the runner's commands, a tiny smoke run of each subcommand."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.conftest import tfxr
from tfxr.benchmark import __main__ as cli
from tfxr.benchmark.analysis import Variant
from tfxr.benchmark.options import TimelineOptions, rank_env
from tfxr.benchmark.runner import RESULT_MARK, Timing, parse_worker_output, variant_command
from tfxr.benchmark.suites import conversion_plan
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


def test_conversion_plan_has_the_bound_of_every_parallel_count():
    assert conversion_plan([1, 2], [2]) == [("pool", 1, 1), ("pool", 1, 2), ("ranks", 2, 1), ("independent", 2, 1)]
    assert conversion_plan([1], [1]) == [("pool", 1, 1)]


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


def test_phantom_png_and_dicom_sources_hold_the_same_images_written_once(tmp_path):
    """The conversion benchmark's two sources (one phantom_folder): the same images, PNG 8-bit
    and DICOM 12-bit, in class folders; a second call reuses them; nothing half-written left."""
    import numpy as np
    import pydicom
    from PIL import Image

    from tfxr.benchmark.suites import phantom_dicoms, phantom_pngs

    png, dcm = phantom_pngs(str(tmp_path), 4, 16), phantom_dicoms(str(tmp_path), 4, 16)
    pngs = sorted(p.relative_to(png) for p in Path(png).rglob("*.png"))
    assert len(pngs) == 4 and {p.parts[0] for p in pngs} <= {"TB", "NORMAL"}
    assert sorted(p.relative_to(dcm).with_suffix(".png") for p in Path(dcm).rglob("*.dcm")) == pngs
    for p in pngs:
        grey = np.asarray(Image.open(Path(png) / p))
        assert grey.shape == (16, 16) and grey.max() > 0
        assert np.array_equal(pydicom.dcmread(Path(dcm) / p.with_suffix(".dcm")).pixel_array, grey.astype(np.uint16) * 16)
    assert phantom_pngs(str(tmp_path), 4, 16) == png and sorted(os.listdir(tmp_path)) == sorted(
        [os.path.basename(png), os.path.basename(dcm)])


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
    saved = _check_result(tmp_path / "res", "timeline", min_bars=0)
    assert saved["summary"]["steps"] == 1 and saved["command"] == "python -m tfxr.benchmark timeline tl.json --out res"


def _check_result(out, name: str, min_bars: int = 10) -> dict:
    result = json.loads((out / f"{name}.json").read_text())
    assert {"command", "machine", "settings", "time", "table"} <= set(result)
    assert result["command"].startswith("python -m tfxr.benchmark") and result["machine"]["cpu"]
    assert (out / f"{name}.md").read_text().count("|") >= min_bars
    return result


def test_train_smoke_with_scaling_baselines(tmp_path):
    """Tiny tb_cnn run: every layout measured, medians inside their repeats, the ceiling of
    the run measured (GEMM) and never below a rate reached, PNG written."""
    tfxr("tfxr.benchmark", "--out", str(tmp_path), "train", "--image-size", "32", "--batch-size", "4",
         "--steps", "2", "--repeats", "3", "--warmup", "1", "--np", "1,2", "--gemm-size", "128", timeout=600)
    result = _check_result(tmp_path, "train")
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
    conv = _check_result(tmp_path, "convert")
    assert conv["runs"][0]["images"] == 24 and conv["runs"][0]["images_per_s"]["median"] > 0
    tfxr("tfxr.benchmark", "--out", str(tmp_path), "input", "--data", str(synthetic_tfrec), "--batch-size", "8",
         "--steps", "2", "--repeats", "3", "--warmup", "1")
    runs = _check_result(tmp_path, "input")["runs"]
    assert [r["augment"] for r in runs] == [False, True]
    assert all(r["images_per_s"]["min"] <= r["images_per_s"]["median"] <= r["images_per_s"]["max"] for r in runs)


@pytest.mark.slow
def test_suite_smoke(tmp_path, synthetic_tfrec):
    """The suite's tb_cnn section end to end (settings, baselines, the tfxr.train loop, targets), on the
    session's records (--data: the suite writes none)."""
    tfxr("tfxr.benchmark", "--out", str(tmp_path), "suite", "--only", "tb_cnn_128", "--launcher", "mpirun",
         "--data", str(synthetic_tfrec), "--variants", "base", "--steps", "1", "--repeats", "3", "--warmup", "1",
         "--loop-steps", "1", "--gemm-size", "256", timeout=1200)
    result = _check_result(tmp_path, "suite")
    section = result["sections"]["tb_cnn_128"]
    assert not [m["error"] for m in section if "error" in m]
    assert {m["variant"]["layout"] for m in section} == {"all-cores", "one-core", "independent", "ranks",
                                                         "train-loop"}
    loops = [m["variant"] for m in section if m["variant"]["layout"] == "train-loop"]
    assert [(v["precision"], v["workers"], v["loop_layout"]) for v in loops] == [
        ("fp32", 1, "all-cores"), ("fp32", 2, "ranks"), ("bf16", 2, "ranks")]
    measured = {t["target"]: t["value"] for t in result["targets"]}
    assert measured["tb_cnn 128 px: training loop / model-only step rate (best setting)"] > 0
    assert "loop / model-only" in (tmp_path / "suite.md").read_text()
    assert result["gemm"]["gflops"]["median"] > 1 and len(result["gemm"]["gflops"]["repeats"]) == 3
    assert (tmp_path / "scaling_tb_cnn_128.png").exists()


@pytest.mark.slow
def test_suite_smoke_of_gradient_accumulation(tmp_path, synthetic_tfrec):
    """2-rank tfxr.train loops with K = 1 and 4: allreduces per epoch counted by the run."""
    tfxr("tfxr.benchmark", "--out", str(tmp_path), "suite", "--only", "accumulate", "--data", str(synthetic_tfrec),
         "--steps", "1", "--repeats", "3", "--warmup", "1", "--loop-steps", "4", "--gemm-size", "0", timeout=1800)
    result = _check_result(tmp_path, "suite")
    loops = result["sections"]["accumulate"]
    assert not [m["error"] for m in loops if "error" in m]
    assert [(m["variant"]["accumulate_steps"], m["allreduces_per_epoch"]["median"]) for m in loops] == [(1, 4), (4, 1)]
    assert "allreduces/epoch" in (tmp_path / "suite.md").read_text()


@pytest.mark.slow
def test_suite_smoke_of_the_new_paths(tmp_path):
    """The DCGAN beside its two-process bound, and PNG conversion (1 and 2 workers,
    mpirun -np 2) beside the independent-process bound: measured and tabled (no timing
    is judged here)."""
    tfxr("tfxr.benchmark", "--out", str(tmp_path), "suite", "--only", "dcgan_64,convert", "--launcher", "mpirun",
         "--variants", "base", "--steps", "1", "--repeats", "3", "--warmup", "1", "--gemm-size", "0",
         "--convert-images", "12", "--convert-source", "png", timeout=1800)
    result = _check_result(tmp_path, "suite")
    gan = result["sections"]["dcgan_64"]
    assert not [m["error"] for m in gan if "error" in m]
    assert [m["variant"]["layout"] for m in gan] == ["all-cores", "one-core", "independent", "ranks"]
    assert all(m["variant"]["model"] == "dcgan" and m["images_per_s"]["median"] > 0 for m in gan)
    targets = {t["target"]: t["value"] for t in result["targets"]}
    assert targets["DCGAN 64 px: best -np 2 / independent bound"] > 0
    conv = {(r["layout"], r["processes"], r["workers_per_process"]): r for r in result["conversions"]["png"]}
    assert set(conv) == {("pool", 1, 1), ("pool", 1, 2), ("ranks", 2, 1), ("independent", 2, 1)}
    assert all(r["images"] == 12 and len(r["images_per_s"]["repeats"]) == 3 for r in conv.values())
    assert conv[("ranks", 2, 1)]["vs_bound"] == pytest.approx(
        conv[("ranks", 2, 1)]["images_per_s"]["median"] / conv[("independent", 2, 1)]["images_per_s"]["median"])
    assert "## convert (png source)" in (tmp_path / "suite.md").read_text()


def test_suite_sections_option_and_the_dicom_conversion_source(tmp_path):
    """--sections picks sections (as --only); the DICOM source: the PNG source's phantoms as 12-bit
    CR DICOMs that tfxr's reader decodes back to the same pixels."""
    import numpy as np

    from tfxr.benchmark.options import SuiteOptions
    from tfxr.benchmark.suites import CONVERT_SOURCES, phantom_dicoms
    from tfxr.config import parse_config
    from tfxr.data.imageio import read_dicom
    from tfxr.data.phantom_drawing import render_phantom

    cfg, _ = parse_config(SuiteOptions, ["--sections", "convert,accumulate"], "t")
    assert cfg.only == ["convert", "accumulate"] and cfg.convert_source == ["png", "dicom"]
    folder = phantom_dicoms(str(tmp_path), 4, 48)
    files = sorted(p for p in (tmp_path / os.path.basename(folder)).rglob("*.dcm"))
    assert len(files) == 4 and {p.parent.name for p in files} <= {"TB", "NORMAL"}
    for path in files:
        index = int(path.stem.rsplit("_", 1)[1])
        pixels, _ = read_dicom(str(path), use_window=False)
        expected = render_phantom(0, index, 48).astype(np.float64)
        assert pixels.shape == (48, 48)
        np.testing.assert_allclose(pixels.astype(np.float64) / pixels.max(), expected / expected.max(), atol=0.01)
    assert CONVERT_SOURCES["dicom"](str(tmp_path), 4, 24)[:4] == ["--source", "folder", "--images", folder]


@pytest.mark.slow
def test_detector_step_beside_its_two_process_bound(tmp_path):
    """The detector's training step (tfxr.detect's DetectorStep, random images and boxes in
    memory; 64 px, one step per window): one process on all cores, one core, two independent
    one-core processes (the bound) and mpirun -np 2, and the ranks' ratio to the bound.  The
    suite's detector_256 section is this plan at the trainer's 256 px and batch 8."""
    from tfxr.benchmark.suites import SCALED, suite_plan

    assert suite_plan("base")["detector_256"] == [Variant(model="detector", image_size=256, batch_size=8)]
    assert SCALED["detector_256"] == [()]
    bad = tfxr("tfxr.benchmark", "--out", "res", "train", "--model", "detector", "--image-size", "100",
               cwd=tmp_path, check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("tfxr: error: image size 100: the detector needs")
    tfxr("tfxr.benchmark", "--out", "res", "train", "--model", "detector", "--image-size", "64", "--batch-size", "2",
         "--steps", "1", "--repeats", "3", "--warmup", "1", "--np", "1,2", "--gemm-size", "0", cwd=tmp_path,
         timeout=1800)
    result = _check_result(tmp_path / "res", "train")
    ms = result["measurements"]
    assert [m["variant"]["layout"] for m in ms] == ["all-cores", "one-core", "independent", "ranks"]
    for m in ms:
        assert m["variant"]["model"] == "detector" and m["flops_per_image"] > 0
        assert len(m["images_per_s"]["repeats"]) == 3 and m["images_per_s"]["min"] > 0
    (row,) = result["scaling"]
    assert row["vs_bound"] == pytest.approx(ms[3]["images_per_s"]["median"] / ms[2]["images_per_s"]["median"])
