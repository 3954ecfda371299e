"""tfxr.benchmark.report: tables and the scaling plot (one line per setting, with a legend)."""
from __future__ import annotations

from dataclasses import asdict

from PIL import Image

from tfxr.benchmark import report
from tfxr.benchmark.analysis import Variant, summarize


def _m(layout, rate, workers=1, **variant):
    v = Variant(layout=layout, workers=workers, **variant)
    return {"variant": asdict(v), "label": v.label(), "images_per_s": summarize([rate * 0.9, rate, rate * 1.1])}


FP32_AND_BF16 = [_m("all-cores", 400.0), _m("one-core", 210.0), _m("independent", 410.0, 2), _m("ranks", 380.0, 2),
                 _m("all-cores", 600.0, precision="bf16"), _m("one-core", 330.0, precision="bf16"),
                 _m("independent", 640.0, 2, precision="bf16"), _m("ranks", 620.0, 2, precision="bf16"),
                 _m("ranks", 560.0, 2, precision="bf16", launcher="gloo")]


def test_scaling_plot_draws_each_setting_on_its_own_lines():
    lines = report.scaling_series(FP32_AND_BF16)
    ranks = [(ln["label"], ln["workers"], ln["median"]) for ln in lines if ln["kind"] == "ranks"]
    assert ranks == [("bf16 oneDNN on: Horovod gloo", [2], [560.0]), ("bf16 oneDNN on: Horovod mpirun", [2], [620.0]),
                     ("fp32 oneDNN on: Horovod mpirun", [2], [380.0])]
    bound = {ln["label"]: ln["median"] for ln in lines if ln["kind"] == "bound"}
    assert bound == {"bf16 oneDNN on: independent 1-core processes (bound)": [330.0, 640.0],
                     "fp32 oneDNN on: independent 1-core processes (bound)": [210.0, 410.0]}
    one = {ln["label"]: ln["median"] for ln in lines if ln["kind"] == "one-core x N"}
    assert one["fp32 oneDNN on: N x one-core process"] == [210.0, 420.0]
    assert len({ln["label"] for ln in lines}) == len(lines)                    # the legend tells them apart
    assert {ln["setting"] for ln in lines if "bf16" in ln["label"]} == {0}      # one colour per setting
    assert {ln["setting"] for ln in lines if "fp32" in ln["label"]} == {1}


def test_scaling_plot_draws_what_was_measured_when_a_baseline_failed(tmp_path):
    without_one_core = [m for m in FP32_AND_BF16 if m["variant"]["layout"] != "one-core"]
    lines = report.scaling_series(without_one_core)
    assert {ln["label"]: ln["median"] for ln in lines if ln["kind"] == "bound"}[
        "fp32 oneDNN on: independent 1-core processes (bound)"] == [410.0]
    assert not [ln for ln in lines if ln["kind"] == "one-core x N"]
    report.plot_scaling(without_one_core, str(tmp_path / "s.png"), "t")


def test_scaling_plot_renders_a_png(tmp_path):
    path = tmp_path / "scaling.png"
    report.plot_scaling(FP32_AND_BF16, str(path), "tb_cnn 128 px training")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (825, 528)
        assert len(set(im.convert("RGB").getdata())) > 20                       # lines and text, not blank
    assert [p.name for p in tmp_path.iterdir()] == ["scaling.png"]             # no temporary left


def test_tables_are_markdown_with_numbers_right_aligned():
    text = report.table(["what", "n"], [["a", 1.5], ["bb", None]])
    assert text.splitlines() == ["| what |    n |", "|------|-----:|", "| a    | 1.50 |", "| bb   |    - |"]
