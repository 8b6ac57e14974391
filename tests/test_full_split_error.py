"""``train_error_full``: the final weights in eval mode on the whole, unaugmented training split.

The report's training error (docs/reproducing.md, "The registered statistic"), so it is checked
against a pass written out by hand: the images read straight from a tiny image folder with
Pillow, standardised with the training split's own channel statistics, a forward in eval mode.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import open_dict
from PIL import Image

from residual_lab.run import train
from tests.helpers import FAST, image_folder



def _by_hand(root, split, net, labels_at=None):
    """Every image of ``split`` in class order, standardised with the *train* split's statistics
    (``labels_at``: the labels of those images only, for a ``net`` that picks a subset)."""
    def read(s):
        images, labels = [], []
        for label, c in enumerate(sorted(p.name for p in (root / s).iterdir())):
            for f in sorted((root / s / c).iterdir()):
                images.append(np.asarray(Image.open(f).convert("RGB")))
                labels.append(label)
        return torch.tensor(np.stack(images)).permute(0, 3, 1, 2).double() / 255, torch.tensor(labels)

    train_x, _ = read("train")
    mean = train_x.mean(dim=(0, 2, 3))
    std = train_x.permute(1, 0, 2, 3).reshape(3, -1).std(dim=1, unbiased=False)
    x, y = read(split)
    x = ((x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)).float()
    getattr(net, "net", net).eval()
    with torch.no_grad():
        logits = net(x)
    y = y if labels_at is None else y[labels_at]
    return (logits.argmax(1) != y).double().mean().item() * 100, F.cross_entropy(logits, y).item()


def test_train_error_full_is_an_eval_mode_pass_over_the_whole_training_split(make_cfg, tmp_path):
    root = tmp_path / "folder"
    image_folder(root, ("cat", "dog", "frog"), per_class=(7, 5, 6), test_per_class=3, size=(8, 8), seed=1)
    cfg = make_cfg(*FAST, "data=imagefolder", f"data.root={root}", f"data.source.cache_dir={tmp_path / 'cache'}",
                   "protocol=paper", "trainer.max_steps=4", "data.batch_size=6", "depth=8",
                   "trainer.check_val_every_n_epoch=null",
                   output_dir=tmp_path / "run")
    summary = train(cfg)
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    net = instantiate(cfg.model)
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    net.load_state_dict({k.removeprefix("net."): v for k, v in state.items()})
    error, loss = _by_hand(root, "train", net)
    # 18 images: every error is a multiple of 1/18; BN in train mode (the window) would differ.
    assert on_disk["train_error_full"] == round(error, 2) == summary["train_error_full"]
    assert abs(on_disk["train_loss_full"] - loss) <= 1e-3 * abs(loss)
    test_error, _ = _by_hand(root, "test", net)
    assert on_disk["test_error"] == round(test_error, 2)  # protocol=paper: the same final weights
    assert "test_error_final" not in on_disk


def test_heldout_runs_record_the_final_weights_test_error_beside_the_best_checkpoints(make_cfg, tmp_path):
    summary = train(make_cfg(*FAST, "data.source.image_size=8", "trainer.max_steps=6",
                             "trainer.val_check_interval=3", "data.batch_size=16"))
    assert summary["tested_checkpoint"] == "best-val"
    assert 0 <= summary["train_error_full"] <= 100 and 0 <= summary["test_error_final"] <= 100


# --- its curve: train_full/error at each validation point -------------------------------------

def test_eval_batches_takes_an_evenly_spaced_subset_of_a_class_sorted_split():
    import residual_lab.data.datamodule as dm

    module = dm.InMemoryDataModule.__new__(dm.InMemoryDataModule)  # only what eval_batches reads is set
    labels = torch.arange(4).repeat_interleave(25)  # 100 images, classes sorted as a folder lists them
    module.splits = {"train": (torch.zeros(100, 3, 2, 2, dtype=torch.uint8), labels)}
    module.mean, module.std = torch.zeros(3), torch.ones(3)
    module._eval_loader = lambda x, y: [(x.float(), y)]
    (_, picked), = module.eval_batches("train", images=20)
    assert torch.bincount(picked).tolist() == [5, 5, 5, 5]
    (_, every), = module.eval_batches("train", images=1000)  # more than the split: the whole split
    assert len(every) == 100


def test_train_full_error_at_a_validation_point_is_an_eval_mode_pass_over_the_fixed_subset(make_cfg, tmp_path):
    """Logged at the last step (4 = the validation interval), so the weights it measured are
    the final ones in last.ckpt: the subset is rebuilt by hand from the folder, every third
    image of 18 in class order (linspace(0, 17, 6) = 0, 3.4, 6.8, 10.2, 13.6, 17, rounded)."""
    from residual_lab.tensorboard_events import read_event_scalars

    root = tmp_path / "folder"
    image_folder(root, ("cat", "dog", "frog"), per_class=(7, 5, 6), test_per_class=3, size=(8, 8), seed=1)
    cfg = make_cfg(*FAST, "data=imagefolder", f"data.root={root}", f"data.source.cache_dir={tmp_path / 'cache'}",
                   "protocol=paper", "trainer.max_steps=4", "trainer.val_check_interval=4", "data.batch_size=6",
                   "depth=8", "trainer.check_val_every_n_epoch=null",
                   output_dir=tmp_path / "run")
    with open_dict(cfg):
        cfg.callbacks.train_split_error = {"_target_": "residual_lab.callbacks.TrainSplitError",
                                           "every_n_steps": 4, "images": 6}
    train(cfg)
    scalars = read_event_scalars(tmp_path / "run", ("train_full/error", "train_full/loss"))
    assert scalars["train_full/error"][0] == [4]
    net = instantiate(cfg.model)
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    net.load_state_dict({k.removeprefix("net."): v for k, v in state.items()})
    keep = [0, 3, 7, 10, 14, 17]

    class Subset:
        def __init__(self, net):
            self.net = net

        def __call__(self, x):
            return self.net(x[keep])

    error, loss = _by_hand(root, "train", Subset(net), labels_at=keep)
    assert scalars["train_full/error"][1][0] == pytest.approx(error, abs=1e-4)
    assert scalars["train_full/loss"][1][0] == pytest.approx(loss, rel=1e-4)


def test_measuring_the_curve_leaves_the_training_as_it_was(make_cfg, tmp_path):
    """evaluate() switches to eval mode and back and draws no random numbers: the same run with
    and without the callback ends with the same weights."""
    base = (*FAST, "data.source.image_size=8", "trainer.max_steps=6", "trainer.val_check_interval=2",
            "data.batch_size=16", "deterministic=true")
    with_curve = make_cfg(*base, output_dir=tmp_path / "with")
    with open_dict(with_curve):
        with_curve.callbacks.train_split_error = {"_target_": "residual_lab.callbacks.TrainSplitError",
                                                  "every_n_steps": 2, "images": 64}
    train(with_curve)
    train(make_cfg(*base, output_dir=tmp_path / "without"))
    a, b = (torch.load(tmp_path / d / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
            for d in ("with", "without"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
