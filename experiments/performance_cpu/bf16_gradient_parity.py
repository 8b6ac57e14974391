"""Is bf16 autocast biased, or only noisy? Same weights, same batches, two precisions.

A 500-step training error compares two whole trajectories, and a deep net at lr 0.1 turns
any rounding difference into a different trajectory. This script removes the trajectory:
it takes one set of weights (a checkpoint, or the initialization), draws batches from the
training split with the training augmentation, and computes loss and gradient in fp32 and
under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (what ``trainer.precision=bf16-mixed``
does). Printed per batch: losses, errors, the relative gradient difference and cosine.
Then three comparisons of scale:

- batch noise: how far one batch's fp32 gradient is from the mean over batches (the noise
  SGD already lives with);
- bf16 noise: ``|g_bf16 - g_fp32| / |g_fp32|`` on the same batch;
- bias: the norm of the mean difference over K batches, beside what zero-mean differences
  of the observed size would give (``mean |d| / sqrt(K)``). A bias shows as the first
  clearly above the second.

    .venv/bin/python experiments/performance_cpu/bf16_gradient_parity.py \
        --checkpoint <run>/checkpoints/last.ckpt --root <copy> --batches 8
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F

from residual_lab.data import InMemoryDataModule
from residual_lab.data.augment import normalize, random_crop_flip
from residual_lab.data.image_folder import ImageFolderSource
from residual_lab.models import CifarResNet


def flat_grad(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, bf16: bool) -> tuple[torch.Tensor, float, float]:
    """Gradient of the mean cross-entropy (float64, flattened), the loss and the error in %."""
    net.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = net(x.contiguous(memory_format=torch.channels_last))
        loss = F.cross_entropy(logits, y)
    loss.backward()
    error = (logits.argmax(1) != y).float().mean().item() * 100
    return torch.cat([p.grad.flatten() for p in net.parameters()]).double(), loss.item(), error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default=None, help="a run's .ckpt; default: fresh init")
    parser.add_argument("--root", default="/tmp/cifar10-jpeg", help="image-folder CIFAR-10 copy")
    parser.add_argument("--depth", type=int, default=56)
    parser.add_argument("--shortcut", default="identity")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    net = CifarResNet(depth=args.depth, shortcut=args.shortcut).to(memory_format=torch.channels_last)
    if args.checkpoint:
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)["state_dict"]
        net.load_state_dict({k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")})
    net.train()  # batch statistics in BatchNorm, as in a training step

    # The run's own split (45k train / 5k val) and normalization statistics.
    datamodule = InMemoryDataModule(ImageFolderSource(args.root), num_classes=10)
    datamodule.setup("fit")
    images, labels = datamodule.splits["train"]
    mean, std = datamodule.mean, datamodule.std
    gen = torch.Generator().manual_seed(args.seed + 1)

    g32s, g16s, rows = [], [], []
    for k in range(args.batches):
        idx = torch.randint(0, len(labels), (args.batch_size,), generator=gen)
        x = normalize(random_crop_flip(images[idx], 4, True, gen), mean, std)
        g32, l32, e32 = flat_grad(net, x, labels[idx], bf16=False)
        g16, l16, e16 = flat_grad(net, x, labels[idx], bf16=True)
        g32s.append(g32)
        g16s.append(g16)
        rows.append((l32, l16))
        print(f"batch {k}: loss fp32 {l32:.4f} bf16 {l16:.4f} | error % fp32 {e32:.2f} bf16 {e16:.2f} | "
              f"|g16-g32|/|g32| {((g16 - g32).norm() / g32.norm()).item():.4f} "
              f"cos {F.cosine_similarity(g16, g32, 0).item():.5f} |g16|/|g32| {(g16.norm() / g32.norm()).item():.4f}")

    g32, g16 = torch.stack(g32s), torch.stack(g16s)
    diff = g16 - g32
    mean_g = g32.mean(0)
    k = args.batches
    print(f"batch noise  |g32_i - mean g32| / |g32_i|: {((g32 - mean_g).norm(dim=1) / g32.norm(dim=1)).mean().item():.4f}")
    print(f"bf16 noise   |g16_i - g32_i| / |g32_i|:    {(diff.norm(dim=1) / g32.norm(dim=1)).mean().item():.4f}")
    print(f"bias         |mean d| = {diff.mean(0).norm().item():.4e}   "
          f"(zero-mean d of this size: mean |d| / sqrt(K) = {(diff.norm(dim=1).mean() / k**0.5).item():.4e})")
    along = (diff @ mean_g / mean_g.norm() ** 2).tolist()
    print(f"d along the mean fp32 gradient, per batch (fraction of it): {[round(v, 4) for v in along]}")
    dloss = [b - a for a, b in rows]
    print(f"loss bf16 - fp32: mean {statistics.mean(dloss):+.5f}, sd {statistics.stdev(dloss):.5f} "
          f"(fp32 loss mean {statistics.mean(a for a, _ in rows):.4f})")


if __name__ == "__main__":
    main()
