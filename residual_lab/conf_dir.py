"""Where conf/ is: the one place every command (run, analyze, bench, report) and the tests ask."""

from __future__ import annotations

from pathlib import Path


def _config_dir() -> str:
    """conf/: inside the package once installed (the wheel ships it as residual_lab/conf,
    pyproject.toml), at the top of a clone otherwise, where it is edited."""
    package = Path(__file__).resolve().parent
    installed = package / "conf"
    return str(installed if (installed / "config.yaml").is_file() else package.parent / "conf")


CONFIG_DIR = _config_dir()
