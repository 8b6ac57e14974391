"""Every p-value a README states is one its report prints.

A README that rounds, recomputes or remembers a p-value its regenerated report no longer prints
states a verdict nobody can check. The pages are the ones a reader greps for verdicts
(``grep -n "p = \\|p=" README.md experiments/*/README.md``); a page's printers are the
``report.md`` files in its own folder and in the folders it links to (the top README: every
report), and, for the init study, whose comparisons are between inits rather than depths, its
own script's output (and the ladder's labelled exploration, its robust check).
"""

from __future__ import annotations

import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = ROOT / "experiments"
PAGES = [ROOT / "README.md", *sorted(EXPERIMENTS.glob("*/README.md"))]
#: ``p = 0.0015``, ``p=0.0015`` and the adjusted value after a slash: ``p = 0.0015 / 0.032``.
STATED = re.compile(r"\bp ?= ?([0-9][0-9.]*(?:e[+-]?[0-9]+)?)(?: / ([0-9][0-9.]*(?:e[+-]?[0-9]+)?))?")
#: Scripts that print a study's other p-values (the command on its page): the init study compares
#: inits, which residual_lab.report does not; the ladder's robust check is a labelled exploration.
SCRIPTS = {"init": lambda: ["experiments/init/collect.py",
                            *sorted(f"{p.relative_to(ROOT)}/" for p in (EXPERIMENTS / "init" / "runs").glob("*")),
                            "--initial-loss", "experiments/init/initial_loss.jsonl"],
           "ladder": lambda: ["experiments/ladder/robust_check.py", "experiments/fig6/runs", "experiments/ladder/runs"]}


def stated(text: str) -> set[str]:
    return {v.rstrip(".") for m in STATED.finditer(text) for v in m.groups() if v}


@cache
def printed_by_script(study: str) -> str:
    done = subprocess.run([sys.executable, *SCRIPTS[study]()], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def printers(page: Path) -> str:
    """What the page's reports (and script) print."""
    if page == ROOT / "README.md":
        folders = sorted({p.parent.relative_to(EXPERIMENTS).parts[0] for p in EXPERIMENTS.glob("*/**/report.md")})
    else:
        text = page.read_text()
        folders = [page.parent.name, *re.findall(r"\]\(\.\./(\w+)/", text)]
    out = [p.read_text() for f in dict.fromkeys(folders) for p in sorted((EXPERIMENTS / f).glob("**/report.md"))]
    out += [printed_by_script(f) for f in dict.fromkeys(folders) if f in SCRIPTS]
    return "\n".join(out)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_p_value_a_readme_states_is_printed_by_its_reports(page):
    printed = stated(printers(page))
    assert sorted(stated(page.read_text()) - printed) == []


def test_a_p_value_no_report_prints_is_caught():
    """The check itself: a rounded value (what README.md once said of the MLP trend) is not a printed one."""
    printed = stated(printers(ROOT / "README.md"))
    assert "4.3e-05" in printed and "4e-05" not in printed
    assert stated("adjusted p = 4e-05; p=0.0015 / 0.032.") == {"4e-05", "0.0015", "0.032"}
