"""Initial loss and logit scale of each ``model.init`` on real CIFAR-10 batches.

What the first SGD step of a run sees: the net in training mode (BatchNorm on batch
statistics), a batch of 128 training images of the run's own split, normalised with the
split's statistics, no augmentation. Forward only, so it runs in seconds per net.

    python experiments/init/initial_loss.py data.root=<copy> [--depths 56 110] [--seeds 0 1 2] [--out <file>]

``--out`` keeps the per-net rows (JSON lines) for collect.py's verdicts.
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import residual_lab  # noqa: F401  (resolvers)
from residual_lab.data.augment import normalize
from residual_lab.models.init import INITS
from residual_lab.run import CONFIG_DIR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data.root=<copy>")
    parser.add_argument("--depths", type=int, nargs="+", default=[56, 110])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batches", type=int, default=4, help="batches of 128 per net")
    parser.add_argument("--inits", nargs="+", default=["kaiming_fan_in", "kaiming_fan_out"],
                        choices=sorted(INITS), help="the released codes' inits (with BN)")
    parser.add_argument("--out", help="write the per-net rows here as JSON lines")
    args = parser.parse_args()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["data=imagefolder", *args.overrides])
    data = instantiate(cfg.data)
    data.setup("fit")
    images, labels = data.splits["train"]
    rows = []
    for depth in args.depths:
        for init in args.inits:
            for seed in args.seeds:
                torch.manual_seed(seed)
                net = instantiate(cfg.model, depth=depth, shortcut="identity", init=init).train()
                order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
                losses, stds = [], []
                with torch.no_grad():
                    for b in range(args.batches):
                        idx = order[b * 128:(b + 1) * 128]
                        logits = net(normalize(images[idx], data.mean, data.std))
                        losses.append(F.cross_entropy(logits, labels[idx]).item())
                        stds.append(logits.std().item())
                rows.append({"depth": depth, "init": init, "seed": seed,
                             "loss": statistics.mean(losses), "logit_std": statistics.mean(stds)})
                print(json.dumps(rows[-1]), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    print("\n| depth | init | initial loss (mean +- std, n seeds) | logit std |")
    print("|---|---|---|---|")
    for depth in args.depths:
        for init in args.inits:
            sel = [r for r in rows if r["depth"] == depth and r["init"] == init]
            loss = [r["loss"] for r in sel]
            std = [r["logit_std"] for r in sel]
            sd = statistics.stdev(loss) if len(loss) > 1 else float("nan")
            print(f"| {depth} | {init} | {statistics.mean(loss):.2f} +- {sd:.2f} (n={len(sel)}) "
                  f"| {statistics.mean(std):.2f} |")


if __name__ == "__main__":
    main()
