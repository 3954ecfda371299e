"""``python -m tfxr.benchmark suite`` (tfxr/benchmark/suites.py): its plans, the conversion
sources, and small smoke runs of its sections (no timing is judged)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.benchmark.helpers import check_result
from tests.conftest import tfxr
from tfxr.benchmark.suites import conversion_plan


def test_conversion_plan_has_the_bound_of_every_parallel_count():
    assert conversion_plan([1, 2], [2]) == [("pool", 1, 1), ("pool", 1, 2), ("ranks", 2, 1), ("independent", 2, 1)]
    assert conversion_plan([1], [1]) == [("pool", 1, 1)]


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


@pytest.mark.slow
def test_suite_smoke(tmp_path, synthetic_tfrec):
    """The suite's tb_cnn section end to end (settings, baselines, the tfxr.train loop, targets), on the
    session's records (--data: the suite writes none)."""
    tfxr("tfxr.benchmark", "--out", str(tmp_path), "suite", "--only", "tb_cnn_128", "--launcher", "mpirun",
         "--data", str(synthetic_tfrec), "--variants", "base", "--steps", "1", "--repeats", "3", "--warmup", "1",
         "--loop-steps", "1", "--gemm-size", "256", timeout=1200)
    result = check_result(tmp_path, "suite")
    section = result["sections"]["tb_cnn_128"]
    assert not [m["error"] for m in section if "error" in m]
    assert {m["variant"]["layout"] for m in section} == {"all-cores", "one-core", "independent", "ranks",
                                                         "train-loop"}
    loops = [m["variant"] for m in section if m["variant"]["layout"] == "train-loop"]
    assert [(v["precision"], v["workers"], v["loop_layout"], v["input"]) for v in loops] == [
        ("fp32", 1, "all-cores", "pipeline"), ("fp32", 1, "all-cores", "pipeline-noaug"),
        ("fp32", 2, "ranks", "pipeline"), ("bf16", 2, "ranks", "pipeline")]
    assert [m["variant"]["input"] for m in section if m["variant"]["layout"] == "all-cores"] == ["random"]
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
    result = check_result(tmp_path, "suite")
    loops = result["sections"]["accumulate"]
    assert not [m["error"] for m in loops if "error" in m]
    assert [(m["variant"]["accumulate_steps"], m["allreduces_per_epoch"]["median"]) for m in loops] == [(1, 4), (4, 1)]
    assert "allreduces/epoch" in (tmp_path / "suite.md").read_text()


@pytest.mark.slow
def test_suite_smoke_of_the_conversion_section(tmp_path):
    """PNG conversion (1 and 2 workers, mpirun -np 2) beside the independent-process bound:
    measured and tabled (no timing is judged here).  The suite's DCGAN section is the DCGAN's
    step (test_workers.py's test_dcgan_step_alone_and_on_two_ranks) in the generic scaling plan
    that test_suite_smoke runs for tb_cnn."""
    tfxr("tfxr.benchmark", "--out", str(tmp_path), "suite", "--only", "convert", "--steps", "1", "--repeats", "3",
         "--warmup", "1", "--gemm-size", "0", "--convert-images", "12", "--convert-source", "png", timeout=1800)
    result = check_result(tmp_path, "suite")
    assert result["sections"] == {} and result["data"] is None      # no model section, no phantom TFRecords
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
