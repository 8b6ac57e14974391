"""Cross-check of our Hessian probe (residual_lab/probes/hessian.py) against PyHessian itself.

Same net, same images, same loss; two estimators and two references:

- **theirs**: PyHessian's ``hessian`` class (Yao, Gholami, Keutzer, Mahoney 2020,
  arXiv:1912.07145), imported from a clone of https://github.com/amirgholami/PyHessian:
  ``eigenvalues(top_n=...)`` (power iteration with deflation) and ``trace()`` (Hutchinson),
  both with their default ``maxIter=100, tol=1e-3``;
- **ours**: :class:`residual_lab.probes.hessian.LossHessian` and
  :func:`residual_lab.probes.hessian.measure` (Lanczos Ritz values with residual bounds,
  Hutchinson trace with its standard error), called as a library with the options of
  ``conf/analyze/hessian.yaml`` except ``images``, ``batch_size`` (= ``images``: one chunk),
  ``seed`` (``--probe-seed``) and ``slq_runs`` (``--slq-runs``);
- **reference**: ``--power-iters`` (100) plain power iterations with Hessian-vector
  products from ``torch.func`` (forward-over-reverse, ``jvp`` of ``grad``), code shared with
  neither, ending with the Rayleigh quotient and its residual ``||Hv - lambda v||`` (an
  eigenvalue of H lies within it);
- **trace reference**: their ``trace(maxIter=100, tol=0)`` (``--ref-trace-probes``), a
  100-probe Hutchinson run that cannot stop early.

The net is PyHessian's own ResNet-20 (their ``models/resnet.py``, residual connections and
BatchNorm on) with their trained ``checkpoints/net.pkl``, in eval mode (BN uses its running
statistics; both probes do that). The loss is the mean cross-entropy of one fixed batch of
``--images`` training images: a seeded random subset of the training split, no
augmentation, their normalisation (``ToTensor`` then ``Normalize`` with the CIFAR-10
mean/std of their ``utils.getData``). H is taken with respect to every parameter (conv and
fc weights, fc bias, BN scales and shifts), as both codes do. The checkpoint's test
accuracy on all 10,000 test images is measured first (it shows the checkpoint loaded).

CIFAR-10 comes from an image-folder copy (``<copy>/{train,test}/<class>/*.jpg``, classes in
alphabetical order = CIFAR-10's label order); their checkpoint was trained on the original
files, so its accuracy on a JPEG re-encoding is lower than on the original test set.

Usage (one intra-op thread; 563 s wall at 200 images on a shared 2-core CPU at load 3)::

    git clone https://github.com/amirgholami/PyHessian <pyhessian clone>
    OMP_NUM_THREADS=1 python experiments/analysis/pyhessian_check/check.py \\
        --pyhessian <pyhessian clone> --data <copy> [--images 200]

Nothing of PyHessian is copied into this repository: ``--pyhessian`` is put on
``sys.path`` for the run. The one adaptation for our code: :func:`measure` asks the net for
its residual blocks (``net.named_blocks()``, for the per-block traces); their ResNet has
none, so the script attaches one to the instance listing ``layer{1,2,3}[j]`` (it changes
neither the forward pass nor the parameters).

Writes ``pyhessian_check.json`` next to this file (``--out``) and prints a table.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import datetime
import hashlib
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

from residual_lab.probes.hessian import LossHessian, measure  # noqa: E402

#: Their ``utils.getData`` normalisation (CIFAR-10 channel mean and std).
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def their_transform():
    from torchvision import transforms

    return transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])


def folder(root: Path, split: str):
    from torchvision import datasets

    ds = datasets.ImageFolder(str(root / split), transform=their_transform())
    assert ds.classes == CLASSES, ds.classes
    return ds


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_head(path: Path) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


@torch.no_grad()
def test_accuracy(net: nn.Module, root: Path, batch_size: int = 500) -> tuple[float, float, int]:
    loader = torch.utils.data.DataLoader(folder(root, "test"), batch_size=batch_size, shuffle=False, num_workers=0)
    correct, loss, n = 0, 0.0, 0
    for x, y in loader:
        out = net(x)
        correct += (out.argmax(1) == y).sum().item()
        loss += F.cross_entropy(out, y, reduction="sum").item()
        n += len(y)
    return 100.0 * correct / n, loss / n, n


def train_batch(root: Path, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    ds = folder(root, "train")
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n].tolist()
    xs, ys = zip(*(ds[i] for i in idx))
    return torch.stack(xs), torch.tensor(ys)


def power_reference(net: nn.Module, x: torch.Tensor, y: torch.Tensor, iters: int, seed: int) -> dict:
    """Top eigenvalue by plain power iteration, HVPs by torch.func (jvp of grad)."""
    from torch.func import functional_call, grad, jvp

    names = [k for k, p in net.named_parameters() if p.requires_grad]
    params = {k: p.detach() for k, p in net.named_parameters() if p.requires_grad}
    buffers = dict(net.named_buffers())

    def loss_fn(p):
        return F.cross_entropy(functional_call(net, (p, buffers), (x,)), y)

    g = grad(loss_fn)

    def hvp(v: dict) -> dict:
        return jvp(g, (params,), (v,))[1]

    def norm(v: dict) -> float:
        return math.sqrt(sum(float(t.double().pow(2).sum()) for t in v.values()))

    gen = torch.Generator().manual_seed(seed)
    v = {k: torch.randn(params[k].shape, generator=gen) for k in names}
    s = norm(v)
    v = {k: t / s for k, t in v.items()}
    trail = []
    for _ in range(iters):
        w = hvp(v)
        lam = sum(float((w[k].double() * v[k].double()).sum()) for k in names)
        res = math.sqrt(sum(float((w[k].double() - lam * v[k].double()).pow(2).sum()) for k in names))
        trail.append((lam, res))
        s = norm(w)
        v = {k: w[k] / s for k in names}
    return {"lambda1": trail[-1][0], "residual": trail[-1][1], "iters": iters,
            "trail_every_10": [[i + 1, lam, res] for i, (lam, res) in enumerate(trail) if (i + 1) % 10 == 0 or i == 0]}


def attach_blocks(net: nn.Module) -> None:
    """Our ``measure`` groups parameters by ``net.named_blocks()`` for per-block traces."""
    blocks = [(f"layer{s}.{j}", b) for s in (1, 2, 3) for j, b in enumerate(getattr(net, f"layer{s}"))]
    net.named_blocks = lambda: iter(blocks)


def stderr(xs) -> float | None:
    xs = np.asarray(xs, dtype=np.float64)
    return float(xs.std(ddof=1) / math.sqrt(len(xs))) if len(xs) > 1 else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pyhessian", type=Path, required=True, help="a clone of amirgholami/PyHessian")
    ap.add_argument("--data", type=Path, required=True, help="the image-folder copy of CIFAR-10 (<copy>/{train,test})")
    ap.add_argument("--images", type=int, default=200, help="training images in the fixed batch")
    ap.add_argument("--seed", type=int, default=1, help="image subset, and torch.manual_seed before their calls "
                                                       "(their example's default seed is 1)")
    ap.add_argument("--probe-seed", type=int, default=0, help="our probe's generator (conf/analyze/hessian.yaml: 0)")
    ap.add_argument("--power-seed", type=int, default=2, help="start vector of the reference power iteration")
    ap.add_argument("--top-n", type=int, default=2, help="their eigenvalues(top_n=...)")
    ap.add_argument("--power-iters", type=int, default=100)
    ap.add_argument("--ref-trace-probes", type=int, default=100,
                    help="a longer Hutchinson run as trace reference: their trace(maxIter=..., tol=0), 0 to skip")
    ap.add_argument("--slq-runs", type=int, default=1,
                    help="our Lanczos runs (only the first gives the top eigenvalues; the config's 2 adds a density run)")
    ap.add_argument("--skip-test", action="store_true", help="skip the test-accuracy pass (timing runs)")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("pyhessian_check.json"))
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    started = time.time()
    load_start = os.getloadavg()

    sys.path.insert(0, str(args.pyhessian.resolve()))
    from models.resnet import resnet
    from pyhessian import hessian as PyHessian

    # The module, not the class: the package's __init__ shadows the submodule's name.
    pyh_module = sys.modules["pyhessian.hessian"]

    # Count their Hessian-vector products without changing them.
    their_hvps = [0]
    hvp_fn = pyh_module.hessian_vector_product

    def counted(*a, **k):
        their_hvps[0] += 1
        return hvp_fn(*a, **k)

    pyh_module.hessian_vector_product = counted

    ckpt = args.pyhessian / "checkpoints" / "net.pkl"
    if ckpt.read_bytes()[:40].startswith(b"version https://git-lfs"):
        sys.exit(f"{ckpt} is a Git LFS pointer, not the checkpoint: run `git lfs pull` in the clone")
    state = torch.load(ckpt, map_location="cpu")
    net = resnet(num_classes=10, depth=20, residual_not=True, batch_norm_not=True)
    # Their example wraps the net in DataParallel before loading, hence the "module." prefix.
    net.load_state_dict({k.removeprefix("module."): v for k, v in state.items()}, strict=True)
    net.eval()
    n_params = sum(p.numel() for p in net.parameters() if p.requires_grad)

    rec: dict = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpu": cpu_model(), "cpus": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "loadavg_start": load_start},
        "torch": torch.__version__, "python": platform.python_version(), "precision": "float32, CPU",
        "pyhessian_commit": git_head(args.pyhessian),
        "checkpoint_sha256": hashlib.sha256(ckpt.read_bytes()).hexdigest(),
        "net": "PyHessian models/resnet.py resnet(depth=20, residual_not=True, batch_norm_not=True), eval mode",
        "params": n_params, "images": args.images, "split": "train (seeded subset, no augmentation)",
        "seeds": {"images_and_their_torch_manual_seed": args.seed, "our_probe": args.probe_seed,
                  "power_start": args.power_seed},
    }

    if not args.skip_test:
        t = time.time()
        acc, tloss, n = test_accuracy(net, args.data)
        rec["test"] = {"accuracy_percent": acc, "loss": tloss, "images": n, "wall_s": time.time() - t}
        print(f"test accuracy on the JPEG copy: {acc:.2f} % ({n} images, loss {tloss:.4f}, {time.time() - t:.0f} s)",
              flush=True)

    x, y = train_batch(args.data, args.images, args.seed)
    with torch.no_grad():
        out = net(x)
        rec["batch"] = {"loss": F.cross_entropy(out, y).item(), "accuracy_percent": 100.0 * (out.argmax(1) == y).float().mean().item()}
    print(f"batch: {args.images} train images, loss {rec['batch']['loss']:.5f}, "
          f"accuracy {rec['batch']['accuracy_percent']:.1f} %", flush=True)

    # --- theirs
    t = time.time()
    hc = PyHessian(net, nn.CrossEntropyLoss(), data=(x, y), cuda=False)
    setup_s = time.time() - t
    torch.manual_seed(args.seed)
    t, their_hvps[0] = time.time(), 0
    eig, _ = hc.eigenvalues(top_n=args.top_n)
    eig_s, eig_hvps = time.time() - t, their_hvps[0]
    print(f"theirs: eigenvalues {eig} ({eig_hvps} HVPs, {eig_s:.0f} s)", flush=True)
    torch.manual_seed(args.seed)
    t, their_hvps[0] = time.time(), 0
    tr = hc.trace()
    tr_s = time.time() - t
    rec["theirs"] = {"top": eig, "eigen_wall_s": eig_s + setup_s, "eigen_hvps": eig_hvps,
                     "trace": float(np.mean(tr)), "trace_stderr": stderr(tr), "trace_probes": tr,
                     "trace_wall_s": tr_s, "trace_hvps": their_hvps[0],
                     "settings": "eigenvalues(maxIter=100, tol=1e-3, top_n=%d), trace(maxIter=100, tol=1e-3)" % args.top_n}
    print(f"theirs: trace {rec['theirs']['trace']:.4f} +- {rec['theirs']['trace_stderr']} "
          f"({len(tr)} probes, {tr_s:.0f} s)", flush=True)
    if args.ref_trace_probes:
        torch.manual_seed(args.seed + 1000)  # probes independent of both runs compared
        t, their_hvps[0] = time.time(), 0
        tr_ref = hc.trace(maxIter=args.ref_trace_probes, tol=0.0)  # tol=0: never stops early
        rec["trace_reference"] = {"trace": float(np.mean(tr_ref)), "trace_stderr": stderr(tr_ref),
                                  "trace_probes": tr_ref, "wall_s": time.time() - t, "hvps": their_hvps[0],
                                  "settings": f"their trace(maxIter={args.ref_trace_probes}, tol=0.0), "
                                              f"torch.manual_seed({args.seed + 1000})"}
        print(f"reference trace: {rec['trace_reference']['trace']:.4f} +- {rec['trace_reference']['trace_stderr']:.4f} "
              f"({len(tr_ref)} probes, {time.time() - t:.0f} s)", flush=True)
    del hc
    net.zero_grad(set_to_none=True)  # their backward(create_graph=True) left graph-carrying .grad

    # --- ours
    conf = yaml.safe_load((REPO / "conf/analyze/hessian.yaml").read_text())
    options = SimpleNamespace(**{**conf, "images": args.images, "batch_size": args.images,
                                 "seed": args.probe_seed, "slq_runs": args.slq_runs})
    attach_blocks(net)
    ours_hvps = [0]
    t = time.time()
    op = LossHessian(net, x, y, options.batch_size, on_product=lambda: ours_hvps.__setitem__(0, ours_hvps[0] + 1))
    res = measure(op, net, options, torch.Generator().manual_seed(options.seed))
    ours_s = time.time() - t
    rec["ours"] = {"top": res["top"], "top_residual": res["top_residual"], "trace": res["trace"],
                   "trace_stderr": res["trace_stderr"], "trace_probes": res["trace_probes"],
                   "loss": op.loss(), "params": res["params"], "wall_s": ours_s, "hvps": ours_hvps[0],
                   "settings": {k: getattr(options, k) for k in ("top_k", "lanczos_steps", "slq_runs", "trace_probes")}}
    del op
    print(f"ours: top {res['top']} (residuals {res['top_residual']}), trace {res['trace']:.4f} +- "
          f"{res['trace_stderr']:.4f} ({ours_hvps[0]} HVPs, {ours_s:.0f} s)", flush=True)

    # --- reference
    t = time.time()
    ref = power_reference(net, x, y, args.power_iters, args.power_seed)
    ref["wall_s"] = time.time() - t
    rec["power_reference"] = ref
    print(f"power ({args.power_iters} its): {ref['lambda1']:.6f} +- {ref['residual']:.2e} ({ref['wall_s']:.0f} s)",
          flush=True)

    lam = ref["lambda1"]
    th, ou = rec["theirs"], rec["ours"]
    rec["comparison"] = {
        "lambda1_rel_ours_vs_theirs": (ou["top"][0] - th["top"][0]) / th["top"][0],
        "lambda1_rel_ours_vs_power": (ou["top"][0] - lam) / lam,
        "lambda1_rel_theirs_vs_power": (th["top"][0] - lam) / lam,
        "lambda2_rel_ours_vs_theirs": ((ou["top"][1] - th["top"][1]) / th["top"][1]) if len(th["top"]) > 1 else None,
        "trace_rel_ours_vs_theirs": (ou["trace"] - th["trace"]) / th["trace"],
        "trace_diff_in_combined_stderr": (ou["trace"] - th["trace"]) / math.hypot(ou["trace_stderr"], th["trace_stderr"]),
    }
    if "trace_reference" in rec:
        tref = rec["trace_reference"]
        for who, r in (("ours", ou), ("theirs", th)):
            rec["comparison"][f"trace_rel_{who}_vs_reference"] = (r["trace"] - tref["trace"]) / tref["trace"]
            rec["comparison"][f"trace_{who}_minus_reference_in_combined_stderr"] = (
                (r["trace"] - tref["trace"]) / math.hypot(r["trace_stderr"], tref["trace_stderr"]))
    rec["machine"]["loadavg_end"] = os.getloadavg()
    rec["wall_s_total"] = time.time() - started
    args.out.write_text(json.dumps(rec, indent=1) + "\n")

    rows = [("PyHessian (power+deflation / Hutchinson)", th["top"][0], th["top"][1] if len(th["top"]) > 1 else None,
             f"{th['trace']:.2f} +- {th['trace_stderr']:.2f} ({len(th['trace_probes'])})",
             th["eigen_hvps"] + th["trace_hvps"], th["eigen_wall_s"] + th["trace_wall_s"]),
            ("ours (Lanczos / Hutchinson)", ou["top"][0], ou["top"][1],
             f"{ou['trace']:.2f} +- {ou['trace_stderr']:.2f} ({len(ou['trace_probes'])})", ou["hvps"], ou["wall_s"]),
            (f"power, {args.power_iters} its (torch.func)", lam, None, "-", args.power_iters, ref["wall_s"])]
    if "trace_reference" in rec:
        tref = rec["trace_reference"]
        rows.append((f"Hutchinson, {len(tref['trace_probes'])} probes (their trace, tol=0)", None, None,
                     f"{tref['trace']:.2f} +- {tref['trace_stderr']:.2f} ({len(tref['trace_probes'])})",
                     tref["hvps"], tref["wall_s"]))
    print(f"\n{'method':46s} {'lambda1':>10s} {'lambda2':>10s} {'trace +- s.e. (probes)':>26s} {'HVPs':>5s} {'wall s':>7s}")
    for name, l1, l2, trs, hv, ws in rows:
        l1s, l2s = ("-" if v is None else f"{v:.4f}" for v in (l1, l2))
        print(f"{name:46s} {l1s:>10s} {l2s:>10s} {trs:>26s} {hv:5d} {ws:7.0f}")
    print(f"\nours lambda1-4 residual bounds: {[f'{r:.1e}' for r in ou['top_residual']]}; power residual "
          f"{ref['residual']:.1e}")
    print("comparison:", json.dumps(rec["comparison"], indent=1))
    print(f"wrote {args.out} ({rec['wall_s_total']:.0f} s)")


if __name__ == "__main__":
    main()
