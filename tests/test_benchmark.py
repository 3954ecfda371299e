"""tfxr.benchmark: the aggregation on fake timings, and a tiny smoke run of each subcommand."""
from __future__ import annotations

import json

import pytest

from tests.conftest import tfxr
from tfxr import benchmark as bm


def _measurement(layout: str, rates: list[float], workers: int = 1, launcher: str = "mpirun", **variant) -> dict:
    v = bm.Variant(layout=layout, workers=workers, launcher=launcher, **variant)
    return {"variant": bm.asdict(v), "label": v.label(), "images_per_s": bm.summarize(rates),
            "flop_fraction": 0.5}


# --------------------------------------------------------------------------- aggregation
def test_summarize_median_and_spread():
    s = bm.summarize([10.0, 14.0, 11.0, 30.0, 12.0])
    assert (s["median"], s["min"], s["max"]) == (12.0, 10.0, 30.0)
    assert s["q1"] == 11.0 and s["q3"] == 14.0 and s["repeats"] == [10.0, 14.0, 11.0, 30.0, 12.0]
    with pytest.raises(ValueError):
        bm.summarize([])


def test_independent_bound_sums_windows():
    assert bm.combine_independent([[5.0, 6.0, 7.0], [5.5, 6.5, 4.0]]) == [10.5, 12.5, 11.0]
    with pytest.raises(ValueError, match="repeat counts"):
        bm.combine_independent([[1.0, 2.0], [1.0]])


def test_scaling_ratios_against_the_three_baselines():
    ms = [_measurement("all-cores", [12.0, 13.0, 12.9]),
          _measurement("one-core", [6.0, 6.2, 5.8]),
          _measurement("independent", [12.0, 12.5, 13.0], workers=2),
          _measurement("ranks", [11.0, 11.25, 11.5], workers=2),
          _measurement("ranks", [10.0, 10.0, 10.0], workers=2, launcher="gloo")]
    rows = {r["launcher"]: r for r in bm.scaling_rows(ms)}
    mpi = rows["mpirun"]
    assert mpi["independent_bound"] == 12.5
    assert mpi["vs_bound"] == pytest.approx(11.25 / 12.5)            # Horovod overhead
    assert mpi["efficiency_vs_one_core"] == pytest.approx(11.25 / (2 * 6.0))
    assert mpi["vs_all_cores_process"] == pytest.approx(11.25 / 12.9)
    assert rows["gloo"]["vs_bound"] == pytest.approx(10.0 / 12.5)


def test_scaling_ratios_compare_ranks_with_baselines_of_the_same_setting():
    """bf16 ranks against the bf16 single process, never the fp32 one measured first."""
    ms = [_measurement("all-cores", [400.0] * 3), _measurement("all-cores", [600.0] * 3, precision="bf16"),
          _measurement("one-core", [200.0] * 3), _measurement("one-core", [320.0] * 3, precision="bf16"),
          _measurement("independent", [640.0] * 3, workers=2, precision="bf16"),
          _measurement("ranks", [540.0] * 3, workers=2, precision="bf16")]
    (row,) = bm.scaling_rows(ms)
    assert row["vs_all_cores_process"] == pytest.approx(540 / 600)        # not 540 / 400
    assert row["efficiency_vs_one_core"] == pytest.approx(540 / 640)
    assert row["vs_bound"] == pytest.approx(540 / 640) and row["setting"] == "bf16 oneDNN on synthetic"
    fp32_ranks = _measurement("ranks", [380.0] * 3, workers=2)            # no fp32 bound measured
    rows = {r["setting"]: r for r in bm.scaling_rows(ms + [fp32_ranks])}
    assert rows["fp32 oneDNN on synthetic"]["independent_bound"] is None
    assert rows["fp32 oneDNN on synthetic"]["vs_all_cores_process"] == pytest.approx(380 / 400)


def test_scaling_uses_the_fastest_single_setting_and_labels_horovod_settings():
    ms = [_measurement("all-cores", [10.0] * 3), _measurement("all-cores", [30.0] * 3, precision="bf16"),
          _measurement("all-cores", [50.0] * 3, input="pipeline")]          # not model-only: ignored
    base = bm.fastest_single(json.loads(json.dumps(ms)), bm.Variant())
    assert base.precision == "bf16" and base.input == "synthetic"
    plan = bm.scaling_plan(base, [1, 2], ["mpirun"], [(), (("HOROVOD_FUSION_THRESHOLD", "8388608"),)])
    assert [(v.layout, v.workers, v.env) for v in plan] == [
        ("one-core", 1, ()), ("independent", 2, ()), ("ranks", 2, ()),
        ("ranks", 2, (("HOROVOD_FUSION_THRESHOLD", "8388608"),))]
    assert all(v.precision == "bf16" for v in plan)
    assert bm.slow_setting_timing(base, bm.Timing(steps=20)).steps == 5                 # bf16: shorter windows
    assert bm.slow_setting_timing(bm.Variant(), bm.Timing(steps=20)).steps == 20
    assert plan[-1].label().endswith("HOROVOD_FUSION_THRESHOLD=8388608")
    assert bm._variant_env(plan[-1])["HOROVOD_FUSION_THRESHOLD"] == "8388608"


def test_flop_fraction_counts_training_as_three_forward_passes():
    # 10 images/s x 5.67 GFLOP x 3 on a 2-core 2.6 GHz x 32 FLOP/cycle machine
    assert bm.flop_fraction(10.0, 5.67e9, 2 * 2.6e9 * 32) == pytest.approx(170.1e9 / 166.4e9)


def test_suite_targets_from_fake_sections():
    tb = [_measurement("all-cores", [400.0, 410.0, 420.0], model="tb_cnn"),
          _measurement("one-core", [200.0] * 3), _measurement("independent", [400.0] * 3, workers=2),
          _measurement("ranks", [380.0] * 3, workers=2)]
    loop = _measurement("all-cores", [380.0, 390.0, 400.0], input="pipeline")
    loop["variant"]["layout"] = "train-loop"
    dn224 = [_measurement("all-cores", [3.0] * 3, model="chexnet", image_size=224)]
    dn224[0]["flop_fraction"] = 0.3
    targets = {t["target"]: t for t in bm.suite_targets({"tb_cnn_128": tb + [loop], "densenet121_224": dn224})}
    ratio = targets["tb_cnn 128 px: training loop / model-only step rate (best setting)"]
    assert ratio["value"] == pytest.approx(390 / 410) and ratio["met"] is True
    assert targets["tb_cnn 128 px: training loop images/s (best setting)"]["met"] is False   # 390 < 400
    assert targets["tb_cnn 128 px: best -np 2 / independent bound"]["value"] == pytest.approx(0.95)
    assert targets["tb_cnn 128 px: best -np 2 / best single process (all cores)"]["value"] == pytest.approx(380 / 410)
    assert targets["DenseNet121 224 px training: fraction of fp32 peak"]["met"] is False
    assert targets["DenseNet121 128 px: best -np 2 / independent bound"]["met"] is None   # not measured
    assert bm.targets_table(list(targets.values())).splitlines()[-1].rstrip(" |").endswith("NO")


def test_each_training_loop_is_compared_with_the_model_only_rate_of_its_own_layout():
    def loop(rates, workers, precision):
        m = _measurement("all-cores", rates, input="pipeline", precision=precision, workers=workers)
        m["variant"].update(layout="train-loop", loop_layout="all-cores" if workers == 1 else "ranks")
        return m
    ms = [_measurement("all-cores", [400.0] * 3), _measurement("ranks", [420.0] * 3, workers=2),
          _measurement("ranks", [900.0] * 3, workers=2, precision="bf16"),
          _measurement("ranks", [990.0] * 3, workers=2, precision="bf16", launcher="gloo"),   # not the reference
          loop([340.0] * 3, 1, "fp32"), loop([399.0] * 3, 2, "fp32"), loop([720.0] * 3, 2, "bf16")]
    rows = [(r["model_only"], r["ratio"]) for r in bm.loop_rows(ms)]
    assert rows == [(400.0, pytest.approx(0.85)), (420.0, pytest.approx(0.95)), (900.0, pytest.approx(0.8))]
    targets = {t["target"]: t for t in bm.suite_targets({"tb_cnn_128": ms})}
    assert targets["tb_cnn 128 px: training loop / model-only step rate (best setting)"]["value"] == pytest.approx(0.95)
    assert targets["tb_cnn 128 px: training loop images/s (best setting)"]["value"] == 720.0


def test_worker_result_line_survives_launcher_prefixes():
    line = bm.RESULT_MARK + json.dumps({"rates": [1.0, 2.0, 3.0]})
    assert bm.parse_worker_output(f"noise\n[0]<stdout>:{line}\n")["rates"] == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError):
        bm.parse_worker_output("no result here")


# --------------------------------------------------------------------------- command line
def test_help_hides_the_worker_and_bad_options_are_clear(tmp_path):
    help_text = bm.build_parser().format_help()
    assert "_worker" not in help_text and "suite" in help_text
    r = tfxr("tfxr.benchmark", "--out", str(tmp_path), "train", "--onednn", "maybe", check=False)
    assert r.returncode == 2 and "allowed values are on, off" in r.stderr
    r = tfxr("tfxr.benchmark", "--out", str(tmp_path), "train", "--repeats", "2", check=False)
    assert r.returncode == 2 and "tfxr: error: --repeats 2" in r.stderr
    r = tfxr("tfxr.benchmark", "--out", str(tmp_path), "train", "--np", "1,512", check=False)
    assert r.returncode == 2 and "--np 512" in r.stderr
    r = tfxr("tfxr.benchmark", "--out", str(tmp_path), "train", "--input", "pipeline", check=False)
    assert r.returncode == 2 and "needs --data" in r.stderr
    assert not list(tmp_path.iterdir())                                      # nothing written


def _check_result(out, name: str) -> dict:
    result = json.loads((out / f"{name}.json").read_text())
    assert {"command", "machine", "settings", "time", "table"} <= set(result)
    assert result["command"].startswith("python -m tfxr.benchmark") and result["machine"]["cpu"]
    assert (out / f"{name}.md").read_text().count("|") > 10
    return result


def test_train_smoke_with_scaling_baselines(tmp_path):
    """Tiny tb_cnn run: every layout measured, medians inside their repeats, PNG written."""
    tfxr("tfxr.benchmark", "--out", str(tmp_path), "train", "--image-size", "32", "--batch-size", "4",
         "--steps", "2", "--repeats", "3", "--warmup", "1", "--np", "1,2", timeout=600)
    result = _check_result(tmp_path, "train")
    layouts = [m["variant"]["layout"] for m in result["measurements"]]
    assert layouts == ["all-cores", "one-core", "independent", "ranks"]
    for m in result["measurements"]:
        s = m["images_per_s"]
        assert len(s["repeats"]) == 3 and s["min"] <= s["median"] <= s["max"] and s["min"] > 0
        assert 0 < m["flop_fraction"] < 1 and m["flops_per_image"] > 0
    independent = result["measurements"][2]
    assert len(independent["per_process"]) == 2
    assert independent["images_per_s"]["repeats"] == pytest.approx([a + b for a, b in zip(*independent["per_process"])])
    (row,) = result["scaling"]
    assert row["vs_bound"] == pytest.approx(result["measurements"][3]["images_per_s"]["median"]
                                            / independent["images_per_s"]["median"])
    assert (tmp_path / "train_scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_convert_and_input_smoke(tmp_path, synthetic_tfrec):
    tfxr("tfxr.benchmark", "--out", str(tmp_path), "convert", "--workers", "1", "--np", "1", "--",
         "--source", "synthetic", "--num-images", "24", "--image-size", "32", "--shards", "2")
    conv = _check_result(tmp_path, "convert")
    assert conv["runs"][0]["images"] == 24 and conv["runs"][0]["images_per_s"] > 0
    tfxr("tfxr.benchmark", "--out", str(tmp_path), "input", "--data", str(synthetic_tfrec), "--batch-size", "8",
         "--steps", "2", "--repeats", "3", "--warmup", "1")
    runs = _check_result(tmp_path, "input")["runs"]
    assert [r["augment"] for r in runs] == [False, True]
    assert all(r["images_per_s"]["min"] <= r["images_per_s"]["median"] <= r["images_per_s"]["max"] for r in runs)


@pytest.mark.slow
def test_suite_smoke(tmp_path):
    """The suite's tb_cnn section end to end (settings, baselines, the tfxr.train loop, targets)."""
    tfxr("tfxr.benchmark", "--out", str(tmp_path), "suite", "--only", "tb_cnn_128", "--launcher", "mpirun",
         "--images", "120", "--variants", "base", "--steps", "1", "--repeats", "3", "--warmup", "1",
         "--loop-steps", "2", timeout=1200)
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
