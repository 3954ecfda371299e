"""The errors tfxr reports to a user as one line (``tfxr: error: ...``), never a traceback.

Every problem caused by the input (a bad option, file, manifest, checkpoint) raises a
subclass of :class:`TfxrError`; :func:`tfxr.cli.run_main` turns it into one line and the
error's ``exit_code``: 2 for bad input, 3 for a :class:`RejectedResult` (the work ran but
its result is not acceptable).
"""
from __future__ import annotations


class TfxrError(Exception):
    """A problem with what the user gave tfxr; the message names the file or option."""

    exit_code = 2
    #: True when every rank raised this same error from rank 0's decision (said once, by rank 0)
    shared = False


class ConfigError(TfxrError, ValueError):
    """An unknown or invalid option value."""


class ManifestError(TfxrError, ValueError):
    """A data directory whose manifest or shards are missing, damaged or inconsistent."""


class SourceError(TfxrError, ValueError):
    """Raw input (images, label files, folders) that cannot be converted."""


class CheckpointError(TfxrError, RuntimeError):
    """A checkpoint that is damaged or does not fit the model being trained."""


class RunFolderError(TfxrError):
    """An output folder that holds another run, or that another process is writing."""


class RejectedResult(TfxrError):
    """The work ran, but its result is not acceptable (exit code 3)."""

    exit_code = 3


class TrainingDiverged(RejectedResult):
    """A training run whose loss or weights became NaN or infinite."""
