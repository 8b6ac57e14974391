"""``residual_lab.run`` with every BatchNorm2d computed in fp32, outside autocast.

An experiment, not a feature: under CPU autocast (``trainer.precision=bf16-mixed``)
BatchNorm runs in bf16 and so does the residual stream between blocks. This runs the same
app with BatchNorm (and hence the stream, which is BN output + shortcut) in fp32, leaving
only convolutions and the classifier in bf16, to see whether that part of the numerics
moves the 500-step training error. Takes the same overrides as ``python -m residual_lab.run``:

    .venv/bin/python experiments/performance_cpu/run_bn_fp32.py -m depth=56 shortcut=identity \
        budget=cpu scheduler.warmup_mode=linear scheduler.warmup_steps=200 \
        data=imagefolder data.root=<copy> seed=0,1 trainer.precision=bf16-mixed
"""

import torch
from torch import nn

_batch_norm_forward = nn.BatchNorm2d.forward


def _forward_fp32(self: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    with torch.autocast(x.device.type, enabled=False):
        return _batch_norm_forward(self, x.float())


nn.BatchNorm2d.forward = _forward_fp32

from residual_lab.run import main  # noqa: E402  (after the patch, so every net built sees it)

if __name__ == "__main__":
    main()
