"""Model files never run code: every command that takes a model, with every crafted file.

tfxr rebuilds its own models from the run's ``config.yaml`` and reads only the weights
(:mod:`tfxr.models.loading`); anything else is refused with one line, exit 2, unless
``--trust-model-file`` is given, and then Keras loads it with ``safe_mode=True``, which
the pinned Keras enforces for each of these files.  Each payload would create a marker
file (the traversal archive: a file outside every folder); none may exist afterwards.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import REPO, run, save_classifier_run
from tests.security import crafted

#: every command that takes a model file: (module, argv with MODEL / DATA placeholders, takes the trust flag)
COMMANDS = {
    "evaluate --model": ("tfxr.evaluate", ["--model", "MODEL", "--data", "DATA", "--out", "ev", "--bootstrap", "0"],
                         True),
    "localize --model": ("tfxr.localize", ["--model", "MODEL", "--data", "DATA", "--out", "loc"], True),
    "gan sample --generator": ("tfxr.gan", ["sample", "--generator", "MODEL", "--n", "2", "--out", "samples"], True),
    "gan balance --generator": ("tfxr.gan", ["balance", "--data", "DATA", "--generator", "MODEL", "--out", "bal",
                                             "--num", "4"], True),
    "evaluate gan --generated": ("tfxr.evaluate", ["gan", "--generated", "MODEL", "--real", "DATA", "--max-real",
                                                   "40", "--features", "tfxr", "--feature-model", "MODEL"], True),
    "evaluate gan --feature-model": ("tfxr.evaluate", ["gan", "--generated", "noise", "--real", "DATA",
                                                       "--max-real", "40", "--num-images", "8", "--features",
                                                       "tfxr", "--feature-model", "MODEL"], True),
    "train --model chexnet --weights": ("tfxr.train", ["--model", "chexnet", "--weights", "MODEL", "--data", "DATA",
                                                       "--out", "tr", "--epochs", "1", "--val-split", ""], False),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """kind -> (crafted file, marker), built once (no tfxr run config beside any of them)."""
    folder = tmp_path_factory.mktemp("crafted")
    return {kind: crafted.build(kind, folder) for kind in crafted.KINDS}


def _main(module: str):
    import importlib

    return importlib.import_module(module).main


def _run_in(tmp_path, monkeypatch, capsys, module, argv, model, data):
    """Run the command's main() from ``tmp_path`` with relative paths, as a user types it."""
    monkeypatch.chdir(tmp_path)
    rel_model, rel_data = os.path.relpath(model, tmp_path), os.path.relpath(data, tmp_path)
    argv = [rel_model if a == "MODEL" else rel_data if a == "DATA" else a for a in argv]
    code = _main(module)(argv)
    return code, capsys.readouterr().err


def _ran(marker: Path) -> bool:
    """Whether the payload ran (the marker is removed again, so one failure stays one failure)."""
    ran = marker.exists()
    marker.unlink(missing_ok=True)
    return ran


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("tfxr: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("kind", crafted.KINDS)
@pytest.mark.parametrize("command", list(COMMANDS))
def test_crafted_file_is_refused_and_runs_nothing(command, kind, files, synthetic_tfrec, tmp_path, monkeypatch,
                                                  capsys):
    module, argv, _ = COMMANDS[command]
    path, marker = files[kind]
    code, err = _run_in(tmp_path, monkeypatch, capsys, module, argv, path, synthetic_tfrec)
    assert not _ran(marker)
    assert code == 2, err
    line = _one_error_line(err)
    assert path.name in line
    if command.startswith("train"):   # chexnet's weights: a .weights.h5 or a tfxr run's .keras only
        assert "no config.yaml beside it" in line or ".weights.h5 or .keras" in line
    else:
        assert "--trust-model-file" in line


@pytest.mark.parametrize("kind", crafted.KINDS)
@pytest.mark.parametrize("command", [c for c, (_, _, trust) in COMMANDS.items() if trust])
def test_trusted_crafted_file_still_runs_nothing(command, kind, files, synthetic_tfrec, tmp_path, monkeypatch,
                                                 capsys):
    """--trust-model-file hands the file to Keras with safe_mode=True: the pinned Keras
    refuses each code-carrying file (exit 2, one line) and unpacks nothing outside."""
    module, argv, _ = COMMANDS[command]
    path, marker = files[kind]
    code, err = _run_in(tmp_path, monkeypatch, capsys, module, argv + ["--trust-model-file"], path,
                        synthetic_tfrec)
    assert not _ran(marker)
    if kind == "traversal_keras":   # a valid model with hostile member names: loading may succeed
        assert code in (0, 2) and "Traceback" not in err, err
    else:
        assert code == 2, err
        _one_error_line(err)


@pytest.mark.parametrize("kind", ["lambda_keras", "unsafe_config_keras", "tfsm_keras"])
def test_crafted_file_inside_a_run_folder_is_rebuilt_not_deserialised(kind, synthetic_tfrec, tmp_path, monkeypatch,
                                                                      capsys):
    """A crafted best.keras beside a tfxr config.yaml: tfxr builds tb_cnn from the config and
    reads only weights, so the file's config.json never runs; its weights do not fit."""
    import yaml

    run_dir = tmp_path / "run"
    path, marker = crafted.build(kind, run_dir, "best.keras")
    (run_dir / "config.yaml").write_text(yaml.safe_dump({
        "model": "tb_cnn", "dropout": None, "pipeline": {"channels": 1},
        "_resolved": {"image_size": 64, "label_names": ["Tuberculosis"]}}))
    code, err = _run_in(tmp_path, monkeypatch, capsys, "tfxr.evaluate", ["--model", "MODEL", "--data", "DATA"],
                        run_dir, synthetic_tfrec)
    assert code == 2 and "weights do not fit" in _one_error_line(err), err
    assert not marker.exists()


def test_traversal_members_of_a_run_model_are_never_unpacked(synthetic_tfrec, tmp_path, monkeypatch, capsys):
    """A real tfxr model with '../../tmp/...' members added: tfxr reads model.weights.h5 only,
    the evaluation runs (exit 0) and nothing appears outside the folders named."""
    from tfxr.models import build_model

    run_dir = tmp_path / "run"
    save_classifier_run(build_model("tb_cnn", 64), run_dir, "tb_cnn", 64, ["Tuberculosis"])
    escape = Path("/tmp") / f"tfxr-escape-{os.getpid()}-{id(tmp_path)}"
    import zipfile
    with zipfile.ZipFile(run_dir / "best.keras", "a") as archive:
        archive.writestr("../" * 16 + str(escape).lstrip("/"), b"escaped")
        archive.writestr("assets/" + "../" * 16 + str(escape).lstrip("/"), b"escaped")
    code, err = _run_in(tmp_path, monkeypatch, capsys, "tfxr.evaluate",
                        ["--model", "MODEL", "--data", "DATA", "--out", "ev", "--bootstrap", "0"],
                        run_dir, synthetic_tfrec)
    assert code == 0, err
    assert (tmp_path / "ev" / "metrics.json").exists() and not escape.exists()


def test_compare_optimizers_feature_model_is_refused(files):
    """``gan compare-optimizers --feature-model`` (loaded after both trainings) uses the same loader."""
    from tfxr.errors import ConfigError
    from tfxr.gan import evaluator_scores

    for kind, (path, marker) in files.items():
        with pytest.raises(ConfigError, match="--trust-model-file"):
            evaluator_scores(SimpleNamespace(feature_model=str(path), inception_weights="", seed=0), None, {})
        assert not marker.exists()


def test_a_classifier_is_not_a_generator(synthetic_tfrec, tmp_path, monkeypatch, capsys):
    """`evaluate gan --generated` and `gan sample` given a tfxr classifier: one line, exit 2."""
    from tfxr.models import build_model

    model = save_classifier_run(build_model("tb_cnn", 64), tmp_path / "clf", "tb_cnn", 64, ["Tuberculosis"])
    for module, argv in (("tfxr.evaluate", ["gan", "--generated", "MODEL", "--real", "DATA", "--max-real", "40"]),
                         ("tfxr.gan", ["sample", "--generator", "MODEL", "--out", "s"])):
        code, err = _run_in(tmp_path, monkeypatch, capsys, module, argv, model, synthetic_tfrec)
        assert code == 2 and "not a generator" in _one_error_line(err), err
    assert not (tmp_path / "s").exists()


def test_refusal_from_the_command_line(files, synthetic_tfrec, tmp_path):
    """The same refusal in a real process, relative paths, another working directory."""
    path, marker = files["unsafe_config_keras"]
    r = run([sys.executable, "-m", "tfxr.evaluate", "--model", os.path.relpath(path, tmp_path), "--data",
             os.path.relpath(synthetic_tfrec, tmp_path)], check=False, cwd=tmp_path,
            env={"PYTHONPATH": str(REPO)})
    assert r.returncode == 2, r.stderr
    assert len([x for x in r.stderr.splitlines() if x.startswith("tfxr: error:")]) == 1
    assert "Traceback" not in r.stderr and not marker.exists()


def test_no_tfxr_code_turns_safe_mode_off():
    """The two switches that make Keras deserialise code never appear in tfxr's sources."""
    needles = ("safe_mode=" + "False", "enable_unsafe_" + "deserialization")
    for source in (REPO / "tfxr").rglob("*.py"):
        text = source.read_text()
        assert not any(n in text for n in needles), source
