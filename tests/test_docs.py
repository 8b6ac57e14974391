"""What the README and docs/ say matches the configs: every budget, logger and
callbacks option listed where its group is listed, the synthetic data described by its real
sizes, bf16 advice per CPU, ``torch_threads`` in the README, every extra described by what it
installs, and a README short enough to read."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (ROOT / "conf" / group).glob("*.yaml"))


def _group_row(group: str) -> str:
    (row,) = [line for line in CONFIGURATION.splitlines() if line.startswith(f"| `{group}` |")]
    return row


def test_every_extra_has_a_row_naming_what_it_installs():
    """docs/installing.md's extras table against pyproject.toml: one row per extra, each
    package it pulls in named in its row (an extra that includes others names them)."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    rows = {m.group(1): line for line in (ROOT / "docs" / "installing.md").read_text().splitlines()
            if (m := re.match(r"\| `(\w+)` \|", line))}
    assert sorted(rows) == sorted(extras)
    for extra, requirements in extras.items():
        names = [re.split(r"[<>=\[ ]", r, maxsplit=1)[0] for r in requirements]
        included = re.search(r"\[(.+)\]", next((r for r in requirements if r.startswith("residual_lab[")), ""))
        names = [n for n in names if n != "residual_lab"] + (included.group(1).split(",") if included else [])
        assert [n for n in names if f"`{n}`" not in rows[extra]] == [], extra


def test_readme_stays_under_8000_bytes():
    assert len((ROOT / "README.md").read_bytes()) <= 8000


@pytest.mark.parametrize("group", ["budget", "logger", "callbacks"])
def test_the_configuration_table_lists_every_option_of_the_group(group):
    row = _group_row(group)
    assert [o for o in _options(group) if f"`{o}`" not in row] == []


def test_every_budget_is_listed_where_budgets_are_listed():
    budgets = _options("budget")
    reproducing = (ROOT / "docs" / "reproducing.md").read_text()
    assert f"`budget={'|'.join(['paper', 'short', 'cpu', 'cpu_long'])}`" in reproducing
    assert set(budgets) == {"paper", "short", "cpu", "cpu_long"}
    table = [line for line in reproducing.splitlines() if re.match(r"\| `(\w+)`( \(default\))? \| [\d,]+ ", line)]
    assert sorted(re.match(r"\| `(\w+)`", line).group(1) for line in table) == budgets
    assert "budget=cpu|cpu_long|short" in README


def test_synthetic_data_is_described_by_its_real_sizes():
    from residual_lab.data import SyntheticSource

    data = OmegaConf.load(ROOT / "conf" / "data" / "synthetic.yaml")
    source = SyntheticSource()
    (row,) = [line for line in CONFIGURATION.splitlines() if line.startswith("| `synthetic` |")]
    assert f"{source.num_train:,} training and {source.num_test:,} test images" in row
    assert f"{source.image_size}x{source.image_size}, {source.num_classes} classes" in row
    val = data.val_size
    assert f"trains on {source.num_train - val:,} and validates on {val}" in row
    assert data.source.num_train == source.num_train and data.source.noise == 48.0 and "std 48" in row


def test_bf16_advice_names_the_cpu_flags_and_the_readme_links_it():
    performance = (ROOT / "docs" / "performance.md").read_text()
    assert "## bf16 on your CPU" in performance
    assert "grep -o -w -E 'avx512_bf16|amx_bf16' /proc/cpuinfo" in performance
    assert "(docs/performance.md#bf16-on-your-cpu)" in README
    assert "`bf16-mixed` for speed" not in CONFIGURATION  # the old advice, true only on some CPUs


def test_readme_says_how_to_run_two_jobs_side_by_side():
    assert "`torch_threads=1`" in README


def test_every_docs_link_of_the_readme_exists():
    for target in re.findall(r"\]\((docs/[^)#]+)", README):
        assert (ROOT / target).is_file(), target
