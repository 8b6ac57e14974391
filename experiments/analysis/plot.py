"""Rebuild this folder's figures from the analysis JSONs committed beside it.

    python experiments/analysis/plot.py collect signal <sweep dir>    # copy <sweep>/*/signal.json to signal/
    python experiments/analysis/plot.py collect signal <sweep dir> signal_inits
    python experiments/analysis/plot.py collect shatter <sweep dir>
    python experiments/analysis/plot.py collect responses <analysis dirs> trained/responses   # also lesion, landscape
    python experiments/analysis/plot.py collect hessian <dir holding the analysis outputs> curvature/hessian
    python experiments/analysis/plot.py collect jacobian <dir> curvature/jacobian   # also gradient_noise
    python experiments/analysis/plot.py figures     # signal.png, signal_inits.png, shatter.png, shatter_cnn.png,
                                                    # trained.png, curvature.png

Per-run figures are written by ``python -m residual_lab.analyze`` itself; these overlay runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent


def _name(meta: dict) -> str:
    kind = "plain" if meta["shortcut"] == "none" else "resnet"
    init = "" if meta.get("init") in (None, "kaiming_fan_in") else f"-{meta['init']}"
    return f"{kind}-{meta['depth']}-{'bn' if meta['norm'] == 'batch' else 'nonorm'}{init}"


def _rounded(x):
    """Floats to 5 significant digits: the committed copies stay small."""
    if isinstance(x, float):
        return float(f"{x:.5g}")
    if isinstance(x, list):
        return [_rounded(v) for v in x]
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    return x


def collect(name: str, sweep: Path, dest: str | None = None) -> None:
    (HERE / (dest or name)).mkdir(parents=True, exist_ok=True)
    for path in sorted(sweep.glob(f"**/{name}.json")):
        record = json.loads(path.read_text())
        if name == "shatter":  # keep one draw's gradients: the autocorrelations are the means
            for kind in record["result"]["fc"].values():
                for r in kind.values():
                    r["gradients"] = r["gradients"][:1]
        seed = f"-seed{record['meta']['seed']}" if name in ("hessian", "jacobian", "gradient_noise") else ""
        (HERE / (dest or name) / f"{_name(record['meta'])}{seed}.json").write_text(json.dumps(_rounded(record)))


def signal_figure() -> None:
    records = [json.loads(p.read_text()) for p in sorted((HERE / "signal").glob("*.json"))]
    keys = [("var", "avg channel variance"), ("mean_sq", "avg squared channel mean"),
            ("branch_var", "residual branch variance"), ("grad_rms", "RMS dL/dx at block input")]
    fig, axes = plt.subplots(len(keys), 2, figsize=(12, 12))
    colors = {20: "C0", 56: "C1", 110: "C2"}
    for rec in sorted(records, key=lambda r: (r["meta"]["depth"], r["meta"]["shortcut"])):
        m, res = rec["meta"], rec["result"]
        col = 0 if m["norm"] == "batch" else 1
        for row, (key, title) in enumerate(keys):
            ax = axes[row, col]
            depth_frac = [i / (len(res[key]) - 1) for i in range(len(res[key]))]
            ax.plot(depth_frac, res[key], color=colors[m["depth"]], ls="-" if m["shortcut"] != "none" else ":",
                    label=f"{'plain' if m['shortcut'] == 'none' else 'ResNet'}-{m['depth']}")
            ax.set_yscale("log")
            if key == "branch_var" and col == 0:
                ax.set_ylim(0.3, 3)  # BN's output: 1 up to float noise
            ax.set_title(f"{title}, {'BN' if col == 0 else 'no normalization'}", fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel("relative block position (input -> output)")
    axes[0, 0].legend(fontsize=7, ncol=2)
    fig.suptitle("Signal propagation at initialisation, one batch of 256 CIFAR-10 training images "
                 "(solid: ResNet, dotted: plain)", fontsize=10)
    fig.tight_layout()
    fig.savefig(HERE / "signal.png", dpi=80)


def inits_figure() -> None:
    records = [json.loads(p.read_text()) for p in sorted((HERE / "signal_inits").glob("*.json"))]
    if not records:
        return
    keys = [("var", "avg channel variance"), ("mean_sq", "avg squared channel mean"),
            ("grad_rms", "RMS dL/dx at block input")]
    fig, axes = plt.subplots(1, len(keys), figsize=(15, 3.6))
    for rec in records:
        for ax, (key, title) in zip(axes, keys):
            ax.plot(rec["result"][key], label=rec["meta"]["init"])
            ax.set_yscale("log")
            ax.set_title(f"{title}", fontsize=9)
            ax.set_xlabel("block")
    axes[0].legend(fontsize=7)
    fig.suptitle("ResNet-110, norm=none, at initialisation: model.init (256 CIFAR-10 training images)", fontsize=10)
    fig.tight_layout()
    fig.savefig(HERE / "signal_inits.png", dpi=80)


def shatter_figure() -> None:
    records = [json.loads(p.read_text()) for p in sorted((HERE / "shatter").glob("*.json"))]
    if not records:
        return
    res = records[0]["result"]
    depths = sorted(res["fc"]["plain"], key=int)
    fig, axes = plt.subplots(2, len(depths) + 1, figsize=(4 * (len(depths) + 1), 6))
    for c, d in enumerate(depths):
        for r, kind in enumerate(("plain", "residual")):
            axes[r, c].plot(res["x"], res["fc"][kind][d]["gradients"][0], lw=0.7)
            axes[r, c].set_title(f"{kind} FC, depth {d}: df/dx", fontsize=9)
    lags = [k * res["lag_dx"] for k in range(len(res["x"]))]
    for r, kind in enumerate(("plain", "residual")):
        ax = axes[r, -1]
        for d in depths:
            ax.plot(lags[:48], res["fc"][kind][d]["autocorrelation"][:48], label=f"depth {d}")
        ax.axhline(0, color="k", lw=0.5)
        ax.set_title(f"{kind} FC: autocorrelation vs input distance", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(HERE / "shatter.png", dpi=80)

    cnn = [(rec["meta"], rec["result"]["cnn"]) for rec in records if rec["result"]["cnn"]]
    if cnn:
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
        for m, c in cnn:
            label = f"{'plain' if m['shortcut'] == 'none' else 'ResNet'}-{m['depth']}"
            g = c["gradient"]
            scale = max(abs(v) for v in g) or 1
            axes[0].plot(c["t"], [v / scale for v in g], label=label, lw=0.8)
            axes[1].plot(c["autocorrelation"][:40], label=label)
        axes[0].set_title("d logit / dt along a line between two test images (scaled to max 1)", fontsize=9)
        axes[0].set_xlabel("t")
        axes[1].set_title("autocorrelation", fontsize=9)
        axes[1].set_xlabel("lag (points, 1/127 of the line)")
        for ax in axes:
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(HERE / "shatter_cnn.png", dpi=80)


def trained_figure() -> None:
    """Plain-56 beside ResNet-56 after training: layer responses, lesions, loss landscape."""
    def load(name: str) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted((HERE / "trained" / name).glob("*.json"))]

    responses, lesions, landscapes = load("responses"), load("lesion"), load("landscape")
    if not (responses or lesions or landscapes):
        return
    label = lambda m: f"{'plain' if m['shortcut'] == 'none' else 'ResNet'}-{m['depth']}"  # noqa: E731
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    for rec in responses:
        r = rec["result"]
        axes[0, 0].plot(r["std"], label=label(rec["meta"]), lw=0.8)
        axes[0, 1].plot(r["sorted_std"], label=label(rec["meta"]), lw=0.8)
    axes[0, 0].set_title("responses: std of each layer's output (after BN), layer order", fontsize=9)
    axes[0, 1].set_title("responses: sorted by magnitude (He et al. 2015 Fig. 7)", fontsize=9)
    for rec in lesions:
        r = rec["result"]
        axes[0, 2].plot(r["single"], marker=".", lw=0.8, label=f"{label(rec['meta'])} (intact {r['base_error']:.1f} %)")
        errors = [sum(e) / len(e) for e in r["random"]["errors"]]
        axes[1, 0].plot(r["random"]["k"], errors, marker=".", lw=0.8, label=label(rec["meta"]))
    axes[0, 2].set_title("lesion: test error with block i removed", fontsize=9)
    axes[0, 2].set_xlabel("block")
    axes[1, 0].set_title("lesion: test error with k random blocks removed (mean of draws)", fontsize=9)
    axes[1, 0].set_xlabel("k")
    for ax, rec in zip(axes[1, 1:], landscapes):
        r = rec["result"]
        c = r["coords_2d"]
        cs = ax.contour(c, c, [[min(v, 20.0) for v in row] for row in r["loss_2d"]], levels=15, linewidths=0.8)
        ax.clabel(cs, fontsize=6)
        ax.set_title(f"landscape: {label(rec['meta'])} training loss (clipped at 20), "
                     f"{r['images']} images", fontsize=9)
    for ax in axes.flat[:4]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(HERE / "trained.png", dpi=80)


def curvature_figure(folder: str = "curvature", out: str = "curvature.png") -> None:
    """Hessian density, per-block Jacobian chi, per-block gradient noise scale of the records
    in ``folder`` (``curvature``: fresh nets; ``curvature_trained``, ``curvature_trained_3000``,
    ``curvature_trained_6000``: the ladder's nets trained 1500, 3000 and 6000 steps)."""
    def load(name: str) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted((HERE / folder / name).glob("*.json"))]

    hessians, jacobians, noises = load("hessian"), load("jacobian"), load("gradient_noise")
    if not (hessians or jacobians or noises):
        return
    net = lambda m: (f"{'plain' if m['shortcut'] == 'none' else 'ResNet'}-{m['depth']}"  # noqa: E731
                     f"{'' if m['norm'] == 'batch' else ' no norm'}")
    seeds = {}
    for rec in hessians + jacobians + noises:
        seeds.setdefault(net(rec["meta"]), set()).add(rec["meta"].get("seed"))
    # a net measured at several seeds gets one line per seed, each named by its seed
    label = lambda m: net(m) + (f" seed {m.get('seed')}" if len(seeds[net(m)]) > 1 else "")  # noqa: E731
    style = lambda m: {"color": {20: "C0", 56: "C1"}.get(m["depth"], "C2"),  # noqa: E731
                       "ls": "-" if m["shortcut"] != "none" else ":", "lw": 1.0 if m["norm"] == "batch" else 2.0}
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.2))
    for rec in hessians:
        d, m = rec["result"]["density"], rec["meta"]
        top = rec["result"]["top"][0]
        axes[0].semilogy([g / top for g in d["grid"]], [max(v * top, 1e-10) for v in d["density"]],
                         label=f"{label(m)}: λmax {top:.3g}, tr {rec['result']['trace']:.3g}", **style(m))
    axes[0].set_ylim(1e-6, None)
    axes[0].set_xlabel("Hessian eigenvalue / λmax")
    axes[0].set_title("Hessian spectral density (SLQ), scaled to each net's λmax", fontsize=9)
    for rec in jacobians:
        r, m = rec["result"], rec["meta"]
        n = len(r["block_chi"])
        axes[1].semilogy([(i + 0.5) / n for i in range(n)], r["block_chi"], label=label(m), **style(m))
    axes[1].axhline(1.0, color="gray", lw=0.5)
    axes[1].set_xlabel("block position (scaled)")
    axes[1].set_title("block Jacobian: mean squared singular value chi", fontsize=9)
    for rec in noises:
        r, m = rec["result"], rec["meta"]
        n = len(r["block_b_simple"])
        axes[2].semilogy([(i + 0.5) / n for i in range(n)],
                         [float("nan") if v is None else v for v in r["block_b_simple"]], label=label(m), **style(m))
    axes[2].set_xlabel("group position (stem, blocks, head; scaled)")
    axes[2].set_title("gradient noise scale B_simple per block (images)", fontsize=9)
    for ax in axes:
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(HERE / out, dpi=80)


if __name__ == "__main__":
    if sys.argv[1] == "collect":
        collect(sys.argv[2], Path(sys.argv[3]), *sys.argv[4:5])
    else:
        signal_figure()
        inits_figure()
        shatter_figure()
        trained_figure()
        curvature_figure()
        curvature_figure("curvature_trained", "curvature_trained.png")
        curvature_figure("curvature_trained_3000", "curvature_trained_3000.png")
        curvature_figure("curvature_trained_6000", "curvature_trained_6000.png")
