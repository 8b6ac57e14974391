"""``train_error_full``: the final weights in eval mode on the whole, unaugmented training split.

The report's training error (docs/reproducing.md, "The registered statistic"), so it is checked
against a pass written out by hand: the images read straight from a tiny image folder with
Pillow, standardised with the training split's own channel statistics, a forward in eval mode.
"""

from __future__ import annotations

import json

import numpy as np
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from PIL import Image

from residual_lab.run import train
from tests.helpers import FAST, image_folder



def _by_hand(root, split, net):
    """Every image of ``split`` in class order, standardised with the *train* split's statistics."""
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
    net.eval()
    with torch.no_grad():
        logits = net(x)
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
