"""``python -m tfxr.evaluate``: the classifier report (1 and 2 ranks) and the gan subcommand."""
from __future__ import annotations

import json

import pytest

from tests.conftest import ONE_THREAD, tfxr
from tests.evaluation.conftest import phantom_data, phantom_model  # noqa: F401 - fixtures

def _metrics(out):
    data = json.loads((out / "metrics.json").read_text())
    data.pop("config")
    return data


@pytest.mark.mpi
def test_two_ranks_give_exactly_the_metrics_of_one(phantom_data, phantom_model, tmp_path):  # noqa: F811
    args = ["tfxr.evaluate", "--model", str(phantom_model.parent), "--data", str(phantom_data),
            "--bootstrap", "100", "--batch-size", "16"]
    one = tfxr(*args, "--out", str(tmp_path / "one"), env=ONE_THREAD)
    tfxr(*args, "--out", str(tmp_path / "two"), np=2, env=ONE_THREAD)
    single, double = _metrics(tmp_path / "one"), _metrics(tmp_path / "two")
    assert single == double
    assert single["images"] == json.loads((phantom_data / "manifest.json").read_text())["splits"]["test"]["count"]
    assert single["mean_over_labels"] == 4 and single["threshold_split"] == "val"
    cardio = single["labels"]["Cardiomegaly"]
    assert cardio["auroc"] > 0.8 and cardio["auroc_ci95"][0] < cardio["auroc"] < cardio["auroc_ci95"][1]
    assert {"precision", "f1", "accuracy"} <= set(cardio["at_val_threshold"]) and cardio["auprc"] > 0.5
    report = (tmp_path / "one" / "report.md").read_text()
    order = [report.index(f"| {n} |") for n in ("Cardiomegaly", "Effusion", "Nodule", "Consolidation")]
    assert order == sorted(order)          # CheXNet's label order
    assert "mean AUROC" in one.stdout and (tmp_path / "one" / "roc.png").stat().st_size > 0
    assert (tmp_path / "two" / "predictions.csv").read_text() == (tmp_path / "one" / "predictions.csv").read_text()


def test_gan_subcommand_domain_metric_with_baselines(phantom_data, phantom_model, tmp_path):  # noqa: F811
    r = tfxr("tfxr.evaluate", "gan", "--generated", "noise", "--real", str(phantom_data), "--split", "train",
             "--label", "Effusion", "--class-value", "1", "--features", "tfxr",
             "--feature-model", str(phantom_model), "--out", str(tmp_path))
    assert "FID_tfxr[tb_cnn" in r.stdout and "real (half A) [baseline]" in r.stdout and "N_ref" in r.stdout
    assert "compare values only at equal N" in r.stdout
    rows = next(iter(json.loads((tmp_path / "generative.json").read_text())["results"].values()))["rows"]
    assert rows["real (half A) [baseline]"]["fid"] < rows["generated (noise)"]["fid"]


@pytest.mark.parametrize("argv, message", [
    (["--data", "x"], "--model and --data are required"),
    (["--model", "/nonexistent.keras", "--data", "x"], "no such model file"),
    (["--model", "m", "--data", "x", "--split", "tset"], "unknown value 'tset'"),
    (["--model", "m", "--data", "x", "--batch-size", "0"], "--batch-size: 0 is below the minimum 1"),
    (["detection", "--detector", "d", "--set", "bootstrap=-1"], "--set bootstrap: -1 is below the minimum 0"),
    (["gan", "--generated", "noise", "--real", "/nonexistent"], "/nonexistent"),
    (["gan", "--generated", "/nonexistent", "--real", "/x", "--features", "nope"], "unknown value 'nope'"),
    (["gan", "--generated", "noise", "--real", "/x", "--class-value", "yes"], "--class-value 'yes'"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    from tfxr.evaluate import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("tfxr: error: ") and "Traceback" not in err


def test_the_evaluators_configs_live_in_tfxr_configs(capsys):
    """One place for every config; the old import names still work (notebooks import
    EvalConfig from tfxr.evaluate).  ``--help`` before a command lists the commands."""
    from tfxr import configs, evaluate
    from tfxr.evaluation import classifier, detection, localization

    assert evaluate.EvalConfig is classifier.EvalConfig is configs.EvalConfig
    assert evaluate.DetectionEvalConfig is detection.DetectionEvalConfig is configs.DetectionEvalConfig
    assert evaluate.GanEvalConfig is configs.GanEvalConfig and localization.LocalizeConfig is configs.LocalizeConfig
    assert evaluate.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "python -m tfxr.evaluate detection" in out and "python -m tfxr.evaluate gan" in out
    with pytest.raises(SystemExit) as done:
        evaluate.main(["gan", "--help"])
    assert done.value.code == 0 and "--inception-weights" in capsys.readouterr().out


def test_missing_inception_weights_names_the_remedy(phantom_data, tmp_path, monkeypatch, capsys):  # noqa: F811
    from tfxr.evaluate import main

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert main(["gan", "--generated", "noise", "--real", str(phantom_data)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--inception-weights PATH" in err[0] and "inception_v3_weights" in err[0]


def test_model_with_a_dynamic_input_shape_is_a_clear_error(phantom_data, tmp_path, capsys):  # noqa: F811
    """tfxr feeds images at the model's own size: a (None, None, C) input cannot say which."""
    import keras

    from tfxr.data.records import read_manifest
    from tfxr.evaluate import main

    labels = len(read_manifest(str(phantom_data))["label_names"])
    inputs = keras.Input((None, None, 1))
    outputs = keras.layers.Dense(labels, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(inputs))
    path = tmp_path / "dynamic.keras"
    keras.Model(inputs, outputs).save(path)
    assert main(["--model", str(path), "--data", str(phantom_data), "--out", str(tmp_path / "e"),
                 "--trust-model-file"]) == 2     # a foreign file: tfxr refuses it without the flag
    err = capsys.readouterr().err
    assert "is not a fixed square image" in err and str(path) in err and "Traceback" not in err
    assert not (tmp_path / "e").exists()
