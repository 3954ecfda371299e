"""The one wrapper every ``python -m tfxr.X`` entry point runs in.

Exit codes (documented in the README, the same for every command):

====  =============================================================================
0     success
1     an unexpected failure (a bug in tfxr or the environment): Python's traceback
2     bad input or options: one line ``tfxr: error: ...`` naming the file or option
3     the work ran but its result is not acceptable (e.g. too many rejected images,
      a verification that found damaged shards)
====  =============================================================================
"""
from __future__ import annotations

import errno
import importlib
import os
import sys
from typing import Callable

from tfxr import log
from tfxr.errors import ConfigError, RejectedResult, TfxrError

EXIT_OK = 0
EXIT_CRASH = 1
EXIT_USAGE = TfxrError.exit_code            # 2
EXIT_REJECTED = RejectedResult.exit_code    # 3


def error(message: str, all_ranks: bool = True) -> None:
    """One ``tfxr: error: ...`` line on stderr (:func:`tfxr.log.error`)."""
    log.error(message, all_ranks=all_ranks)


#: what a file system answers when the folder the user named cannot take the output: each is
#: the user's to fix (another --out, space, permissions), so one line, not a traceback
OUTPUT_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT,
                           errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG})


def os_error_line(e: OSError) -> str:
    """``PATH: strerror (ENAME)``: the file and the system's reason, for one error line."""
    name = errno.errorcode.get(e.errno, str(e.errno))
    return f"{e.filename}: {e.strerror or os.strerror(e.errno)} ({name})"


def _damaged_shard(e: Exception) -> str | None:
    """A shard found damaged mid-read (TensorFlow's DataLossError) as one line naming it."""
    if type(e).__name__ != "DataLossError":
        return None
    from tfxr.data.records import explain_data_loss  # lazy: only on this error path (imports TensorFlow)

    return explain_data_loss(e)


def run_main(body: Callable[[], int | None]) -> int:
    """Run a command's body: TfxrError -> one line and its exit code (2, or 3 for a rejected
    result); a damaged shard, or an OSError naming a file that the file system refused
    (read-only, full, a file where a folder should be; see ``OUTPUT_ERRNOS``) -> one line and
    exit 2; Horovod (if started) shut down at the end."""
    try:
        code = body()
        return EXIT_OK if code is None else int(code)
    except TfxrError as e:
        error(str(e), all_ranks=not e.shared)   # a shared error: one line from rank 0, not one per rank
        return e.exit_code
    except OSError as e:
        if e.errno not in OUTPUT_ERRNOS or not e.filename:
            raise
        error(os_error_line(e))
        return EXIT_USAGE
    except KeyboardInterrupt:
        error("interrupted")
        return 130
    except Exception as e:
        message = _damaged_shard(e)
        if message is None:
            raise
        error(message)
        return EXIT_USAGE
    finally:
        # Shut Horovod down if this command started it.  Looked up, not imported: the CLI
        # wrapper does not depend on the runtime (tfxr.launch's CLI runs without it).
        runtime = sys.modules.get("tfxr.distributed")
        if runtime is not None:
            runtime.shutdown()


def run_command(argv: list[str] | None, commands: dict[str, Callable[[list[str]], int | None]], prog: str,
                doc: str, default: str | None = None, leading: tuple[str, ...] = ()) -> int:
    """The one subcommand dispatcher: ``prog COMMAND [options]`` runs ``commands[COMMAND](options)``
    in :func:`run_main`.

    ``-h``/``--help`` first prints ``doc`` (exit 0); each command's own ``--help`` lists its
    options.  A missing or unknown command is one error line naming the commands (exit 2),
    unless there is a ``default`` command: a command line starting with an option is then
    the default's (``python -m tfxr.evaluate --model ...`` is ``evaluate classifier --model
    ...``).  ``leading``: options of the commands, each with one value, that may also come
    before the command's name; they are handed to the command first (``python -m
    tfxr.benchmark --out DIR suite`` is ``suite --out DIR``).  Commands named ``_...`` are
    tfxr's internal ones (measured worker processes): run, but never listed.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    names = ", ".join(name for name in commands if not name.startswith("_"))
    if argv[:1] in (["-h"], ["--help"]):
        print(doc)
        return EXIT_OK

    def body():
        before, rest = _leading_options(argv, leading)
        if rest and rest[0] in commands:
            return commands[rest[0]](before + rest[1:])
        if rest and not rest[0].startswith("-"):
            raise ConfigError(f"unknown command {rest[0]!r} (allowed: {names})")
        if default is not None:
            return commands[default](before + rest)
        raise ConfigError(f"give a command first: {names} ({prog} --help tells more)")
    return run_main(body)


def _leading_options(argv: list[str], leading: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """``argv``'s first options that are in ``leading`` (``--out DIR``, ``--out=DIR``) and the rest."""
    before, rest = [], list(argv)
    while rest and rest[0].split("=", 1)[0] in leading:
        if "=" in rest[0]:
            before, rest = before + rest[:1], rest[1:]
        elif len(rest) < 2:
            raise ConfigError(f"{rest[0]} needs a value")
        else:
            before, rest = before + rest[:2], rest[2:]
    return before, rest


def lazy_exports(module: str, source: str, names: tuple[str, ...]) -> Callable[[str], object]:
    """A command module's ``__getattr__`` (PEP 562) for ``names`` it re-exports from the
    library module ``source``: imported when first asked for, so that ``from tfxr.train
    import Trainer`` keeps working while ``python -m tfxr.train`` checks its options before
    TensorFlow is imported.  Use: ``__getattr__ = lazy_exports(__name__, "tfxr.x", (...))``."""
    def __getattr__(name: str):
        if name in names:
            return getattr(importlib.import_module(source), name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    return __getattr__
