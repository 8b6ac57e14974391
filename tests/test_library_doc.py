"""docs/library.md's example runs as written: the plain twin, our callbacks in a plain
Lightning project and a probe on a torchvision ResNet-18."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "library.md"
MARKER = "<!-- library example: tests/test_library_doc.py runs the next code block -->"


def example_code() -> str:
    """The python block right after :data:`MARKER`."""
    text = DOC.read_text()
    assert MARKER in text, f"{DOC.name} lost its example marker"
    block = re.search(r"```python\n(.*?)```", text[text.index(MARKER):], re.S)
    return block.group(1)


def test_the_example_is_about_20_lines():
    lines = [line for line in example_code().splitlines() if line.strip()]
    assert 20 <= len(lines) <= 40, len(lines)


def test_the_library_example_runs_and_measures_every_block(capsys):
    namespace: dict = {"__name__": "library_example"}
    exec(compile(example_code(), str(DOC), "exec"), namespace)
    blocks = [f"layer{i}.{j}" for i in range(1, 5) for j in (0, 1)]
    twin, grads, callbacks = namespace["twin"], namespace["grads"], namespace["callbacks"]
    assert len(twin.residual_adds.removed) == 8 and twin.residual_adds.blocks == blocks
    assert grads.latest["step"] == 1 and grads.latest["blocks"] == blocks
    assert all(v > 0 for v in grads.latest["grad_rms"])
    grad_norms, _, forward_signal, update_ratio = callbacks
    assert forward_signal.latest["blocks"] == blocks and len(forward_signal.latest["ratio"]) == 8
    # the twin's weighted layers: 17 convs on the main path and fc; the 3 projections are gone
    assert len(grad_norms.latest["layers"]) == len(update_ratio.latest["layers"]) == 18
    assert not any("downsample" in layer for layer in grad_norms.latest["layers"])
    out = capsys.readouterr().out
    assert "removed 8 residual additions in 8 blocks" in out
    assert "deleted, used only by a removed skip: layer2.0.downsample, layer3.0.downsample, layer4.0.downsample" in out
