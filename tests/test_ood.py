"""The Open OnDemand app (job_submissions/ood): YAML, ERB rendering, the session it starts.

The templates are rendered with Ruby's own ``erb`` (Debian package ``ruby``, installed
by scripts/install.sh) and a stand-in for OOD's form context, then the rendered
before.sh is run the way OOD runs it (sourced, with OOD's ``find_port`` /
``create_passwd`` helpers and ``$host``) and script.sh is started with a stand-in
``jupyter-lab`` that records how it was called.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

APP = REPO / "job_submissions" / "ood"
VENV = Path(sys.prefix)  # the venv running the tests: make test's .venv

SAMPLE_FORM = {
    "tfxr_home": "",  # set per test to a checkout beside tmp_path
    "jupyter_environment": "export SITE_MODULE_LOADED=1",
    "bc_account": "PZS0001",
    "bc_queue": "cpu",
    "bc_num_hours": "3",
    "num_cores": "8",
    "memory_gb": "32",
    "num_gpus": "0",
    "horovod_ranks": "4",
    "working_dir": "",
    "extra_jupyter_args": "--ServerApp.shutdown_no_activity_timeout=3600",
    "bc_email_on_started": "0",
}


def _erb() -> str:
    erb = shutil.which("erb")
    if erb is None:
        if os.environ.get("CI") == "true":
            pytest.fail("erb is missing under CI: scripts/install.sh installs Debian's 'ruby' package")
        pytest.skip("Ruby's erb is not installed (Debian package 'ruby'; `make install` adds it)")
    return erb


def render(template: Path, form: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    """Render one ERB file as OOD would: form attributes as bare names and as context.X."""
    context = tmp_path / "ood_context.rb"
    pairs = ", ".join(f"{json.dumps(k)} => {json.dumps(str(v))}" for k, v in form.items())
    context.write_text(
        "require 'ostruct'\n"
        f"FORM = {{ {pairs} }}\n"
        "FORM.each { |name, value| Object.send(:define_method, name) { value } }\n"
        "def context; OpenStruct.new(FORM); end\n"
    )
    return subprocess.run([_erb(), "-T", "-", "-r", str(context), str(template)],
                          capture_output=True, text=True, timeout=60)


def rendered(template: Path, form: dict, tmp_path: Path) -> str:
    r = render(template, form, tmp_path)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_app_yaml_is_an_ood_batch_connect_app():
    manifest = yaml.safe_load((APP / "manifest.yml").read_text())
    assert manifest["role"] == "batch_connect" and manifest["category"] == "Interactive Apps"
    form = yaml.safe_load((APP / "form.yml").read_text())
    assert form["cluster"]
    assert set(form["attributes"]) <= set(form["form"]), "every attribute is listed in form:"
    for name in ("bc_queue", "bc_num_hours", "num_cores", "num_gpus", "horovod_ranks", "tfxr_home"):
        assert name in form["form"]
    for name in ("num_cores", "num_gpus", "horovod_ranks", "memory_gb"):
        field = form["attributes"][name]
        assert field["widget"] == "number_field" and field["min"] <= field["value"] <= field["max"]
    assert set(SAMPLE_FORM) == set(form["form"]), "the test's sample covers the whole form"
    assert (APP / "view.html.erb").exists()


def test_submit_renders_the_slurm_request(tmp_path):
    submit = yaml.safe_load(rendered(APP / "submit.yml.erb", SAMPLE_FORM, tmp_path))
    assert submit["batch_connect"]["template"] == "basic"
    assert submit["script"]["native"] == ["--nodes=1", "--ntasks=4", "--cpus-per-task=2", "--mem=32G"]
    with_gpus = yaml.safe_load(rendered(APP / "submit.yml.erb", {**SAMPLE_FORM, "num_gpus": "4"}, tmp_path))
    assert "--gres=gpu:4" in with_gpus["script"]["native"]
    assert submit["batch_connect"]["conn_params"] == ["tfxr_np"]


def test_view_logs_in_through_the_ood_proxy(tmp_path):
    view = rendered(APP / "view.html.erb", {"host": "node042", "port": "8123", "password": "pw16",
                                            "tfxr_np": "4"}, tmp_path)
    assert 'action="/node/node042/8123/login"' in view and 'value="pw16"' in view and "4 Horovod ranks" in view


@pytest.mark.parametrize("change, message", [
    ({"horovod_ranks": "9"}, "Horovod ranks (9) exceed the CPU cores (8)"),
    ({"num_gpus": "2"}, "Horovod ranks (4) exceed the GPUs (2)"),
    ({"horovod_ranks": "0"}, "Horovod ranks must be at least 1"),
])
def test_submit_rejects_impossible_requests(tmp_path, change, message):
    r = render(APP / "submit.yml.erb", {**SAMPLE_FORM, **change}, tmp_path)
    assert r.returncode != 0 and message in r.stderr


def _checkout(tmp_path: Path) -> Path:
    """A tfxr checkout as a user has it: the Makefile and a .venv (the test's venv)."""
    home = tmp_path / "tfxr checkout"  # a space, as home directories sometimes have
    home.mkdir()
    (home / "Makefile").symlink_to(REPO / "Makefile")
    (home / ".venv").symlink_to(VENV)
    return home


def _fake_jupyter_lab(bin_dir: Path, record: Path) -> None:
    bin_dir.mkdir()
    fake = bin_dir / "jupyter-lab"
    fake.write_text("#!/usr/bin/env bash\n"
                    f"python3 -c 'import json, os, sys; json.dump({{\"argv\": sys.argv[1:], \"cwd\": os.getcwd(), "
                    f"\"env\": dict(os.environ)}}, open(\"{record}\", \"w\"))' \"$@\"\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    (bin_dir / "jupyter").write_text('#!/usr/bin/env bash\nsub=$1; shift; exec "jupyter-$sub" "$@"\n')
    (bin_dir / "jupyter").chmod(0o755)


def run_session(tmp_path: Path, form: dict, then: str = ""):
    """Render before.sh and script.sh from ``form`` into ``tmp_path/session`` (OOD's staged
    copy of template/), then run them as OOD's job script does (define host and its helpers,
    source before.sh, fork script.sh; ``then``: more shell after it) against a stand-in
    jupyter-lab.  (completed process, the call jupyter-lab recorded, session folder, env)."""
    session = tmp_path / "session"
    session.mkdir()
    for name in ("before.sh", "script.sh"):
        (session / name).write_text(rendered(APP / "template" / f"{name}.erb", form, tmp_path))
        subprocess.run(["bash", "-n", str(session / name)], check=True)
    record = tmp_path / "jupyter-lab-call.json"
    _fake_jupyter_lab(tmp_path / "bin", record)
    job = ('host=node042; find_port() { echo 8123; }; create_passwd() { echo s3cr3tpassw0rd16; }; '
           'source ./before.sh && bash ./script.sh' + (f" && {then}" if then else ""))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "TFXR_"))}
    env["PATH"] = f"{tmp_path / 'bin'}:{env['PATH']}"
    r = subprocess.run(["bash", "-c", job], cwd=session, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r, json.loads(record.read_text()), session, env


def test_session_starts_jupyterlab_with_the_tfxr_kernel(tmp_path):
    home = _checkout(tmp_path)
    form = {**SAMPLE_FORM, "tfxr_home": str(home), "working_dir": str(tmp_path)}
    r, call, session, env = run_session(tmp_path, form, 'echo "conn: $host $port $password $tfxr_np"')
    assert "conn: node042 8123 s3cr3tpassw0rd16 4" in r.stdout
    config = session / "jupyter_server_config.py"
    assert call["argv"] == [f"--config={config}", "--ServerApp.shutdown_no_activity_timeout=3600"]
    assert call["cwd"] == str(tmp_path)
    assert call["env"]["TFXR_NP"] == "4" and call["env"]["SITE_MODULE_LOADED"] == "1"
    text = config.read_text()
    assert "c.MultiKernelManager.default_kernel_name = 'tfxr'" in text
    assert "c.ServerApp.port = 8123" in text and "c.ServerApp.base_url = '/node/node042/8123/'" in text
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    # The server the session starts sees a kernel "tfxr" running the checkout's venv.
    specs = subprocess.run([str(VENV / "bin" / "jupyter"), "kernelspec", "list", "--json"],
                           env={**env, "JUPYTER_PATH": call["env"]["JUPYTER_PATH"]},
                           capture_output=True, text=True, check=True)
    tfxr_spec = json.loads(specs.stdout)["kernelspecs"]["tfxr"]
    assert tfxr_spec["resource_dir"].startswith(str(session))
    assert tfxr_spec["spec"]["argv"][0] == str(home / ".venv" / "bin" / "python")
    assert "ipykernel_launcher" in tfxr_spec["spec"]["argv"]


def test_session_without_a_tfxr_environment_fails_clearly(tmp_path):
    form = {**SAMPLE_FORM, "tfxr_home": str(tmp_path / "nowhere")}
    (tmp_path / "before.sh").write_text(rendered(APP / "template" / "before.sh.erb", form, tmp_path))
    r = subprocess.run(["bash", "-c", "host=n; source ./before.sh"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2
    assert f"no Python environment at {tmp_path / 'nowhere'}/.venv" in r.stderr
