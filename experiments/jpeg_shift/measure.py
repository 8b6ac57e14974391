"""How far the CIFAR-10 JPEG copy moves a published net's test error.

The published weights of akamaster/pytorch_resnet_cifar10 (trained on the original CIFAR-10),
run with that repository's own model code and its own test transform (ToTensor, then
Normalize with ImageNet's mean/std, as its trainer.py does), on every image of the copy's test
split. The difference from the repository's reported error is the copy's shift: what JPEG
re-encoding costs a net trained on the original files. Nets trained *and* tested on the copy
do not pay it that way (shared/datasets/README.md); absolute errors measured on the copy are
therefore not the paper's numbers, and this says by how much a published net misses.

    python experiments/jpeg_shift/measure.py <akamaster clone> <copy> [--out experiments/jpeg_shift/shift.json]

``<akamaster clone>`` holds resnet.py and pretrained_models/resnet{20,32,44,56}-*.th;
``<copy>`` is the unpacked cifar10-jpeg folder (test/<class>/*.jpg).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import time
from datetime import date
from pathlib import Path

import torch

#: The repository's README, "Test err(this impl.)", % (original CIFAR-10 test set, 10k images).
REPORTED = {20: 8.27, 32: 7.37, 44: 6.90, 56: 6.61}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # their trainer.py


def load_their_net(clone: Path, depth: int) -> torch.nn.Module:
    spec = importlib.util.spec_from_file_location("akamaster_resnet", clone / "resnet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = getattr(module, f"resnet{depth}")()
    (weights,) = sorted((clone / "pretrained_models").glob(f"resnet{depth}-*.th"))
    state = torch.load(weights, map_location="cpu", weights_only=False)["state_dict"]
    net.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
    return net.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clone", type=Path)
    parser.add_argument("copy", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    from residual_lab.data.image_folder import ImageFolderSource

    data = ImageFolderSource(str(args.copy)).load()
    images, labels = data.test_images, data.test_labels
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    rows = []
    for depth, reported in REPORTED.items():
        net, wrong, start = load_their_net(args.clone, depth), 0, time.perf_counter()
        with torch.no_grad():
            for lo in range(0, len(labels), 500):
                x = (images[lo:lo + 500].float() / 255 - mean) / std
                wrong += int((net(x).argmax(1) != labels[lo:lo + 500]).sum())
        error = 100 * wrong / len(labels)
        rows.append({"depth": depth, "reported_error": reported, "copy_error": round(error, 2),
                     "shift_pp": round(error - reported, 2), "images": len(labels),
                     "seconds": round(time.perf_counter() - start, 1)})
        print(f"ResNet-{depth}: {error:.2f} % on the copy's {len(labels)} test images, "
              f"reported {reported:.2f} % on the original: {error - reported:+.2f} points", flush=True)
    record = {"what": "akamaster/pytorch_resnet_cifar10 published weights, its own model code and test "
                      "transform, evaluated on the CIFAR-10 JPEG copy's whole test split",
              "source_commit": "d5489e8", "date": str(date.today()), "machine": platform.processor() or
              platform.machine(), "torch": torch.__version__, "precision": "fp32", "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
