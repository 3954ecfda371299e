"""tfxr.files: the one atomic write (temp beside the target, then rename)."""
from __future__ import annotations

import hashlib
import json
import os
import stat

import pytest

from tfxr import files


def test_write_json_replaces_whole_file_with_readable_mode(tmp_path):
    path = tmp_path / "a.json"
    path.write_text("old")
    old_umask = os.umask(0o022)
    try:
        files.write_json(path, {"x": [1, 2]})
    finally:
        os.umask(old_umask)
    assert json.loads(path.read_text()) == {"x": [1, 2]}
    assert stat.S_IMODE(path.stat().st_mode) == 0o644          # not mkstemp's 0600
    assert sorted(os.listdir(tmp_path)) == ["a.json"]           # no temporary left behind


def test_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "model.keras"
    path.write_bytes(b"previous")
    with pytest.raises(RuntimeError):
        with files.atomic_path(path, suffix=".keras") as tmp:
            assert tmp.endswith(".keras") and os.path.dirname(tmp) == str(tmp_path)
            with open(tmp, "wb") as fh:
                fh.write(b"half")
            raise RuntimeError("writer died")
    assert path.read_bytes() == b"previous"
    assert sorted(os.listdir(tmp_path)) == ["model.keras"]


def test_remove_stale_temporaries_only_removes_ours(tmp_path):
    (tmp_path / f"{files.TMP_PREFIX}shard.abc").write_text("left by a killed run")
    (tmp_path / "train-00000-of-00001.tfrecord").write_text("keep")
    (tmp_path / ".hidden").write_text("keep")
    assert files.remove_stale_temporaries(tmp_path) == 1
    assert sorted(os.listdir(tmp_path)) == [".hidden", "train-00000-of-00001.tfrecord"]


def test_sha256_file_matches_hashlib_across_chunks(tmp_path):
    data = os.urandom((1 << 20) + 123)          # more than one 1 MiB chunk
    path = tmp_path / "blob"
    files.write_bytes(path, data)
    assert files.sha256_file(path) == hashlib.sha256(data).hexdigest()
