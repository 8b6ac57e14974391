"""experiments/README.md indexes every preset, every folder and every script under experiments/."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INDEX = (ROOT / "experiments" / "README.md").read_text()


def test_every_preset_folder_and_script_has_a_line():
    presets = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
    folders = sorted(p.name for p in (ROOT / "experiments").iterdir() if p.is_dir())
    scripts = sorted(str(p.relative_to(ROOT / "experiments")) for p in (ROOT / "experiments").rglob("*.py"))
    missing = ([f"preset {p}" for p in presets if f"| `{p}` |" not in INDEX]
               + [f"folder {f}" for f in folders if f"[{f}/]({f}/" not in INDEX]
               + [f"script {s}" for s in scripts if f"[{s}]({s})" not in INDEX])
    assert len(presets) == 13 and len(folders) == 20 and len(scripts) == 13
    assert not missing, missing
