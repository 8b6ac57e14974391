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


def hydra_config_dir() -> str:
    """:data:`CONFIG_DIR`, for a Hydra app or ``initialize_config_dir``: it first stores what
    composing conf/ needs beyond the resolvers, the Trainer's schema (conf/trainer/), made from
    Lightning's signature. Kept out of ``import residual_lab`` because importing Lightning is
    most of the start of ``report`` and ``export``, which never compose."""
    from residual_lab.resolvers import register

    register()
    return CONFIG_DIR
