"""Random crop (zero padding) and horizontal flip used for the CIFAR-10 victim."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from innerloop.victims.augment import augment, random_crop, random_hflip


def test_crops_are_windows_of_the_padded_image_and_seeded():
    x = torch.rand(16, 3, 8, 8)
    out = random_crop(x, 2, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    padded = F.pad(x, (2, 2, 2, 2))
    for i in range(16):
        assert any(torch.equal(out[i], padded[i, :, dy:dy + 8, dx:dx + 8]) for dy in range(5) for dx in range(5))
    assert torch.equal(out, random_crop(x, 2, torch.Generator().manual_seed(0)))
    assert torch.equal(random_crop(x, 0, torch.Generator()), x)


def test_flip_mirrors_about_half_the_images():
    x = torch.rand(200, 1, 4, 4)
    out = random_hflip(x, torch.Generator().manual_seed(1))
    flipped = [torch.equal(out[i], x[i].flip(2)) for i in range(200)]
    kept = [torch.equal(out[i], x[i]) for i in range(200)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 60 < sum(flipped) < 140


def test_augment_keeps_shape_and_range():
    x = torch.rand(8, 3, 32, 32)
    out = augment(x, torch.Generator().manual_seed(2))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
