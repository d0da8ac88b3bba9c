"""``reclaim run``: run a Python program as ``python`` would, and report what it leaked.

Usage::

    reclaim run [--json PATH] [--fail] [--depth N] [--ignore KIND] [--allow KIND:REGEX] script.py [args...]
    reclaim run [options] -m module [args...]
    python -m reclaim run ...

The program runs in this process exactly as ``python script.py args`` (or
``python -m module args``) would run it: same ``sys.argv``, a real
``__main__`` module, ``sys.path[0]`` set the way the interpreter sets it, stdin
and stdout untouched. The leak tracker starts before the program's first line;
when the program's main code ends -- by returning, ``sys.exit`` or an uncaught
exception -- its leaks are checked *before* the interpreter joins threads, runs
``atexit`` handlers and finalizers, so a thread still running at that point is
reported, and nothing is lost to shutdown. The report goes to stderr after the
program's ``atexit`` handlers ran, with what they left open; at once when a
thread or child still running may keep shutdown waiting (atexit leaks follow),
and at once after Ctrl-C, SIGTERM or ``os._exit``.

Exit status: the program's own (``sys.exit`` code; 1 after an uncaught
exception), except that ``--fail`` turns a clean exit (0) into 3 when anything
leaked. A program ended by SIGTERM or by an unhandled Ctrl-C still dies of that
signal after the report, as it would without reclaim (shells show 143 and 130).

A program that forks: each process reports only what it acquired itself,
labelled with its pid, when it exits (``os._exit`` included); a child with
nothing leaked prints nothing. With ``--json PATH`` a child writes
``PATH`` with its pid before the suffix (``leaks.json`` -> ``leaks.4242.json``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from ._runner import DEFAULT_DEPTH, EXIT_LEAKED, TERM_UNWIND, Options, Target, run
from ._version import __version__
from .leaks import KINDS

# argparse is imported when there are options to parse: `reclaim run app.py` has none, and
# argparse, with the re, shutil and locale it loads, is a quarter of what `reclaim run` adds.
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    import argparse

__all__ = ["EXIT_LEAKED", "main"]

# Options of `reclaim run` that take a value: the first other word is the program.
_VALUE_OPTIONS = ("--json", "--depth", "--ignore", "--allow", "--grace", "--unwind-timeout")
#: --grace when not given, in seconds.
_DEFAULT_GRACE = 0.5


def _parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(
        prog="reclaim",
        description="reclaim: resource management for Python. "
        "'reclaim run' runs a program and reports the resources it leaked.",
    )
    parser.add_argument("--version", action="version", version=f"reclaim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("run", help="run a Python program and report what it leaked", add_help=False)
    return parser


def _run_parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(
        prog="reclaim run",
        usage="reclaim run [options] script.py [args...]\n       reclaim run [options] -m module [args...]",
        description="Run the program as 'python script.py args' (or 'python -m module args') "
        "would, and print the resources it leaked to stderr when its main code ends.",
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit status: the program's own; with --fail, 3 when it exited 0 but leaked.\n"
        "sys.exit, an uncaught exception, Ctrl-C and SIGTERM still print the report\n"
        "(after a signal the process then dies of it, as it would without reclaim).\n"
        "After os.fork() each process reports its own leaks, labelled with its pid.",
    )
    parser.add_argument(
        "--json", dest="json_path", metavar="PATH", help="also write the report as JSON to PATH"
    )
    parser.add_argument(
        "--fail",
        action="store_true",
        help=f"exit with status {EXIT_LEAKED} when anything leaked and the program exited 0",
    )
    parser.add_argument(
        "--depth",
        type=int,
        default=None,
        metavar="N",
        help="frames of each acquisition stack recorded and shown (default 8; files keep 2 "
        "unless --depth is given, as each frame costs on every open())",
    )
    parser.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="KIND",
        help="leave out leaks of this kind (repeatable, or comma-separated): " + ", ".join(KINDS),
    )
    parser.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="KIND:REGEX",
        help="leave out leaks of KIND (a kind, several joined by commas, or * for any) whose "
        "description or acquisition site matches REGEX (repeatable), e.g. 'selector:websockets/'",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=_DEFAULT_GRACE,
        metavar="SECONDS",
        help=f"wait up to this long for threads and children still finishing (default {_DEFAULT_GRACE})",
    )
    parser.add_argument(
        "--unwind-timeout",
        type=float,
        default=TERM_UNWIND,
        metavar="SECONDS",
        help="after SIGTERM the program unwinds its with-blocks for up to this long; then what is "
        f"still open is reported and it dies of the signal (default {TERM_UNWIND:g}; keep it below "
        "the time your supervisor waits before SIGKILL)",
    )
    return parser


def _split(args: Sequence[str]) -> tuple[list[str], Target | None]:
    """Split ``reclaim run`` arguments into reclaim's options and the program with its args."""
    options: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        if word == "--":
            if i + 1 < len(args):
                return options, Target(None, args[i + 1], list(args[i + 2 :]))
            return options, None
        if word == "-m":
            if i + 1 < len(args):
                return options, Target(args[i + 1], None, list(args[i + 2 :]))
            return [*options, word], None
        if word.startswith("-m") and not word.startswith("--"):
            return options, Target(word[2:], None, list(args[i + 1 :]))
        if word.startswith("-") and word != "-":
            options.append(word)
            if word in _VALUE_OPTIONS and i + 1 < len(args):
                options.append(args[i + 1])
                i += 1
            i += 1
            continue
        return options, Target(None, word, list(args[i + 1 :]))
    return options, None


def _json_destination(parser: argparse.ArgumentParser, path: str) -> str:
    """The absolute --json path, once it is known to be writable: a bad one is found before the
    program runs, not after (writing can still fail at the end; that is reported then)."""
    from ._exitreport import json_path_problem

    full = os.path.abspath(path)  # the program may chdir: the path is the one given here
    problem = json_path_problem(path, full)
    if problem is not None:
        parser.error(f"argument --json: {problem}")
    return full


def _parse_run(args: Sequence[str]) -> tuple[Options, Target]:
    words, target = _split(args)
    if not words and target is not None and target.path != "-":
        # No option of reclaim's (`reclaim run app.py args`): what the parser gives for none.
        return Options(None, False, DEFAULT_DEPTH, (), _DEFAULT_GRACE), target
    parser = _run_parser()
    ns = parser.parse_args(words)
    if target is None:
        parser.error("give the program to run: a script path or -m module")
    if target.path == "-":
        parser.error("running a program from stdin is not supported: save it to a file")
    if ns.depth is not None and ns.depth < 1:
        parser.error(f"argument --depth: must be at least 1, got {ns.depth}")
    if not ns.grace >= 0:  # NaN too
        parser.error(f"argument --grace: must be >= 0, got {ns.grace}")
    if ns.grace == float("inf"):
        parser.error(
            "argument --grace: must be finite (it is how long the report waits for threads still running)"
        )
    if not 0 < ns.unwind_timeout < float("inf"):  # NaN too
        parser.error(f"argument --unwind-timeout: must be a number of seconds > 0, got {ns.unwind_timeout}")
    ignore: list[str] = []
    for value in ns.ignore:
        for kind in filter(None, (k.strip() for k in value.split(","))):
            if kind not in KINDS:
                parser.error(f"argument --ignore: unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
            ignore.append(kind)
    from .leaks._allow import parse_allow  # with the re it compiles rules with

    allow = []
    for spec in ns.allow:
        try:
            allow.append(parse_allow(spec, "argument --allow"))
        except ValueError as exc:
            parser.error(str(exc))
    json_path = None if ns.json_path is None else _json_destination(parser, ns.json_path)
    depth = DEFAULT_DEPTH if ns.depth is None else ns.depth
    options = Options(json_path, ns.fail, depth, tuple(ignore), ns.grace, depth_given=ns.depth is not None)
    options.allow = tuple(allow)
    options.unwind_timeout = ns.unwind_timeout
    return options, target


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``reclaim`` command; returns the exit status.

    Example (what ``reclaim run app.py --port 8080`` does)::

        import reclaim.cli
        status = reclaim.cli.main(["run", "app.py", "--port", "8080"])
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "run":
        parser = _parser()
        ns = parser.parse_args(args)
        parser.print_help(sys.stderr if ns.command is None else sys.stdout)
        return 2
    if args[1:2] in (["-h"], ["--help"]):
        _run_parser().print_help()
        return 0
    options, target = _parse_run(args[1:])
    return run(options, target)
