"""The paper's augmentation on whole uint8 batches on the device, and the input normalisation.

The ImageNet family follows torchvision's reference recipe (``RandomResizedCrop`` and
``RandomHorizontalFlip`` for training; ``Resize(R / 0.875)`` and ``CenterCrop(R)`` for
evaluation) with torch ops on whole batches, and differs from it in three ways: crops are taken
from the stored ``R x R`` image, not from the full-size photo, so a crop is upsampled (blurrier)
rather than downsampled; a crop that does not fit is clamped to the image instead of being drawn
again (torchvision retries ten times, then falls back to a centre crop); and the smallest crop
area is ``TrainConfig.min_crop_scale`` (0.35 by default, torchvision's 0.08 on request).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from nas.training.config import check_family

CIFAR_PAD = 4  # Sec. 5.3: 32x32 crops of a zero-padded 40x40 image
ASPECT_RATIOS = (3 / 4, 4 / 3)  # Sec. 4's aspect-ratio augmentation, in Inception's range
# torchvision's reference evaluation: resize to 256, centre-crop 224, i.e. the central 0.875.
CENTER_CROP = 0.875


def augment(
    x: torch.Tensor, family: str, generator: torch.Generator, *, min_crop_scale: float = 0.35
) -> torch.Tensor:
    """Randomly crop and flip a uint8 batch ``[B, 3, H, W]`` as a whole, keeping its size.

    family "cifar" (Sec. 5.3): a crop of the batch zero-padded by 4, and a horizontal flip;
    pixels are only moved, so the result is uint8. family "imagenet" (Sec. 4): a random-resized
    crop of area ``min_crop_scale..1`` and aspect ratio 3/4..4/3, and a flip, sampled bilinearly
    from per-image affine grids; float32 in 0..255.
    """
    b, _, h, w = x.shape
    dev = x.device
    flip = torch.rand(b, 1, generator=generator, device=dev) < 0.5
    if family == "cifar":
        p = CIFAR_PAD
        hp, wp = h + 2 * p, w + 2 * p
        padded = F.pad(x, (p, p, p, p)).view(b, 3, hp * wp)
        dy = torch.randint(0, 2 * p + 1, (b, 1), generator=generator, device=dev)
        dx = torch.randint(0, 2 * p + 1, (b, 1), generator=generator, device=dev)
        rows = dy + torch.arange(h, device=dev)
        cols = dx + torch.arange(w, device=dev)
        cols = torch.where(flip, cols.flip(1), cols)
        # One gather for the whole batch, from one flat pixel index per image shared by its
        # channels: several times faster on the CPU than advanced indexing with 4 indices.
        where = (rows[:, :, None] * wp + cols[:, None, :]).view(b, 1, h * w)
        return padded.gather(2, where.expand(b, 3, h * w)).view(b, 3, h, w)
    check_family(family)
    area = torch.empty(b, device=dev).uniform_(min_crop_scale, 1.0, generator=generator)
    log_r = torch.empty(b, device=dev).uniform_(*map(math.log, ASPECT_RATIOS), generator=generator)
    # Crop sides as fractions of the image sides, clamped to the image where a wide (or tall)
    # crop of a large area would not fit (torchvision retries, then falls back to a centre crop).
    sw = (area * log_r.exp()).sqrt().clamp(max=1.0)
    sh = (area / log_r.exp()).sqrt().clamp(max=1.0)
    u = torch.rand(2, b, generator=generator, device=dev) * 2 - 1
    theta = torch.zeros(b, 2, 3, device=dev)
    theta[:, 0, 0] = torch.where(flip[:, 0], -sw, sw)
    theta[:, 0, 2] = (1 - sw) * u[0]  # crop centre, inside the image
    theta[:, 1, 1] = sh
    theta[:, 1, 2] = (1 - sh) * u[1]
    grid = F.affine_grid(theta, [b, 3, h, w], align_corners=False)
    # The crop is never larger than the image it is resized to, so bilinear upsampling needs
    # no antialiasing.
    return F.grid_sample(
        x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False
    )


def evaluation_view(x: torch.Tensor, family: str) -> torch.Tensor:
    """What a network is scored on: the batch itself (family "cifar"), or its central
    :data:`CENTER_CROP` resized back to the batch's side (family "imagenet", float32 0..255).

    torchvision resizes the photo so that the crop lands at the side; here the stored image is
    cropped and upsampled by 1/0.875 (bilinear): the same view, slightly blurred.
    """
    check_family(family)
    if family == "cifar":
        return x
    h, w = x.shape[-2:]
    ch, cw = round(h * CENTER_CROP), round(w * CENTER_CROP)
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = x[..., top : top + ch, left : left + cw].float()
    return F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (float32, on ``x``'s device) of uint8 images ``[N, 3, H, W]``."""
    n, c, h, w = x.shape
    total = torch.zeros(c, dtype=torch.float64, device=x.device)
    squares = torch.zeros_like(total)
    chunk = max(1, 2**24 // (c * h * w))  # bounded memory for large ImageNet subsets
    for i in range(0, n, chunk):
        part = x[i : i + chunk].to(torch.float64)
        total += part.sum((0, 2, 3))
        squares += part.square().sum((0, 2, 3))
    mean = total / (n * h * w)
    var = (squares / (n * h * w) - mean.square()).clamp_min(0)
    # A constant channel must not divide by zero: one grey level is the smallest spread.
    return mean.float(), var.sqrt().clamp_min(1.0).float()
