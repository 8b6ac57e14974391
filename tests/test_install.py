"""Installed the way Python users install: `pip install <clone>` ships the configs, and the
`residual-lab` console script is `python -m residual_lab.<command>` under another name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

from residual_lab import cli, console, report

ROOT = Path(__file__).resolve().parent.parent


def test_pyproject_lists_every_package_and_ships_conf_as_package_data():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "residual_lab").rglob("__init__.py")}
    assert set(tool["packages"]) == packages | {"residual_lab.conf"}
    assert tool["package-dir"] == {"residual_lab.conf": "conf"}
    assert tool["package-data"]["residual_lab.conf"] == ["**/*.yaml"]


# runpy warns when the module was imported before (here by this file); `residual-lab` does not.
@pytest.mark.filterwarnings("ignore:'residual_lab.report' found in sys.modules:RuntimeWarning")
def test_console_script_runs_the_module_as_python_m_does(capsys, monkeypatch):
    monkeypatch.setattr(console, "PROGRAM", None)
    monkeypatch.setattr(sys, "argv", ["residual-lab", "report", "--help"])
    with pytest.raises(SystemExit) as done:
        cli.main()
    assert done.value.code == 0
    alias = capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", [report.__file__, "--help"])  # what `python -m residual_lab.report --help` sees
    with pytest.raises(SystemExit):
        report.main()
    assert alias == capsys.readouterr().out
    assert console.PROGRAM.endswith(" report")  # a resume line would name the console script


@pytest.mark.parametrize("argv, code", [([], 2), (["--help"], 0), (["train"], 2)])
def test_console_script_lists_its_commands(argv, code, capsys, monkeypatch):
    monkeypatch.setattr(console, "PROGRAM", None)
    with pytest.raises(SystemExit) as done:
        cli.main(argv)
    assert done.value.code == code
    out = capsys.readouterr()
    assert all(f"python -m {module}" in out.out + out.err for module in cli.COMMANDS.values())


@pytest.mark.slow
def test_pip_install_then_smoke_from_outside_the_clone(tmp_path):
    """A fresh venv, `pip install <clone>` (not editable), the smoke run from another directory.

    The venv borrows the project venv's packages through a .pth file at the end of its path
    (torch is not downloaded again); residual_lab itself comes only from the new install.
    """
    clone = tmp_path / "clone"  # the working tree as a clone has it: tracked and new files, no ignored ones
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            (clone / name).write_bytes((ROOT / name).read_bytes())
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    (Path(site) / "zz_project_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RESIDUAL_LAB_ROOT", "RESIDUAL_LAB_DATA")}
    install = subprocess.run([python, "-m", "pip", "install", "--quiet", str(clone)], env=env,
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-3000:]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([python, "-c", "import residual_lab.run as r; print(r.__file__); print(r.CONFIG_DIR)"],
                           cwd=elsewhere, env=env, check=True, capture_output=True, text=True).stdout.split()
    assert all(p.startswith(site) for p in where), where  # the installed copy and its own conf/
    smoke = subprocess.run([python, "-m", "residual_lab.run", "experiment=smoke"], cwd=elsewhere, env=env,
                           capture_output=True, text=True, timeout=900)
    assert smoke.returncode == 0, smoke.stdout[-2000:] + smoke.stderr[-3000:]
    [summary_path] = (elsewhere / "logs" / "runs").glob("*/*/summary.json")  # relative to the working directory
    assert f"residual_lab: run directory {summary_path.parent}" in smoke.stdout
    summary = json.loads(summary_path.read_text())
    assert summary["status"] == "completed" and summary["steps"] == summary["max_steps"]
    assert summary["diagnostics"]["grad_norm"], "the smoke run measured no gradient norms"

    script = subprocess.run([venv / "bin" / "residual-lab", "run", "--cfg", "job", "experiment=smoke"],
                            cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert script.returncode == 0 and "depth: 8" in script.stdout, script.stderr[-3000:]


def test_the_commands_that_only_read_records_do_not_import_torch_or_lightning():
    """``report`` and ``export`` read summary.json files; Lightning's import alone is ~4 s of
    their start. Only composing conf/ needs the Trainer's schema (residual_lab.conf_dir)."""
    code = ("import sys, residual_lab.report, residual_lab.results.export; "
            "print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_composing_through_the_run_modules_config_dir_finds_the_trainer_schema():
    from hydra.core.config_store import ConfigStore

    from residual_lab.run import CONFIG_DIR  # noqa: F401  (what composing imports)

    assert "schema.yaml" in ConfigStore.instance().list("trainer")
