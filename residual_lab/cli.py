"""``residual-lab <command> ...``: the console script, a thin alias of ``python -m``.

    residual-lab run experiment=smoke        # python -m residual_lab.run experiment=smoke
    residual-lab analyze signal depth=56     # python -m residual_lab.analyze ...
    residual-lab report logs/multiruns/...   # python -m residual_lab.report ...
    residual-lab evaluate run_dir=<run dir>  # python -m residual_lab.evaluate ...
    residual-lab bench                       # python -m residual_lab.bench ...

Each command runs its module exactly as ``python -m`` does (``runpy``), with the same
arguments; only a resume line names the command as ``residual-lab run``.
"""

from __future__ import annotations

import runpy
import shlex
import shutil
import sys

from residual_lab import console

#: command -> module run as ``__main__``.
COMMANDS = {
    "run": "residual_lab.run",            # train and test one net, or a sweep with -m
    "analyze": "residual_lab.analyze",    # a measurement on a fresh or trained net
    "report": "residual_lab.report",      # report.md and figures from runs or sweeps
    "evaluate": "residual_lab.evaluate",  # test metrics of a saved net, on its test split or a folder
    "bench": "residual_lab.bench",        # throughput of the training step
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  python -m {module}" for name, module in COMMANDS.items()]
    return ("usage: residual-lab <command> [arguments...]\n\ncommands (each takes the arguments of "
            "the module it runs; `<command> --help` lists them):\n" + "\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        sys.exit(0 if argv else 2)
    name, *rest = argv
    if name not in COMMANDS:
        print(f"residual-lab: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        sys.exit(2)
    script = sys.argv[0]
    on_path = shutil.which("residual-lab") == script
    console.PROGRAM = f"{'residual-lab' if on_path else shlex.quote(script)} {name}"
    sys.argv = [script, *rest]
    runpy.run_module(COMMANDS[name], run_name="__main__", alter_sys=True)
