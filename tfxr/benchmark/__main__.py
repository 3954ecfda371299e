"""``python -m tfxr.benchmark [--out DIR] [suite|train|convert|input|timeline|profile] [options]`` (see the package doc)."""
from __future__ import annotations

import sys

import tfxr.benchmark as package
from tfxr.benchmark import profile, suites
from tfxr.benchmark.options import COMMANDS
from tfxr.benchmark.report import write_results
from tfxr.benchmark.workers import run_gemm_worker, run_worker
from tfxr.cli import run_main
from tfxr.config import parse_config
from tfxr.errors import ConfigError
from tfxr import log

PROG = "python -m tfxr.benchmark"
INTERNAL = {"_worker": run_worker, "_gemm": run_gemm_worker, "_profile": profile.run_profile_worker}   # measured processes (not in --help)
RUN = {"suite": suites.bench_suite, "train": suites.bench_train, "input": suites.bench_input,
       "timeline": suites.bench_timeline, "profile": profile.bench_profile}


def help_text() -> str:
    lines = [f"usage: {PROG} [--out DIR] {{{','.join(COMMANDS)}}} [options]   (default: suite)", "",
             package.__doc__.strip(), "", "subcommands (each has --help):"]
    lines += [f"  {name:9s} {cls.__doc__.split(':', 1)[1].strip().splitlines()[0]}" for name, cls in COMMANDS.items()]
    return "\n".join(lines)


def split_command(argv: list[str]) -> tuple[str, list[str], list[str]]:
    """``[--out DIR] [COMMAND] OPTIONS [-- CONVERTER ARGS]`` -> (command, its options, the rest).

    ``--out`` may come before the command (as `make benchmark` writes it); the command
    defaults to ``suite``.
    """
    argv, rest = list(argv), []
    if "--" in argv:
        cut = argv.index("--")
        argv, rest = argv[:cut], argv[cut + 1:]
    leading: list[str] = []
    while argv and argv[0].startswith("--out"):
        if argv[0] == "--out":
            if len(argv) < 2:
                raise ConfigError("--out needs a directory")
            leading, argv = leading + argv[:2], argv[2:]
        else:
            leading, argv = leading + [argv[0]], argv[1:]
    command = argv.pop(0) if argv and argv[0] in COMMANDS else "suite"
    if command == "timeline" and argv and not argv[0].startswith("-"):   # timeline FILE
        argv = ["--file", argv[0], *argv[1:]]
    if argv and not argv[0].startswith("-"):
        raise ConfigError(f"unknown subcommand {argv[0]!r} (allowed: {', '.join(COMMANDS)})")
    return command, leading + argv, rest


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] and argv[0] in INTERNAL:
        return run_main(lambda: INTERNAL[argv[0]](argv[1:]))
    if argv[:1] in (["-h"], ["--help"]):
        print(help_text())
        return 0

    def body() -> int:
        command, options, rest = split_command(argv)
        if rest and command != "convert":
            raise ConfigError(f"{command} takes no arguments after --")
        cfg, _ = parse_config(COMMANDS[command], options, f"{PROG} {command}", COMMANDS[command].__doc__)
        result = suites.bench_convert(cfg, rest) if command == "convert" else RUN[command](cfg)
        shown = " ".join(argv) if argv else "suite"
        print(result["table"])
        for path in write_results(cfg.out, command, result, f"{PROG} {shown}"):
            log.info(f"wrote {path}")
        return 0

    return run_main(body)


if __name__ == "__main__":
    sys.exit(main())
