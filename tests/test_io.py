"""Atomic writes: whole file or nothing, with ordinary permissions."""

from __future__ import annotations

import json
import os

import pytest

from residual_lab.io import atomic_write, write_json


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    path = write_json(tmp_path / "summary.json", {"status": "completed"})

    def boom(f):
        f.write('{"status": "comp')
        raise KeyboardInterrupt  # as a kill mid-write would

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, boom)
    assert json.loads(path.read_text()) == {"status": "completed"}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_written_files_get_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_json(tmp_path / "a.json", {})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
