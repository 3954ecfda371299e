"""``python -m tfxr.benchmark [--out DIR] [suite|train|convert|input|timeline|profile] [options]`` (see the package doc).

Dispatched by :func:`tfxr.cli.run_command`, as every tfxr command with subcommands: the
command defaults to ``suite``, and ``--out DIR`` may come before it (as `make benchmark`
and the result files' ``command`` write it).
"""
from __future__ import annotations

import sys

import tfxr.benchmark as package
from tfxr import log
from tfxr.benchmark import profile, suites
from tfxr.benchmark.options import COMMANDS
from tfxr.benchmark.report import write_results
from tfxr.benchmark.workers import run_gemm_worker, run_worker
from tfxr.cli import run_command
from tfxr.config import parse_config
from tfxr.errors import ConfigError

PROG = "python -m tfxr.benchmark"
#: the measured processes the runner starts (internal: not in --help)
INTERNAL = {"_worker": run_worker, "_gemm": run_gemm_worker, "_profile": profile.run_profile_worker}
RUN = {"suite": suites.bench_suite, "train": suites.bench_train, "input": suites.bench_input,
       "timeline": suites.bench_timeline, "profile": profile.bench_profile}


def help_text() -> str:
    lines = [f"usage: {PROG} [--out DIR] {{{','.join(COMMANDS)}}} [options]   (default: suite)", "",
             package.__doc__.strip(), "", "subcommands (each has --help):"]
    lines += [f"  {name:9s} {cls.__doc__.split(':', 1)[1].strip().splitlines()[0]}" for name, cls in COMMANDS.items()]
    return "\n".join(lines)


def measure(command: str, argv: list[str], typed: str) -> int:
    """Run one subcommand on its options (``convert``: the converter's arguments after ``--``),
    print its table and write its result files, which record ``typed``: the command line as
    the user gave it (so that it can be re-run)."""
    options, rest = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    if rest and command != "convert":
        raise ConfigError(f"{command} takes no arguments after --")
    cfg, _ = parse_config(COMMANDS[command], options, f"{PROG} {command}", COMMANDS[command].__doc__)
    result = suites.bench_convert(cfg, rest) if command == "convert" else RUN[command](cfg)
    print(result["table"])
    for path in write_results(cfg.out, command, result, typed):
        log.info(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    typed = f"{PROG} {' '.join(argv) if argv else 'suite'}"
    commands = {name: (lambda options, name=name: measure(name, options, typed)) for name in COMMANDS}
    return run_command(argv, {**commands, **INTERNAL}, PROG, help_text(), default="suite", leading=("--out",))


if __name__ == "__main__":
    sys.exit(main())
