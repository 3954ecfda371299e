"""Tests for the shell tooling: download_dataset.sh, tfrecords/*.sh, job_submissions/slurm/*.sh.

Downloads go through an HTTP server on 127.0.0.1 that each test starts. Nothing here
uses the outside network. Training itself is not run: the Slurm scripts are checked
with DRY_RUN=1, and their local mpirun path with a stand-in "python" that records its
arguments.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.data.test_extract import make_tar

REPO = Path(__file__).resolve().parents[1]
DOWNLOAD = REPO / "download_dataset.sh"
URL_TABLE = REPO / "data_urls.tsv"
EXTRACT = REPO / "tfrecords" / "extract_images.sh"
WRITE = REPO / "tfrecords" / "write_tfrecords.sh"
SLURM_DIR = REPO / "job_submissions" / "slurm"
# Batch script -> (nodes, GPUs per node) its #SBATCH header asks for.
BATCH_SCRIPTS = {
    "train_1gpu.sh": (1, 1),
    "train_1node.sh": (1, 4),
    "train_multinode.sh": (2, 4),
    "train_cpu_node.sh": (1, 32),     # ranks = cores, no GPU
}
CPU_SCRIPTS = {"train_cpu_node.sh"}
DETECTOR_SCRIPT = "train_detector.sh"   # the box detector (tfxr.detect train), 1 node x 4 GPUs
CHEXNET_CONFIG = REPO / "configs" / "chexnet_nih.yaml"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
needs_wget = pytest.mark.skipif(shutil.which("wget") is None, reason="wget is not installed")


# Variables the scripts read: a test sets the ones it wants and nothing leaks in from
# the environment pytest runs in (e.g. a CI job that itself runs under Slurm).
_SCRIPT_VARS = {
    "DRY_RUN", "NP", "DATA_DIR", "OUT_DIR", "PYTHON", "MODEL", "EPOCHS", "BATCH_SIZE",
    "EXTRA_ARGS", "LAUNCHER", "MPIRUN", "MPIRUN_FLAGS", "IMAGE_SIZE", "SHARDS", "FORMAT",
    "ARCHIVE_GLOB", "NCCL_DEBUG", "DATA_KIND", "CONFIG",
}
_PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"}


def clean_env(**extra: object) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLURM_", "TFXR_", "HOROVOD_", "UCX_", "OMPI_MCA_"))
        and k not in _SCRIPT_VARS
        and k not in _PROXY_VARS
    }
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run(cmd, env=None, cwd=None, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(c) for c in cmd], env=env or clean_env(), cwd=cwd, capture_output=True,
        text=True, timeout=timeout,
    )


def out_of(proc: subprocess.CompletedProcess) -> str:
    return f"rc={proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_exe(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


# --------------------------------------------------------------------- syntax


def _all_shell_scripts() -> list[Path]:
    found = []
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in {"node_modules", "runs", "build"}]
        found += [Path(root) / f for f in files if f.endswith(".sh")]
    return sorted(found)


def test_the_expected_scripts_exist():
    names = {p.relative_to(REPO).as_posix() for p in _all_shell_scripts()}
    expected = {
        "download_dataset.sh", "tfrecords/extract_images.sh", "tfrecords/write_tfrecords.sh",
        "job_submissions/slurm/common.sh", *(f"job_submissions/slurm/{s}" for s in BATCH_SCRIPTS),
    }
    assert expected <= names
    assert (SLURM_DIR / "README.md").is_file()
    assert URL_TABLE.is_file()


@pytest.mark.parametrize("script", _all_shell_scripts(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_bash_syntax(script):
    proc = run(["bash", "-n", script])
    assert proc.returncode == 0, out_of(proc)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck_is_clean():
    scripts = [DOWNLOAD, EXTRACT, WRITE, *sorted(SLURM_DIR.glob("*.sh"))]
    proc = run(["shellcheck", "-x", "--severity=warning", *scripts], cwd=REPO)
    assert proc.returncode == 0, out_of(proc)


# --------------------------------------------------------------------- download: table + dry run

NIH_FILES = [f"images_{i:03d}.tar.gz" for i in range(1, 13)] + [
    "Data_Entry_2017_v2020.csv", "BBox_List_2017.csv", "train_val_list.txt", "test_list.txt",
]
EXPECTED_FILES = {
    "nih": NIH_FILES,
    "montgomery": ["NLM-MontgomeryCXRSet.zip"],
    "shenzhen": ["ChinaSet_AllFiles.zip"],
    "pneumoniamnist": ["pneumoniamnist.npz"],
    "chestmnist": ["chestmnist.npz"],
}
# Published checksums, pinned so that an edit of the table is a visible change.
PUBLISHED = {
    ("nih", "images_001.tar.gz"): ("md5", "fe8ed0a6961412fddcbb3603c11b3698"),
    ("nih", "images_012.tar.gz"): ("md5", "dc9fda1757c2de0032b63347a7d2895c"),
    ("pneumoniamnist", "pneumoniamnist.npz"): ("md5", "28209eda62fecd6e6a2d98b1501bb15f"),
    ("chestmnist", "chestmnist.npz"): ("md5", "02c8a6516a18b556561a56cbdd36c4a8"),
}


def read_table() -> list[list[str]]:
    rows = []
    for line in URL_TABLE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            rows.append(line.split("\t"))
    return rows


def test_url_table_is_well_formed():
    rows = read_table()
    keys = set()
    for row in rows:
        assert len(row) in (5, 6), row
        ds, name, url, algo, checksum = row[:5]
        assert all(field for field in row), f"empty field in {row}"
        keys.add((ds, name))
        for u in url.split("|"):
            assert u.startswith("https://"), u
        if algo == "md5":
            assert re.fullmatch(r"[0-9a-f]{32}", checksum), row
        elif algo == "sha256":
            assert re.fullmatch(r"[0-9a-f]{64}", checksum), row
        else:
            assert (algo, checksum) == ("none", "none"), row
    assert keys == {(ds, f) for ds, files in EXPECTED_FILES.items() for f in files}
    table = {(r[0], r[1]): (r[3], r[4]) for r in rows}
    for key, value in PUBLISHED.items():
        assert table[key] == value
    # Every NIH archive has NIH's published MD5 (FAQ_CHESTXRAY.pdf, Q07).
    assert all(table[("nih", f)][0] == "md5" for f in NIH_FILES[:12])


@pytest.fixture
def no_network_tools(tmp_path):
    """A PATH entry whose curl and wget only leave a trace: the dry run must not call them."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    trace = tmp_path / "network-was-used"
    for tool in ("curl", "wget"):
        write_exe(bin_dir / tool, f'#!/bin/sh\necho "{tool} $*" >> "{trace}"\nexit 99\n')
    return bin_dir, trace


def listed_files(stdout: str) -> list[str]:
    return re.findall(r"^([A-Za-z0-9_.-]+/[A-Za-z0-9_.+-]+)$", stdout, flags=re.M)


@pytest.mark.parametrize("dataset", sorted(EXPECTED_FILES))
def test_dry_run_lists_the_files_and_touches_nothing(dataset, tmp_path, no_network_tools):
    bin_dir, trace = no_network_tools
    dest = tmp_path / "dest"
    env = clean_env(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    proc = run([DOWNLOAD, "--dry-run", "--dest", dest, dataset], env=env)
    assert proc.returncode == 0, out_of(proc)
    assert listed_files(proc.stdout) == [f"{dataset}/{f}" for f in EXPECTED_FILES[dataset]]
    for row in read_table():
        if row[0] == dataset:
            for url in row[2].split("|"):
                assert url in proc.stdout
            assert str(dest / dataset / row[1]) in proc.stdout
            if row[3] != "none":
                assert f"{row[3]} {row[4]}" in proc.stdout
    assert not dest.exists()
    assert not trace.exists(), trace.read_text()


def test_dry_run_all_and_sizes(tmp_path, no_network_tools):
    bin_dir, trace = no_network_tools
    env = clean_env(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    proc = run([DOWNLOAD, "-n", "--dest", tmp_path / "d", "all"], env=env)
    assert proc.returncode == 0, out_of(proc)
    assert len(listed_files(proc.stdout)) == sum(len(v) for v in EXPECTED_FILES.values())
    assert "2008470987 bytes" in proc.stdout  # images_001.tar.gz
    assert not (tmp_path / "d").exists() and not trace.exists()


def test_dry_run_uses_the_mirror(tmp_path, no_network_tools):
    bin_dir, _ = no_network_tools
    env = clean_env(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                    TFXR_DOWNLOAD_MIRROR="http://127.0.0.1:9/m/")
    proc = run([DOWNLOAD, "--dry-run", "--dest", tmp_path / "d", "chestmnist"], env=env)
    assert proc.returncode == 0, out_of(proc)
    assert "http://127.0.0.1:9/m/chestmnist/chestmnist.npz" in proc.stdout
    assert "zenodo.org" not in proc.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["nosuchset"], "unknown dataset 'nosuchset'"),
        (["nih", "nosuchset"], "unknown dataset 'nosuchset'"),
        ([], "no dataset given"),
        (["--frobnicate", "nih"], "unknown option: --frobnicate"),
        (["--dest"], "--dest needs a directory"),
    ],
)
def test_bad_usage_exits_2_with_usage(args, message, tmp_path):
    proc = run([DOWNLOAD, *args], cwd=tmp_path)
    assert proc.returncode == 2, out_of(proc)
    assert message in proc.stderr
    assert "Usage:" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_help():
    proc = run([DOWNLOAD, "--help"])
    assert proc.returncode == 0, out_of(proc)
    for word in ("--dry-run", "--dest", "SHA256SUMS.local", "TFXR_DOWNLOAD_MIRROR", "TFXR_CHECKSUM_FILE",
                 "nih", "montgomery", "shenzhen", "pneumoniamnist", "chestmnist", ".bad", ".part"):
        assert word in proc.stdout


def test_a_malformed_checksum_file_is_reported(tmp_path):
    bad = tmp_path / "sums.tsv"
    bad.write_text("fakeset\ta.bin\t-\tmd5\tnot-a-checksum\n")
    proc = run([DOWNLOAD, "--dry-run", "--dest", tmp_path / "d", "fakeset"],
               env=clean_env(TFXR_CHECKSUM_FILE=bad))
    assert proc.returncode == 1, out_of(proc)
    assert f"{bad}:1" in proc.stderr and "MD5" in proc.stderr


# --------------------------------------------------------------------- download: real, local HTTP


class _MirrorHandler(http.server.SimpleHTTPRequestHandler):
    """Static files, with single-range GET support (python's own server has none)."""

    support_range = True
    requests: list = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def send_head(self):
        self.requests.append((self.path, self.headers.get("Range")))
        rng = self.headers.get("Range")
        path = self.translate_path(self.path)
        if not (self.support_range and rng and os.path.isfile(path)):
            return super().send_head()
        m = re.fullmatch(r"bytes=(\d+)-", rng.strip())
        if not m:
            return super().send_head()
        size = os.path.getsize(path)
        start = int(m.group(1))
        if start >= size:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        f = open(path, "rb")  # noqa: SIM115 - closed by the base class
        f.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.send_header("Content-Length", str(size - start))
        self.end_headers()
        return f


class Mirror:
    def __init__(self, root: Path, support_range: bool = True):
        self.root = root
        self.handler = type("Handler", (_MirrorHandler,), {"support_range": support_range, "requests": []})
        self.server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(self.handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def requests(self) -> list:
        return self.handler.requests

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


FAKE_A = os.urandom(200_000)
FAKE_B = os.urandom(50_001)


@pytest.fixture
def mirror_root(tmp_path):
    root = tmp_path / "mirror"
    (root / "fakeset").mkdir(parents=True)
    (root / "fakeset" / "a.bin").write_bytes(FAKE_A)
    (root / "fakeset" / "b.bin").write_bytes(FAKE_B)
    return root


@pytest.fixture
def mirror(mirror_root):
    m = Mirror(mirror_root)
    yield m
    m.close()


@pytest.fixture
def plain_mirror(mirror_root):
    m = Mirror(mirror_root, support_range=False)
    yield m
    m.close()


def checksum_file(tmp_path: Path, rows: list[tuple[str, ...]]) -> Path:
    path = tmp_path / "checksums.tsv"
    path.write_text("# test table\n" + "".join("\t".join(r) + "\n" for r in rows))
    return path


def good_sums(tmp_path: Path) -> Path:
    return checksum_file(tmp_path, [
        ("fakeset", "a.bin", "-", "md5", md5(FAKE_A), str(len(FAKE_A))),
        ("fakeset", "b.bin", "-", "sha256", sha256(FAKE_B), "-"),
    ])


def download(dest: Path, sums: Path, mirror_url: str | None, *datasets: str, **env) -> subprocess.CompletedProcess:
    e = clean_env(TFXR_CHECKSUM_FILE=sums, TFXR_DOWNLOAD_RETRIES=0, **env)
    if mirror_url:
        e["TFXR_DOWNLOAD_MIRROR"] = mirror_url
    return run([DOWNLOAD, "--dest", dest, *(datasets or ("fakeset",))], env=e)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.suffix in (".part", ".bad"))


@needs_curl
def test_download_verifies_then_skips(tmp_path, mirror):
    dest = tmp_path / "dest"
    sums = good_sums(tmp_path)
    proc = download(dest, sums, mirror.url)
    assert proc.returncode == 0, out_of(proc)
    assert (dest / "fakeset" / "a.bin").read_bytes() == FAKE_A
    assert (dest / "fakeset" / "b.bin").read_bytes() == FAKE_B
    assert leftovers(dest / "fakeset") == []
    assert "md5 verified" in proc.stdout and "sha256 verified" in proc.stdout
    assert not (dest / "SHA256SUMS.local").exists()  # both have published checksums
    served = len(mirror.requests)
    assert served == 2

    again = download(dest, sums, mirror.url)
    assert again.returncode == 0, out_of(again)
    assert again.stdout.count("[skip]") == 2
    assert len(mirror.requests) == served  # nothing fetched the second time


@needs_curl
def test_download_checksum_mismatch_keeps_bad_file(tmp_path, mirror):
    dest = tmp_path / "dest"
    wrong = "0" * 32
    sums = checksum_file(tmp_path, [
        ("fakeset", "a.bin", "-", "md5", wrong),
        ("fakeset", "b.bin", "-", "sha256", sha256(FAKE_B)),
    ])
    proc = download(dest, sums, mirror.url)
    assert proc.returncode == 1, out_of(proc)
    assert "checksum mismatch" in proc.stderr
    assert str(dest / "fakeset" / "a.bin") in proc.stderr
    assert wrong in proc.stderr and md5(FAKE_A) in proc.stderr
    assert not (dest / "fakeset" / "a.bin").exists()
    assert (dest / "fakeset" / "a.bin.bad").read_bytes() == FAKE_A
    assert not (dest / "fakeset" / "a.bin.part").exists()
    # The other file is still fetched and verified.
    assert (dest / "fakeset" / "b.bin").read_bytes() == FAKE_B


@needs_curl
def test_download_resumes_a_partial_file(tmp_path, mirror):
    dest = tmp_path / "dest"
    (dest / "fakeset").mkdir(parents=True)
    half = len(FAKE_A) // 2
    (dest / "fakeset" / "a.bin.part").write_bytes(FAKE_A[:half])
    proc = download(dest, good_sums(tmp_path), mirror.url)
    assert proc.returncode == 0, out_of(proc)
    assert (dest / "fakeset" / "a.bin").read_bytes() == FAKE_A
    assert ("/fakeset/a.bin", f"bytes={half}-") in mirror.requests
    assert f"resuming at {half} bytes" in proc.stdout
    assert leftovers(dest / "fakeset") == []


@needs_curl
def test_download_of_a_complete_part_file(tmp_path, mirror):
    """A .part that already holds every byte (the server answers 416) is verified and kept."""
    dest = tmp_path / "dest"
    (dest / "fakeset").mkdir(parents=True)
    (dest / "fakeset" / "a.bin.part").write_bytes(FAKE_A)
    proc = download(dest, good_sums(tmp_path), mirror.url)
    assert proc.returncode == 0, out_of(proc)
    assert (dest / "fakeset" / "a.bin").read_bytes() == FAKE_A


@needs_curl
def test_download_restarts_when_the_server_cannot_resume(tmp_path, plain_mirror):
    dest = tmp_path / "dest"
    (dest / "fakeset").mkdir(parents=True)
    (dest / "fakeset" / "a.bin.part").write_bytes(FAKE_A[:1000])
    proc = download(dest, good_sums(tmp_path), plain_mirror.url)
    assert proc.returncode == 0, out_of(proc)
    assert (dest / "fakeset" / "a.bin").read_bytes() == FAKE_A
    assert "starting it again" in proc.stderr


@needs_curl
def test_download_without_published_checksum_records_sha256(tmp_path, mirror, mirror_root):
    data = b"Image Index,Finding Labels\n00000001_000.png,Cardiomegaly\n"
    (mirror_root / "fakeset" / "labels.csv").write_bytes(data)
    dest = tmp_path / "dest"
    sums = checksum_file(tmp_path, [("fakeset", "labels.csv", "-", "none", "none")])
    proc = download(dest, sums, mirror.url)
    assert proc.returncode == 0, out_of(proc)
    record = (dest / "SHA256SUMS.local").read_text()
    assert record == f"{sha256(data)}  fakeset/labels.csv\n"
    # sha256sum -c understands the record.
    if shutil.which("sha256sum"):
        assert run(["sha256sum", "-c", "SHA256SUMS.local"], cwd=dest).returncode == 0

    again = download(dest, sums, mirror.url)
    assert again.returncode == 0 and "[skip]" in again.stdout, out_of(again)

    (dest / "fakeset" / "labels.csv").write_bytes(b"changed")
    third = download(dest, sums, mirror.url)
    assert third.returncode == 1, out_of(third)
    assert "SHA256SUMS.local" in third.stderr and sha256(data) in third.stderr
    assert (dest / "fakeset" / "labels.csv.bad").read_bytes() == b"changed"

    # Fetched anew, the file matches the record again.
    (dest / "fakeset" / "labels.csv.bad").unlink()
    fourth = download(dest, sums, mirror.url)
    assert fourth.returncode == 0, out_of(fourth)
    assert (dest / "fakeset" / "labels.csv").read_bytes() == data


@needs_curl
def test_download_rejects_an_html_page(tmp_path, mirror, mirror_root):
    (mirror_root / "fakeset" / "list.txt").write_text("<!DOCTYPE html>\n<html><body>Sign in</body></html>\n")
    dest = tmp_path / "dest"
    sums = checksum_file(tmp_path, [("fakeset", "list.txt", "-", "none", "none")])
    proc = download(dest, sums, mirror.url)
    assert proc.returncode == 1, out_of(proc)
    assert "HTML" in proc.stderr
    assert not (dest / "fakeset" / "list.txt").exists()
    assert not (dest / "SHA256SUMS.local").exists()


@needs_curl
def test_download_tries_the_next_url(tmp_path, mirror):
    """Without a mirror the table's URLs are used, in order."""
    dest = tmp_path / "dest"
    urls = f"{mirror.url}/gone/a.bin|{mirror.url}/fakeset/a.bin"
    sums = checksum_file(tmp_path, [("other", "a.bin", urls, "md5", md5(FAKE_A))])
    proc = download(dest, sums, None, "other")
    assert proc.returncode == 0, out_of(proc)
    assert (dest / "other" / "a.bin").read_bytes() == FAKE_A
    assert [p for p, _ in mirror.requests] == ["/gone/a.bin", "/fakeset/a.bin"]


@needs_curl
def test_download_failure_is_reported(tmp_path, mirror):
    dest = tmp_path / "dest"
    sums = checksum_file(tmp_path, [("fakeset", "missing.bin", "-", "md5", "0" * 32)])
    proc = download(dest, sums, mirror.url)
    assert proc.returncode == 1, out_of(proc)
    assert "could not download fakeset/missing.bin" in proc.stderr
    assert not (dest / "fakeset" / "missing.bin").exists()


@needs_wget
def test_download_with_wget_resumes_and_verifies(tmp_path, mirror):
    dest = tmp_path / "dest"
    (dest / "fakeset").mkdir(parents=True)
    half = len(FAKE_B) // 2
    (dest / "fakeset" / "b.bin.part").write_bytes(FAKE_B[:half])
    proc = download(dest, good_sums(tmp_path), mirror.url, TFXR_DOWNLOADER="wget")
    assert proc.returncode == 0, out_of(proc)
    assert "with wget" in proc.stdout
    assert (dest / "fakeset" / "a.bin").read_bytes() == FAKE_A
    assert (dest / "fakeset" / "b.bin").read_bytes() == FAKE_B
    assert ("/fakeset/b.bin", f"bytes={half}-") in mirror.requests


def test_download_without_curl_or_wget_fails_clearly(tmp_path):
    """A PATH with every usual tool except curl and wget."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            src = os.path.join(directory, name)
            if name in ("curl", "wget") or (bin_dir / name).exists() or not os.access(src, os.X_OK):
                continue
            (bin_dir / name).symlink_to(src)
    sums = good_sums(tmp_path)
    proc = run(["bash", DOWNLOAD, "--dest", tmp_path / "d", "fakeset"],
               env=clean_env(PATH=bin_dir, TFXR_CHECKSUM_FILE=sums, TFXR_DOWNLOAD_MIRROR="http://127.0.0.1:9"))
    assert proc.returncode == 1, out_of(proc)
    assert "neither curl nor wget" in proc.stderr


# --------------------------------------------------------------------- extract_images.sh


def nih_like(path: Path, first: int, count: int) -> Path:
    names = [f"images/{i:08d}_000.png" for i in range(first, first + count)]
    return make_tar(path, [("d", "images/")] + [("f", n) for n in names])


def extract(*args, cwd=None) -> subprocess.CompletedProcess:
    """Run extract_images.sh with this interpreter (python -m tfxr.data.extract needs Python >= 3.11.4)."""
    return run([EXTRACT, *args], env=clean_env(PYTHON=sys.executable), cwd=cwd)


def snapshot(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def test_extract_a_directory_of_archives_then_skip(tmp_path):
    archives = tmp_path / "nih"
    nih_like(archives / "images_001.tar.gz", 1, 3)
    nih_like(archives / "images_002.tar.gz", 4, 2)
    (archives / "Data_Entry_2017_v2020.csv").write_text("x\n")  # not an archive: ignored
    out = tmp_path / "out"
    proc = extract(archives, out)
    assert proc.returncode == 0, out_of(proc)
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"{i:08d}_000.png" for i in range(1, 6)]
    assert (out / "images" / "00000001_000.png").read_bytes() == b"data of images/00000001_000.png"
    assert len(list(out.glob(".extracted-images_001.tar.gz-*"))) == 1
    assert len(list(out.glob(".extracted-images_002.tar.gz-*"))) == 1
    assert "[1/2] images_001.tar.gz" in proc.stdout and "[2/2] images_002.tar.gz" in proc.stdout

    again = extract(archives, out)
    assert again.returncode == 0, out_of(again)
    assert again.stdout.count("already extracted") == 2


def test_extract_a_list_of_archives_into_the_download_dir(tmp_path):
    """download_dataset.sh nih + extract_images.sh DIR DIR gives the layout write_tfrecords.sh nih wants."""
    nih = tmp_path / "nih"
    a = nih_like(nih / "images_003.tar.gz", 1, 1)
    b = nih_like(nih / "images_004.tar.gz", 2, 1)
    proc = extract(a, b, nih)
    assert proc.returncode == 0, out_of(proc)
    assert (nih / "images" / "00000001_000.png").is_file()
    assert (nih / "images" / "00000002_000.png").is_file()


def test_extract_allows_links_that_stay_inside(tmp_path):
    archive = make_tar(tmp_path / "a" / "images_001.tar.gz", [
        ("f", "images/a.png"), ("l", "images/b.png", "a.png"), ("l", "latest", "images/a.png"),
        ("h", "images/c.png", "images/a.png"),
    ])
    out = tmp_path / "out"
    proc = extract(archive, out)
    assert proc.returncode == 0, out_of(proc)
    assert (out / "images" / "b.png").read_bytes() == (out / "images" / "a.png").read_bytes()
    assert (out / "latest").is_symlink()


BAD_ARCHIVES = {
    "dotdot": ([("f", "images/ok.png"), ("f", "../evil")], "../evil"),
    "dotdot_inside": ([("f", "images/../../evil")], "images/../../evil"),
    "absolute": ([("f", "{ABS}")], "{ABS}"),
    "symlink_out": ([("l", "images/link", "../../outside"), ("f", "images/link/evil.txt")], "images/link"),
    "symlink_absolute": ([("l", "images/etc", "/etc")], "images/etc"),
    "symlink_chain": ([("l", "images/l", "."), ("l", "images/l/l2", ".."), ("f", "images/l/l2/x")], "images/l/l2"),
    "through_symlink": ([("l", "images/up", ".."), ("f", "images/up/evil")], "images/up/evil"),
    "hardlink_absolute": ([("h", "images/hl", "/etc/passwd")], "/etc/passwd"),
    "hardlink_dotdot": ([("h", "images/hl", "../secret")], "../secret"),
    "fifo": ([("p", "images/pipe")], "images/pipe"),
}


@pytest.mark.parametrize("case", sorted(BAD_ARCHIVES))
def test_extract_refuses_escaping_entries(case, tmp_path):
    entries, bad_entry = BAD_ARCHIVES[case]
    abs_target = str(tmp_path / "abs_evil")
    entries = [tuple(str(x).replace("{ABS}", abs_target) for x in e) for e in entries]
    bad_entry = bad_entry.replace("{ABS}", abs_target)
    archive = make_tar(tmp_path / "archives" / f"images_{case}.tar.gz", entries)
    out = tmp_path / "work" / "out"
    before = snapshot(tmp_path)
    proc = extract(archive, out)
    assert proc.returncode == 3, out_of(proc)
    assert str(archive) in proc.stderr
    assert bad_entry in proc.stderr
    assert "refusing" in proc.stderr
    # Nothing was written: not outside OUT_DIR, and not inside it either.
    assert snapshot(tmp_path) - before == {"work", "work/out"}
    for outside in ("abs_evil", "evil", "work/evil", "outside", "secret"):
        assert not (tmp_path / outside).exists()


def test_extract_processes_the_good_archives_and_fails_for_a_bad_one(tmp_path):
    archives = tmp_path / "nih"
    nih_like(archives / "images_001.tar.gz", 1, 1)
    make_tar(archives / "images_002.tar.gz", [("f", "../evil")])
    nih_like(archives / "images_003.tar.gz", 3, 1)
    out = tmp_path / "out"
    proc = extract(archives, out)
    assert proc.returncode == 3, out_of(proc)
    assert "images_002.tar.gz" in proc.stderr
    assert (out / "images" / "00000001_000.png").is_file()
    assert (out / "images" / "00000003_000.png").is_file()
    assert not list(out.glob(".extracted-images_002.tar.gz-*"))
    assert not (tmp_path / "evil").exists()


def test_extract_reports_a_damaged_archive(tmp_path):
    good = nih_like(tmp_path / "x" / "images_001.tar.gz", 1, 50)
    damaged = tmp_path / "images_009.tar.gz"
    damaged.write_bytes(good.read_bytes()[:200])
    proc = extract(damaged, tmp_path / "out")
    assert proc.returncode == 3, out_of(proc)
    assert "cannot list" in proc.stderr and "images_009.tar.gz" in proc.stderr
    assert not list((tmp_path / "out").glob(".extracted-images_009.tar.gz-*"))


@pytest.mark.parametrize("args, code", [([], 2), (["only-one"], 2), (["/no/such/dir", "out"], 2)])
def test_extract_usage(args, code, tmp_path):
    proc = extract(*args, cwd=tmp_path)
    assert proc.returncode == code, out_of(proc)


# --------------------------------------------------------------------- write_tfrecords.sh


def argv_of(proc: subprocess.CompletedProcess) -> list[str]:
    assert proc.returncode == 0, out_of(proc)
    return shlex.split(proc.stdout)


def value_after(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def pairs(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


@pytest.fixture
def nih_raw(tmp_path):
    raw = tmp_path / "nih"
    (raw / "images").mkdir(parents=True)
    for name in ("Data_Entry_2017_v2020.csv", "BBox_List_2017.csv", "train_val_list.txt", "test_list.txt"):
        (raw / name).write_text("x\n")
    return raw


def test_write_nih_preset(nih_raw, tmp_path):
    out = tmp_path / "tfrec"
    argv = argv_of(run([WRITE, "nih", nih_raw, out, "--workers", "4"], env=clean_env(DRY_RUN=1)))
    assert argv[:4] == ["python", "-m", "tfxr.tfrecords", "write"]
    assert value_after(argv, "--source") == "nih"
    assert value_after(argv, "--images") == f"{nih_raw}/images"
    assert value_after(argv, "--labels") == f"{nih_raw}/Data_Entry_2017_v2020.csv"
    assert value_after(argv, "--bbox") == f"{nih_raw}/BBox_List_2017.csv"
    assert pairs(argv, "--split-list") == [f"trainval={nih_raw}/train_val_list.txt", f"test={nih_raw}/test_list.txt"]
    assert value_after(argv, "--out") == str(out)
    assert value_after(argv, "--image-size") == "224"
    assert value_after(argv, "--shards") == "16"
    assert argv[-2:] == ["--workers", "4"]
    assert "mpirun" not in argv


def test_write_nih_optional_files(nih_raw, tmp_path):
    (nih_raw / "BBox_List_2017.csv").unlink()
    (nih_raw / "test_list.txt").unlink()
    (nih_raw / "Data_Entry_2017_v2020.csv").rename(nih_raw / "Data_Entry_2017.csv")
    proc = run([WRITE, "nih", nih_raw, tmp_path / "o"], env=clean_env(DRY_RUN=1))
    argv = argv_of(proc)
    assert value_after(argv, "--labels") == f"{nih_raw}/Data_Entry_2017.csv"
    assert "--bbox" not in argv and "--split-list" not in argv
    assert "only one of train_val_list.txt and test_list.txt" in proc.stderr


def test_write_nih_needs_labels_and_images(nih_raw, tmp_path):
    (nih_raw / "Data_Entry_2017_v2020.csv").unlink()
    proc = run([WRITE, "nih", nih_raw, tmp_path / "o"], env=clean_env(DRY_RUN=1))
    assert proc.returncode == 1 and "Data_Entry_2017" in proc.stderr, out_of(proc)
    shutil.rmtree(nih_raw / "images")
    proc = run([WRITE, "nih", nih_raw, tmp_path / "o"], env=clean_env(DRY_RUN=1))
    assert proc.returncode == 1 and "extract_images.sh" in proc.stderr, out_of(proc)


def test_write_under_mpi_goes_through_the_one_mpirun_builder(nih_raw, tmp_path):
    env = clean_env(DRY_RUN=1, NP=2, IMAGE_SIZE=320, SHARDS=64, FORMAT="raw", PYTHON="/opt/venv/bin/python")
    argv = argv_of(run([WRITE, "nih", nih_raw, tmp_path / "o"], env=env))
    assert argv[:8] == ["/opt/venv/bin/python", "-m", "tfxr.distributed", "--np", "2", "--",
                        "tfxr.tfrecords", "write"]
    assert "mpirun" not in argv
    assert value_after(argv, "--image-size") == "320"
    assert "--shards" not in argv  # the converter refuses --shards with --format raw
    assert value_after(argv, "--format") == "raw"


@pytest.mark.parametrize(
    "preset, setup, expected",
    [
        ("tb", lambda d: (d / "images").mkdir(), ["--source", "tb", "--images", "{SRC}/images"]),
        ("tb", lambda d: ((d / "images").mkdir(), (d / "labels.csv").write_text("x")),
         ["--source", "tb", "--images", "{SRC}/images", "--labels", "{SRC}/labels.csv"]),
        ("tb", lambda d: (d / "CXR_png").mkdir(), ["--source", "tb", "--images", "{SRC}/CXR_png"]),
        ("folder", lambda d: None, ["--source", "folder", "--images", "{SRC}"]),
    ],
)
def test_write_directory_presets(preset, setup, expected, tmp_path):
    src = tmp_path / "raw"
    src.mkdir()
    setup(src)
    argv = argv_of(run([WRITE, preset, src, tmp_path / "o"], env=clean_env(DRY_RUN=1)))
    want = [e.replace("{SRC}", str(src)) for e in expected]
    assert argv[4:4 + len(want)] == want


def test_write_npz_and_synthetic_presets(tmp_path):
    npz = tmp_path / "pneumoniamnist.npz"
    npz.write_bytes(b"")
    argv = argv_of(run([WRITE, "npz", npz, tmp_path / "o"], env=clean_env(DRY_RUN=1)))
    assert argv[4:8] == ["--source", "npz", "--npz", str(npz)]
    argv = argv_of(run([WRITE, "synthetic", "64", tmp_path / "o", "--synthetic-task", "tb"],
                       env=clean_env(DRY_RUN=1)))
    assert argv[4:8] == ["--source", "synthetic", "--num-images", "64"]
    assert argv[-2:] == ["--synthetic-task", "tb"]


@pytest.mark.parametrize(
    "args, env, code, message",
    [
        (["bogus", "a", "b"], {}, 2, "unknown preset"),
        (["nih", "x"], {}, 2, "expected a preset"),
        (["synthetic", "many", "o"], {}, 1, "positive number"),
        (["npz", "/no/such.npz", "o"], {}, 1, "no such npz"),
        (["synthetic", "8", "o"], {"NP": "zero"}, 1, "NP must be"),
    ],
)
def test_write_errors(args, env, code, message, tmp_path):
    proc = run([WRITE, *args], env=clean_env(DRY_RUN=1, **env), cwd=tmp_path)
    assert proc.returncode == code, out_of(proc)
    assert message in proc.stderr


def fake_python(tmp_path: Path) -> tuple[Path, Path]:
    """A stand-in interpreter that appends its cwd, PYTHONPATH and arguments to a log."""
    log = tmp_path / "calls.log"
    exe = write_exe(tmp_path / "fakepython", (
        "#!/bin/sh\n"
        f'printf "cwd=%s pythonpath=%s args=%s\\n" "$(pwd)" "$PYTHONPATH" "$*" >> "{log}"\n'
    ))
    return exe, log


def test_write_runs_the_converter(tmp_path):
    exe, log = fake_python(tmp_path)
    proc = run([WRITE, "synthetic", "16", tmp_path / "o"], env=clean_env(PYTHON=exe, SHARDS=2))
    assert proc.returncode == 0, out_of(proc)
    lines = log.read_text().splitlines()
    assert len(lines) == 1
    assert f"args=-m tfxr.tfrecords write --source synthetic --num-images 16 --out {tmp_path}/o" in lines[0]
    assert f"pythonpath={REPO}" in lines[0]


@pytest.mark.mpi
def test_write_runs_the_converter_on_two_ranks(tmp_path):
    """The real converter on two MPI ranks: each rank writes its shards, rank 0 the manifest."""
    out = tmp_path / "o"
    proc = run([WRITE, "synthetic", "12", out, "--quiet"],
               env=clean_env(PYTHON=sys.executable, NP=2, IMAGE_SIZE=32, SHARDS=2), timeout=300)
    assert proc.returncode == 0, out_of(proc)
    assert "tfxr.distributed --np 2" in proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert sum(split["count"] for split in manifest["splits"].values()) == 12


# --------------------------------------------------------------------- Slurm scripts


def data_folder(path: Path, kind: str = "tfrecord") -> Path:
    """A stand-in data directory: the scripts only read the manifest's format."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "manifest.json").write_text(json.dumps({"schema_version": 1, "format": kind}))
    return path


@pytest.fixture
def data_dir(tmp_path):
    return data_folder(tmp_path / "data")


def slurm(script: str | list[str], tmp_path: Path, **env) -> subprocess.CompletedProcess:
    """Run a batch script (or [script, args...]) with bash, outside Slurm unless env says otherwise.

    PYTHON defaults to this interpreter: DRY_RUN=1 asks tfxr's launcher builder for the line."""
    name, *args = [script] if isinstance(script, str) else script
    return run(["bash", SLURM_DIR / name, *args], env=clean_env(**{"PYTHON": sys.executable, **env}), cwd=tmp_path)


def train_args(argv: list[str]) -> list[str]:
    """The tfxr.train arguments of a launch command."""
    return argv[argv.index("tfxr.train") + 1:]


def test_one_script_per_launch_shape():
    assert sorted(p.name for p in SLURM_DIR.glob("*.sh")) == sorted([*BATCH_SCRIPTS, DETECTOR_SCRIPT, "common.sh"])
    bodies = {re.sub(r"^#SBATCH.*\n|^#.*\n|tfxr_(detect_)?main \d+ \d+.*", "", (SLURM_DIR / s).read_text(),
                     flags=re.M) for s in [*BATCH_SCRIPTS, DETECTOR_SCRIPT]}
    assert len(bodies) == 1  # the same few lines that find common.sh; everything else is there


@pytest.mark.parametrize("script", sorted(BATCH_SCRIPTS))
def test_slurm_script_header(script):
    text = (SLURM_DIR / script).read_text()
    nodes, gpus = BATCH_SCRIPTS[script]
    header = dict(re.findall(r"^#SBATCH --([a-z-]+)=(\S+)", text, flags=re.M))
    assert header["nodes"] == str(nodes)
    assert header["ntasks-per-node"] == str(gpus)
    if script in CPU_SCRIPTS:   # one rank per core, bound; no GPU request
        assert "gres" not in header and header["cpus-per-task"] == "1" and header["hint"] == "nomultithread"
    else:
        assert header["gres"] == f"gpu:{gpus}"
    assert header["output"] == "logs/%x-%j.out"
    assert {"job-name", "cpus-per-task", "time"} <= header.keys()
    assert re.search(r"^#\s+module load ", text, flags=re.M)
    assert re.search(rf"^tfxr_main {nodes} {gpus} \"\$@\"", text, flags=re.M)


@pytest.mark.parametrize("script", sorted(BATCH_SCRIPTS))
def test_slurm_dry_run_outside_slurm_trains_chexnet_from_its_config(script, tmp_path, data_dir):
    proc = slurm(script, tmp_path, DRY_RUN=1, NP=2, DATA_DIR=data_dir)
    argv = argv_of(proc)
    assert argv[:3] == ["mpirun", "-np", "2"] and "--oversubscribe" in argv   # the builder's local line
    assert argv[argv.index("tfxr.train") - 2:argv.index("tfxr.train")] == [sys.executable, "-m"]
    args = train_args(argv)
    assert args[:4] == ["--config", str(CHEXNET_CONFIG), "--data", str(data_dir)]
    assert value_after(args, "--out").startswith(f"{REPO}/runs/tfxr-")
    # model, weights, epochs and batch size come from the config alone
    assert not {"--model", "--epochs", "--batch-size", "--weights"} & set(args)
    assert proc.stderr == ""


def test_slurm_detector_script_trains_the_detector(tmp_path, data_dir):
    text = (SLURM_DIR / DETECTOR_SCRIPT).read_text()
    header = dict(re.findall(r"^#SBATCH --([a-z-]+)=(\S+)", text, flags=re.M))
    assert (header["nodes"], header["ntasks-per-node"], header["gres"]) == ("1", "4", "gpu:4")
    assert re.search(r'^tfxr_detect_main 1 4 "\$@"', text, flags=re.M)
    argv = argv_of(slurm([DETECTOR_SCRIPT, "--image-size", "512"], tmp_path, DRY_RUN=1, DATA_DIR=data_dir,
                         EPOCHS=3, BATCH_SIZE=4, EXTRA_ARGS="--backbone s"))
    assert argv[:3] == ["mpirun", "-np", "4"]
    at = argv.index("tfxr.detect")
    assert argv[at - 2:at] == [sys.executable, "-m"] and argv[at + 1] == "train"
    args = argv[at + 2:]
    assert "--config" not in args and value_after(args, "--data") == str(data_dir)
    assert value_after(args, "--out").startswith(f"{REPO}/runs/tfxr-")
    assert args[-8:] == ["--epochs", "3", "--batch-size", "4", "--backbone", "s", "--image-size", "512"]
    # a config file is passed on when given; MODEL (a classifier setting) is refused
    cfg = tmp_path / "det.yaml"
    cfg.write_text("epochs: 2\n")
    args = argv_of(slurm(DETECTOR_SCRIPT, tmp_path, DRY_RUN=1, DATA_DIR=data_dir, CONFIG=cfg))
    assert value_after(args, "--config") == str(cfg)
    proc = slurm(DETECTOR_SCRIPT, tmp_path, DRY_RUN=1, DATA_DIR=data_dir, MODEL="tb_cnn")
    assert proc.returncode == 1 and "MODEL=tb_cnn: train_detector.sh trains the box detector" in proc.stderr


@pytest.mark.parametrize("script", sorted(BATCH_SCRIPTS))
def test_slurm_default_ranks_are_the_gpus_asked_for(script, tmp_path, data_dir):
    nodes, gpus = BATCH_SCRIPTS[script]
    argv = argv_of(slurm(script, tmp_path, DRY_RUN=1, DATA_DIR=data_dir))
    if nodes * gpus == 1:
        assert argv[:3] == [sys.executable, "-m", "tfxr.train"]   # one rank: no launcher
    else:
        assert value_after(argv, "-np") == str(nodes * gpus)


def test_slurm_settings_reach_the_command(tmp_path, data_dir):
    out = tmp_path / "run"
    (tmp_path / "my.yaml").write_text("model: tb_cnn\n")
    argv = argv_of(slurm(["train_1gpu.sh", "--lr", "0.01"], tmp_path, DRY_RUN=1, NP=2, DATA_DIR="data",
                         OUT_DIR=out, CONFIG="my.yaml", MODEL="tb_cnn", EPOCHS=3, BATCH_SIZE=8,
                         EXTRA_ARGS="--seed 7 --mixed-precision"))
    assert argv[0] == "mpirun" and sys.executable in argv
    assert train_args(argv) == ["--config", str(tmp_path / "my.yaml"), "--data", str(data_dir), "--out", str(out),
                                "--model", "tb_cnn", "--weights", "none", "--epochs", "3", "--batch-size", "8",
                                "--seed", "7", "--mixed-precision", "--lr", "0.01"]
    assert not out.exists()  # a dry run creates nothing
    argv = argv_of(slurm("train_1gpu.sh", tmp_path, DRY_RUN=1, DATA_DIR=data_dir, CONFIG="configs/tb_cnn.yaml"))
    assert value_after(argv, "--config") == str(REPO / "configs" / "tb_cnn.yaml")  # else relative to the repo


def test_slurm_data_kind_is_checked_against_the_manifest(tmp_path):
    raw = data_folder(tmp_path / "raw", "raw")
    argv = argv_of(slurm("train_1node.sh", tmp_path, DRY_RUN=1, DATA_DIR=raw, DATA_KIND="raw"))
    assert value_after(argv, "--data") == str(raw)
    proc = slurm("train_1node.sh", tmp_path, DRY_RUN=1, DATA_DIR=raw)
    assert proc.returncode == 1 and "holds 'raw' data but DATA_KIND=tfrecord" in proc.stderr, out_of(proc)
    proc = slurm("train_1node.sh", tmp_path, DRY_RUN=1, DATA_DIR=raw, DATA_KIND="png")
    assert proc.returncode == 1 and "DATA_KIND must be tfrecord or raw, got 'png'" in proc.stderr, out_of(proc)
    (raw / "manifest.json").unlink()
    proc = slurm("train_1node.sh", tmp_path, DRY_RUN=1, DATA_DIR=raw, DATA_KIND="raw")
    assert proc.returncode == 1 and "has no manifest.json" in proc.stderr, out_of(proc)


@pytest.mark.parametrize("script", ["train_1gpu.sh", "train_multinode.sh"])
def test_slurm_needs_data_dir(script, tmp_path):
    proc = slurm(script, tmp_path, DRY_RUN=1, NP=2)
    assert proc.returncode == 1, out_of(proc)
    assert "DATA_DIR is not set" in proc.stderr
    proc = slurm(script, tmp_path, DRY_RUN=1, NP=2, DATA_DIR=tmp_path / "nope")
    assert proc.returncode == 1, out_of(proc)
    assert "is not a directory" in proc.stderr


@pytest.mark.parametrize("env, message", [({"EPOCHS": "ten"}, "EPOCHS"), ({"BATCH_SIZE": "0"}, "BATCH_SIZE"),
                                          ({"NP": "0"}, "NP"), ({"CONFIG": "nope.yaml"}, "CONFIG=nope.yaml"),
                                          ({"LAUNCHER": "ssh", "SLURM_JOB_ID": "1"}, "LAUNCHER")])
def test_slurm_rejects_bad_settings(env, message, tmp_path, data_dir):
    proc = slurm("train_1gpu.sh", tmp_path, DRY_RUN=1, DATA_DIR=data_dir, **env)
    assert proc.returncode == 1, out_of(proc)
    assert message in proc.stderr


def fake_srun(tmp_path: Path, mpi_list: str) -> Path:
    bin_dir = tmp_path / "slurmbin"
    bin_dir.mkdir(exist_ok=True)
    write_exe(bin_dir / "srun", f'#!/bin/sh\nif [ "$1" = "--mpi=list" ]; then printf "%s\\n" {mpi_list}; fi\n')
    return bin_dir


IN_SLURM = {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "8", "SLURM_JOB_NUM_NODES": "2",
            "SLURM_JOB_NAME": "tfxr-2x4gpu", "SLURM_CPUS_PER_TASK": "8"}


def test_slurm_uses_srun_with_pmix(tmp_path, data_dir):
    bin_dir = fake_srun(tmp_path, "'MPI plugin types are...' none pmi2 pmix pmix_v4")
    argv = argv_of(slurm("train_multinode.sh", tmp_path, DRY_RUN=1, DATA_DIR=data_dir,
                         SLURM_SUBMIT_DIR=REPO, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **IN_SLURM))
    assert argv[:6] == ["srun", "--mpi=pmix", "--kill-on-bad-exit=1", "--ntasks=8", "--cpus-per-task=8",
                        "--cpu-bind=cores"] or argv[:5] == ["srun", "--mpi=pmix", "--kill-on-bad-exit=1",
                                                             "--ntasks=8", "--cpus-per-task=8"]   # GPU node
    assert argv[argv.index(sys.executable):argv.index(sys.executable) + 3] == [sys.executable, "-m", "tfxr.train"]
    assert value_after(argv, "--config") == str(CHEXNET_CONFIG)
    assert value_after(argv, "--data") == str(data_dir)
    assert value_after(argv, "--out") == f"{REPO}/runs/tfxr-2x4gpu-4242"


def test_slurm_falls_back_to_mpirun(tmp_path, data_dir):
    bin_dir = fake_srun(tmp_path, "none pmi2")
    argv = argv_of(slurm("train_multinode.sh", tmp_path, DRY_RUN=1, DATA_DIR=data_dir,
                         LD_LIBRARY_PATH="/opt/lib", SLURM_SUBMIT_DIR=REPO, HOROVOD_FUSION_THRESHOLD=67108864,
                         PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **IN_SLURM))
    assert argv[0] == "mpirun"
    assert value_after(argv, "-np") == "8"
    assert "--oversubscribe" not in argv
    assert ("--allow-run-as-root" in argv) == IS_ROOT
    xs = pairs(argv, "-x")
    assert xs[:4] == ["NCCL_DEBUG=INFO", "LD_LIBRARY_PATH", "PATH", "PYTHONPATH"]
    assert "HOROVOD_FUSION_THRESHOLD" in xs
    # CPU tasks (this machine) are bound to their --cpus-per-task cores; GPU tasks are not bound
    assert pairs(argv, "--bind-to") in (["core"], ["none"])
    assert pairs(argv, "--map-by") in (["slot:PE=8"], ["slot"])
    i = argv.index(sys.executable)
    assert argv[i:i + 5] == [sys.executable, "-m", "tfxr.train", "--config", str(CHEXNET_CONFIG)]


def test_slurm_launcher_can_be_forced(tmp_path, data_dir):
    argv = argv_of(slurm("train_1node.sh", tmp_path, DRY_RUN=1, DATA_DIR=data_dir, LAUNCHER="srun",
                         SLURM_SUBMIT_DIR=REPO, **IN_SLURM))
    assert argv[:2] == ["srun", "--mpi=pmix"]


@pytest.mark.parametrize("submit_dir", ["repo", "slurm_dir"])
def test_slurm_script_run_from_the_spool_copy(submit_dir, tmp_path, data_dir):
    """sbatch runs a copy of the script from its spool directory: the repo comes from SLURM_SUBMIT_DIR."""
    spool = tmp_path / "spool" / "job4242"
    spool.mkdir(parents=True)
    shutil.copy(SLURM_DIR / "train_1node.sh", spool / "slurm_script")
    submit = REPO if submit_dir == "repo" else SLURM_DIR
    proc = run(["bash", spool / "slurm_script"], cwd=tmp_path, env=clean_env(
        DRY_RUN=1, DATA_DIR=data_dir, LAUNCHER="mpirun", SLURM_SUBMIT_DIR=submit, **IN_SLURM))
    argv = argv_of(proc)
    assert "tfxr.train" in argv and value_after(argv, "-np") == "8"
    assert value_after(argv, "--config") == str(CHEXNET_CONFIG)


def test_slurm_script_says_where_the_repo_should_be(tmp_path, data_dir):
    spool = tmp_path / "spool"
    spool.mkdir()
    shutil.copy(SLURM_DIR / "train_1gpu.sh", spool / "slurm_script")
    proc = run(["bash", spool / "slurm_script"], cwd=tmp_path,
               env=clean_env(DRY_RUN=1, DATA_DIR=data_dir, SLURM_SUBMIT_DIR=tmp_path, **IN_SLURM))
    assert proc.returncode == 1, out_of(proc)
    assert "cannot find job_submissions/slurm/common.sh" in proc.stderr
    # ... and TFXR_REPO_DIR fixes it.
    proc = run(["bash", spool / "slurm_script"], cwd=tmp_path, env=clean_env(
        DRY_RUN=1, DATA_DIR=data_dir, LAUNCHER="mpirun", SLURM_SUBMIT_DIR=tmp_path, TFXR_REPO_DIR=REPO, **IN_SLURM))
    assert "tfxr.train" in argv_of(proc)


def test_slurm_site_file_is_sourced(tmp_path, data_dir):
    site = tmp_path / "site.sh"
    site.write_text("export HOROVOD_HIERARCHICAL_ALLREDUCE=1\nexport NCCL_SOCKET_IFNAME=ib0\n")
    argv = argv_of(slurm("train_multinode.sh", tmp_path, DRY_RUN=1, DATA_DIR=data_dir, TFXR_SITE_ENV=site,
                         LAUNCHER="mpirun", SLURM_SUBMIT_DIR=REPO, **IN_SLURM))
    xs = pairs(argv, "-x")
    assert "HOROVOD_HIERARCHICAL_ALLREDUCE" in xs and "NCCL_SOCKET_IFNAME" in xs
    proc = slurm("train_multinode.sh", tmp_path, DRY_RUN=1, DATA_DIR=data_dir, TFXR_SITE_ENV=tmp_path / "none.sh")
    assert proc.returncode == 1 and "TFXR_SITE_ENV" in proc.stderr, out_of(proc)


def test_slurm_local_run_starts_in_the_repo(tmp_path, data_dir):
    """The real launch path outside Slurm, with a stand-in for python: cwd, PYTHONPATH, out dir."""
    exe, log = fake_python(tmp_path)
    out = tmp_path / "run"
    proc = slurm("train_1node.sh", tmp_path, NP=2, DATA_DIR=data_dir, OUT_DIR=out, PYTHON=exe, EPOCHS=1)
    assert proc.returncode == 0, out_of(proc)
    (line,) = log.read_text().splitlines()
    assert f"cwd={REPO} " in line and f"pythonpath={REPO}" in line
    assert (f"args=-m tfxr.launch --np 2 -- tfxr.train --config {CHEXNET_CONFIG} --data {data_dir} "
            f"--out {out} --epochs 1") in line
    assert out.is_dir()
    assert "local run, 2 rank(s)" in proc.stderr and f"config {CHEXNET_CONFIG}" in proc.stderr


@pytest.mark.parametrize("dataset, needle", [
    ("rsna", "kaggle competitions download -c rsna-pneumonia-detection-challenge"),
    ("chexpert", "CheXpert-v1.0-small/train.csv"),
    ("mimic-cxr-jpg", "https://physionet.org/files/mimic-cxr-jpg/2.0.0/"),
    ("vindr", "https://physionet.org/content/vindr-cxr/1.0.0/"),
    ("tbx11k", "annotations/json/TBX11K_train.json"),
])
def test_credentialed_sets_print_manual_steps_and_layout(dataset, needle, tmp_path, no_network_tools):
    """Sets without a direct public download: exact steps and the expected layout, exit 0, nothing written."""
    bin_dir, trace = no_network_tools
    env = clean_env(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    dest = tmp_path / "dest"
    for dry in (["--dry-run"], []):
        proc = run([DOWNLOAD, *dry, "--dest", dest, dataset], env=env)
        assert proc.returncode == 0, out_of(proc)
        assert f"== {dataset}: download by hand" in proc.stdout and needle in proc.stdout
        assert "Expected layout" in proc.stdout and f"--source {dataset}" in proc.stdout
        assert str(dest / ("physionet.org" if dataset == "mimic-cxr-jpg" else dataset)) in proc.stdout
    assert not dest.exists() and not trace.exists()


def test_manual_and_downloadable_sets_together(tmp_path, no_network_tools):
    bin_dir, trace = no_network_tools
    env = clean_env(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    proc = run([DOWNLOAD, "-n", "--dest", tmp_path / "d", "vindr", "pneumoniamnist"], env=env)
    assert proc.returncode == 0, out_of(proc)
    assert "== vindr: download by hand" in proc.stdout
    assert listed_files(proc.stdout) == ["pneumoniamnist/pneumoniamnist.npz"]
    assert not trace.exists()
