"""tfxr.cli.run_main: one error line and exit 2 for input errors, tracebacks only for bugs."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tfxr import cli
from tfxr.errors import CheckpointError, ConfigError, ManifestError, SourceError


@pytest.mark.parametrize("error", [ConfigError, ManifestError, SourceError, CheckpointError])
def test_user_errors_are_one_line_and_exit_2(error, capsys):
    def body():
        raise error("data/manifest.json: no 'train' split")
    assert cli.run_main(body) == cli.EXIT_USAGE == 2
    err = capsys.readouterr().err
    assert err == "tfxr: error: data/manifest.json: no 'train' split\n"


def test_exit_codes_pass_through_and_none_means_success():
    assert cli.run_main(lambda: None) == cli.EXIT_OK == 0
    assert cli.run_main(lambda: cli.EXIT_REJECTED) == 3


def test_a_bug_is_not_disguised_as_a_user_error():
    """A bug in a command's body exits 1 with Python's traceback, never the one-line user error."""
    code = "import sys; from tfxr.cli import run_main; sys.exit(run_main(lambda: {}['a bug']))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == cli.EXIT_CRASH == 1
    assert "Traceback (most recent call last)" in r.stderr and "KeyError: 'a bug'" in r.stderr
    assert "tfxr: error:" not in r.stderr
