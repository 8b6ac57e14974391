"""Seconds per SGD step of a CifarResNet on one synthetic batch, at a given thread count.

No data pipeline or diagnostics: the raw compute a sweep job spends per step, to choose
between one job with all cores and several 1-thread jobs side by side.

    python experiments/budget_cpu/step_time.py --threads 2 --depth 20
    python experiments/budget_cpu/step_time.py --threads 1 --depth 20 & \
    python experiments/budget_cpu/step_time.py --threads 1 --depth 20; wait
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from residual_lab.models import CifarResNet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--steps", type=int, default=5, help="timed steps (after 1 warm-up step)")
    parser.add_argument("--bf16", action="store_true", help="CPU autocast to bfloat16")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    net = CifarResNet(depth=args.depth, shortcut="identity").to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(128, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (128,))
    times = []
    for _ in range(args.steps + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - start)
    print(f"depth {args.depth}, {args.threads} thread(s), {'bf16' if args.bf16 else 'fp32'}: "
          f"{' '.join(f'{t:.3f}' for t in times[1:])} s/step")


if __name__ == "__main__":
    main()
