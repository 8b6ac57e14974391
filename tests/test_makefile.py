"""`make setup` on a machine without a GPU: torch's CPU build from PyTorch's CPU wheel index when
that index answers, else the default build with a one-line note.

make runs the real Makefile against a stand-in venv whose ``python`` records every pip command
and runs anything else (the index probe) with this interpreter, so nothing is installed.
"""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def _fake_venv(tmp_path: Path) -> tuple[Path, Path]:
    venv, log = tmp_path / "venv", tmp_path / "pip.log"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\nif [ "$1" = "-m" ] && [ "$2" = "pip" ]; then echo "$@" >> {log}; exit 0; fi\n'
                      f'exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    return venv, log


def _path_without_gpu_tools(tmp_path: Path, with_nvidia_smi: bool) -> str:
    dirs = [d for d in os.environ["PATH"].split(os.pathsep) if d and not (Path(d) / "nvidia-smi").exists()]
    if with_nvidia_smi:
        fake = tmp_path / "fakebin"
        fake.mkdir()
        (fake / "nvidia-smi").write_text("#!/bin/sh\nexit 0\n")
        (fake / "nvidia-smi").chmod(0o755)
        dirs.insert(0, str(fake))
    return os.pathsep.join(dirs)


def _make_setup(tmp_path: Path, *variables: str, with_nvidia_smi: bool = False) -> tuple[str, list[str]]:
    venv, log = _fake_venv(tmp_path)
    env = {**os.environ, "PATH": _path_without_gpu_tools(tmp_path, with_nvidia_smi)}
    done = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "setup", f"VENV={venv}", *variables],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout, log.read_text().splitlines()


@pytest.fixture
def cpu_index(tmp_path):
    """A local stand-in for https://download.pytorch.org/whl/cpu (it only has to answer)."""
    root = tmp_path / "index"
    (root / "torch").mkdir(parents=True)
    (root / "torch" / "index.html").write_text("<html></html>")
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(root), **k)  # noqa: E731
    http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_no_gpu_installs_torch_from_the_cpu_index_when_it_answers(tmp_path, cpu_index):
    out, pip = _make_setup(tmp_path, "HAS_GPU=", f"TORCH_CPU_INDEX={cpu_index}")
    assert f"residual_lab: no GPU found: installing torch's CPU build from {cpu_index}" in out
    assert pip[0] == f"-m pip install --quiet torch==2.14.1 torchvision==0.29.1 --index-url {cpu_index}"
    assert pip[1] == "-m pip install --quiet -e .[dev,sweep,notebook]"  # torch is then already there


def test_no_gpu_and_no_cpu_index_falls_back_to_the_default_build_with_one_note(tmp_path):
    url = _closed_port_url()
    out, pip = _make_setup(tmp_path, "HAS_GPU=", f"TORCH_CPU_INDEX={url}")
    notes = [line for line in out.splitlines() if line.startswith("residual_lab:")]
    assert notes == [f"residual_lab: no GPU found, but {url} does not answer: installing the default "
                     f"torch build (with its CUDA libraries)"]
    assert pip[0] == "-m pip install --quiet torch==2.14.1 torchvision==0.29.1"


def test_a_gpu_keeps_the_default_build(tmp_path, cpu_index):
    out, pip = _make_setup(tmp_path, f"TORCH_CPU_INDEX={cpu_index}", with_nvidia_smi=True)
    assert "residual_lab:" not in out
    assert pip[0] == "-m pip install --quiet torch==2.14.1 torchvision==0.29.1"


@pytest.mark.skipif(Path("/dev/nvidia0").exists(), reason="this machine has a GPU")
def test_no_nvidia_smi_and_no_device_is_detected_as_no_gpu(tmp_path, cpu_index):
    out, pip = _make_setup(tmp_path, f"TORCH_CPU_INDEX={cpu_index}")
    assert pip[0].endswith(f"--index-url {cpu_index}")
