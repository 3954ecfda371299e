"""The Open OnDemand form: hostile field values stay text in before.sh, script.sh and the
Jupyter config (each would create a marker file if the shell or Python ran it)."""
from __future__ import annotations

import subprocess
import sys

from tests.test_ood import APP, SAMPLE_FORM, VENV, rendered, run_session

#: a folder name carrying every shell and Python metacharacter the fields may hold
HOSTILE = "x $(touch MARK_subst) `touch MARK_tick` 'q\" ; touch MARK_semi\n touch MARK_nl ' + __import__('os').system('touch MARK_py') + '"
MARKERS = ("MARK_subst", "MARK_tick", "MARK_semi", "MARK_nl", "MARK_py")


def _hostile_checkout(tmp_path):
    home = tmp_path / f"tfxr {HOSTILE}"
    home.mkdir()
    (home / "Makefile").symlink_to(APP.parents[1] / "Makefile")
    (home / ".venv").symlink_to(VENV)
    return home


def test_hostile_form_values_run_nothing(tmp_path):
    home = _hostile_checkout(tmp_path)
    work = tmp_path / f"work {HOSTILE}"
    work.mkdir()
    form = {**SAMPLE_FORM, "tfxr_home": str(home) + "/", "working_dir": str(work),
            "extra_jupyter_args": "--ServerApp.x=1 '$(touch MARK_arg)' ; touch MARK_argsemi"}
    _, call, session, env = run_session(tmp_path, form)
    assert call["cwd"] == str(work)                                  # the folder, verbatim
    assert call["env"]["TFXR_HOME"] == str(home)
    assert call["argv"][1:] == ["--ServerApp.x=1", "$(touch MARK_arg)", ";", "touch", "MARK_argsemi"]
    # The Jupyter config, run as Jupyter runs it: root_dir is the folder, nothing executed.
    config = session / "jupyter_server_config.py"
    probe = ("import os, sys; from types import SimpleNamespace as N; "
             "c = N(ServerApp=N(), PasswordIdentityProvider=N(), MultiKernelManager=N()); "
             "exec(open(sys.argv[1]).read(), {'c': c, 'os': os}); print(c.ServerApp.root_dir)")
    out = subprocess.run([sys.executable, "-c", probe, str(config)], cwd=tmp_path, capture_output=True, text=True,
                         env={**env, "TFXR_WORKING_DIR": call["env"]["TFXR_WORKING_DIR"]}, check=True)
    assert out.stdout[:-1] == str(work)
    for folder in (tmp_path, session, work, home):
        for marker in MARKERS + ("MARK_arg", "MARK_argsemi"):
            assert not (folder / marker).exists(), folder / marker


def test_home_shorthands_still_mean_the_home_folder(tmp_path):
    """The form's default "$HOME/tfxr" and "~" keep meaning the user's home (quoted, not expanded further)."""
    for value, expected in (("$HOME", '"${HOME}"'), ("", '"${HOME}"'), ("~/a b", '"${HOME}"/a\\ b'),
                            ("$HOME/$(x)", '"${HOME}"/\\$\\(x\\)')):
        text = rendered(APP / "template" / "before.sh.erb", {**SAMPLE_FORM, "working_dir": value}, tmp_path)
        assert f"export TFXR_WORKING_DIR={expected}\n" in text
