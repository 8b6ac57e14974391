"""The batched on-device augmentation equals torchvision's per-image transforms.

Reference: RandomCrop(32, padding=4) + RandomHorizontalFlip + ToTensor + Normalize, i.e.
``pad -> crop(top, left) -> hflip -> to_tensor -> normalize`` from
``torchvision.transforms.functional``, applied image by image with the same crop corners and
flips the batched version is given. Only the random draws are left out of the comparison.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from residual_lab.data.augment import channel_stats, crop_flip, normalize, random_crop_flip
from residual_lab.lit_module import ImageClassifier
from residual_lab.models import CifarResNet

PAD = 4


def _images(n: int = 12, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)


def _draws(n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    offsets = torch.randint(0, 2 * PAD + 1, (n, 2), generator=gen)
    offsets[:4] = torch.tensor([[0, 0], [8, 8], [0, 8], [8, 0]])  # the four extreme corners
    flips = torch.rand(n, generator=gen) < 0.5
    flips[:4] = torch.tensor([True, False, True, False])
    return offsets, flips


def _torchvision(images: torch.Tensor, offsets, flips, mean, std) -> torch.Tensor:
    """The per-sample reference, one PIL image at a time, as torchvision.datasets.CIFAR10 feeds it."""
    out = []
    for img, (top, left), flip in zip(images, offsets.tolist(), flips.tolist()):
        pil = Image.fromarray(img.permute(1, 2, 0).numpy())
        pil = TF.crop(TF.pad(pil, PAD), top, left, 32, 32)
        if flip:
            pil = TF.hflip(pil)
        out.append(TF.normalize(TF.to_tensor(pil), mean.tolist(), std.tolist()))
    return torch.stack(out)


@pytest.mark.parametrize("channels_last", [False, True])
def test_crop_flip_and_normalize_equal_torchvision_transforms(channels_last):
    images = _images()
    offsets, flips = _draws(len(images))
    mean, std = torch.tensor([0.49, 0.48, 0.45]), torch.tensor([0.25, 0.24, 0.26])
    batch = images.contiguous(memory_format=torch.channels_last) if channels_last else images
    ours = normalize(crop_flip(batch, offsets, flips, PAD), mean, std)
    ref = _torchvision(images, offsets, flips, mean, std)
    assert ours.shape == ref.shape == (12, 3, 32, 32) and ours.dtype == ref.dtype == torch.float32
    assert torch.equal(ours, ref)  # same ops in the same order: bit-identical


def test_crop_flip_uint8_pixels_equal_torchvision_before_normalization():
    images = _images(n=9, seed=5)
    offsets, flips = _draws(len(images), seed=6)
    ours = crop_flip(images, offsets, flips, PAD)
    ref = torch.stack([
        torch.from_numpy(np.array(
            (TF.hflip if f else (lambda p: p))(TF.crop(TF.pad(Image.fromarray(x.permute(1, 2, 0).numpy()), PAD),
                                                         t, l, 32, 32)))).permute(2, 0, 1)
        for x, (t, l), f in zip(images, offsets.tolist(), flips.tolist())
    ])
    assert ours.dtype == torch.uint8 and torch.equal(ours, ref)
    # By hand: corner (8, 8) unflipped shows image rows/cols 4..31 and zero padding after them;
    # corner (8, 0) shows image rows 4..31, cols 0..27, with the padding on the left.
    assert torch.equal(ours[1, :, :28, :28], images[1, :, 4:, 4:])
    assert ours[1, :, 28:].eq(0).all() and ours[1, :, :, 28:].eq(0).all()
    assert torch.equal(ours[3, :, :28, 4:], images[3, :, 4:, :28])
    assert ours[3, :, 28:].eq(0).all() and ours[3, :, :, :4].eq(0).all()


def test_random_draws_stay_in_range_and_follow_the_generator():
    images = _images(n=64)
    a = random_crop_flip(images, PAD, generator=torch.Generator().manual_seed(3))
    b = random_crop_flip(images, PAD, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    gen = torch.Generator().manual_seed(3)
    offsets = torch.randint(0, 2 * PAD + 1, (64, 2), generator=gen)
    flips = torch.rand(64, generator=gen) < 0.5
    assert torch.equal(a, crop_flip(images, offsets, flips, PAD))
    assert offsets.min() == 0 and offsets.max() == 2 * PAD  # every corner in [0, 8] reachable


def test_channel_stats_equal_torch_mean_and_std_of_the_float_data():
    images = _images(n=40, seed=7)
    mean, std = channel_stats(images)
    x = images.double() / 255
    assert torch.allclose(mean.double(), x.mean(dim=(0, 2, 3)), rtol=0, atol=1e-6)
    assert torch.allclose(std.double(), x.std(dim=(0, 2, 3), correction=0), rtol=0, atol=1e-6)
    assert mean.dtype == std.dtype == torch.float32


def test_channels_last_forward_equals_nchw():
    torch.manual_seed(0)
    net = CifarResNet(depth=8, shortcut="identity")
    nchw = ImageClassifier(net, None, None, num_classes=10, channels_last=False).eval()
    cl = ImageClassifier(CifarResNet(depth=8, shortcut="identity"), None, None, num_classes=10,
                         channels_last=True).eval()
    cl.net.load_state_dict(nchw.net.state_dict())
    assert cl.net.stem.conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = normalize(_images(n=8), torch.full((3,), 0.5), torch.full((3,), 0.25))
    with torch.no_grad():
        a, b = nchw(x), cl(x)
    # Different conv kernels (NCHW vs NHWC) sum in different orders: equal to float rounding.
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)
