"""tfxr.progress: a bar on a terminal's stderr, nothing when disabled or not a terminal."""
from __future__ import annotations

import io
import sys

from tfxr.progress import progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(monkeypatch, stream, **kw) -> str:
    monkeypatch.setattr(sys, "stderr", stream)
    bar = progress_bar(3, "epoch 1/2", **kw)
    for _ in range(3):
        bar.update(1)
    bar.close()
    return stream.getvalue()


def test_a_terminal_gets_the_bar_with_its_count_and_unit(monkeypatch):
    out = _run(monkeypatch, _Terminal(), unit="step")
    assert "epoch 1/2" in out and "3/3" in out and "step" in out


def test_disabled_or_not_a_terminal_writes_nothing(monkeypatch):
    assert _run(monkeypatch, _Terminal(), enabled=False) == ""     # other ranks, --no-progress
    assert _run(monkeypatch, io.StringIO()) == ""                  # a log file, a pipe
