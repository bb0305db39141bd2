"""Stage 1 of the reference recipe: teach the vision tower to read, with a dense per-patch objective.

One answer per image is far too little signal to learn small glyphs from scratch (a 672 px sample costs about a
second of forward and backward on a CPU core and carries one label). The renderer knows where every printed
character is, so every patch of a view gets a label instead: the digit it shows (or background, or "ignore" when
it holds only a sliver of one) and the cue colour under its centre. Digits are labelled one by one, answers and
distractors alike, so every printed number teaches. Views are random crops at random scales (a curriculum from
large glyphs down to 2.5-8 px digits) and token grids (8 to 27 patches a side; sizes other than 384 px use
interpolated position embeddings), so one tower reads in LaViDa's 384 px tiles and in 672 px views alike.
The two linear heads exist only for this stage and are not part of the checkpoint.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file
from torch import nn

from ..data.reading import COLOUR_NAMES, ReadingItem

PATCH = 14
BACKGROUND = 10  # digit classes 0-9, then background
IGNORE = -100
HEADS_FILE = "dense_heads.safetensors"  # beside the model in every checkpoint from the end of stage 1 on
MIN_SHARE = 0.5  # a patch is labelled with a digit when it holds at least half of the digit's cell


class ReadingHeads(nn.Module):
    """Linear probes on the tower's layer -2 features: the digit each patch shows, and the cue colour under it."""

    def __init__(self, width: int):
        super().__init__()
        self.digit = nn.Linear(width, BACKGROUND + 1)
        self.colour = nn.Linear(width, len(COLOUR_NAMES) + 1)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.digit(features), self.colour(features)

    @classmethod
    def load(cls, checkpoint: Path, width: int, device: torch.device | str = "cpu") -> ReadingHeads:
        """The heads a ``checkpoint-*`` folder of the reference trainer keeps beside the model."""
        heads = cls(width).to(device)
        heads.load_state_dict(load_file(str(Path(checkpoint) / HEADS_FILE), device=str(device)))
        return heads


@dataclass
class DenseView:
    pixels: torch.Tensor  # [3, S, S] uint8 (see normalise)
    digits: torch.Tensor  # [g*g] long: 0-9, BACKGROUND or IGNORE
    colours: torch.Tensor  # [g*g] long: 0 = no cue region, i + 1 = COLOUR_NAMES[i]


def to_chw_uint8(image: Image.Image) -> torch.Tensor:
    """RGB image -> ``[3, H, W]`` uint8 (a quarter of float32's bytes between data workers and the trainer)."""
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def normalise(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 ``[..., 3, H, W]`` -> ``(x / 255 - 0.5) / 0.5`` float32 (LaViDa's mean = std = 0.5)."""
    return (pixels.float() / 255.0 - 0.5) / 0.5


def patch_labels(item: ReadingItem, window: tuple[float, float, float, float], grid: int) -> tuple[np.ndarray, np.ndarray]:
    """Digit and colour labels of a ``grid x grid`` patch map over ``window`` (image pixels, x0, y0, x1, y1).

    A patch holding at least half of a digit's cell is labelled with that digit; one holding a smaller piece of
    any digit is ignored (neither digit nor background); the rest is background.
    """
    x0, y0, x1, y1 = window
    sx, sy = grid * PATCH / (x1 - x0), grid * PATCH / (y1 - y0)
    edges = np.arange(grid + 1, dtype=np.float64) * PATCH
    digits = np.full((grid, grid), BACKGROUND, dtype=np.int64)
    best = np.zeros((grid, grid))
    for printed in item.numbers:
        for char, (cx0, cy0, cx1, cy1) in printed.chars:
            bx0, by0, bx1, by1 = (cx0 - x0) * sx, (cy0 - y0) * sy, (cx1 - x0) * sx, (cy1 - y0) * sy
            area = max((bx1 - bx0) * (by1 - by0), 1e-6)
            ox = np.clip(np.minimum(edges[1:], bx1) - np.maximum(edges[:-1], bx0), 0, None)
            oy = np.clip(np.minimum(edges[1:], by1) - np.maximum(edges[:-1], by0), 0, None)
            share = oy[:, None] * ox[None, :] / area
            take = share > best
            best = np.where(take, share, best)
            digits = np.where(take, int(char), digits)
    digits = np.where(best >= MIN_SHARE, digits, np.where(best > 0, IGNORE, BACKGROUND))
    centres = edges[:-1] + PATCH / 2
    cx, cy = centres / sx + x0, centres / sy + y0
    colours = np.zeros((grid, grid), dtype=np.int64)
    for colour, (rx0, ry0, rx1, ry1) in item.regions:
        inside = ((cy >= ry0) & (cy < ry1))[:, None] & ((cx >= rx0) & (cx < rx1))[None, :]
        colours[inside] = COLOUR_NAMES.index(colour) + 1
    return digits.reshape(-1), colours.reshape(-1)


def sample_view(item: ReadingItem, rng: random.Random, grid: int, scale: float) -> DenseView:
    """A ``grid * 14`` px crop of ``item`` at roughly ``scale`` view px per image px, with its patch labels.

    The crop is centred near a number two times in three (so most views hold something to read), and x and y
    scales differ by up to 10 % (LaViDa's 384 px view stretches non-square images).
    """
    size = grid * PATCH
    width, height = item.image.size
    sx = scale * rng.uniform(0.95, 1.05)
    sy = scale * rng.uniform(0.95, 1.05)
    w, h = size / sx, size / sy
    if rng.random() < 0.67 and item.numbers:
        target = rng.choice(item.numbers).box
        cx = (target[0] + target[2]) / 2 + rng.uniform(-0.4, 0.4) * w
        cy = (target[1] + target[3]) / 2 + rng.uniform(-0.4, 0.4) * h
    else:
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    x0 = min(max(cx - w / 2, 0.0), max(width - w, 0.0))
    y0 = min(max(cy - h / 2, 0.0), max(height - h, 0.0))
    window = (x0, y0, x0 + w, y0 + h)
    # crop() pads beyond the image (black, like anyres padding); resize's box keeps the sub-pixel window
    ix0, iy0 = math.floor(x0), math.floor(y0)
    region = item.image.crop((ix0, iy0, math.ceil(x0 + w), math.ceil(y0 + h)))
    crop = region.resize((size, size), Image.Resampling.BICUBIC, box=(x0 - ix0, y0 - iy0, x0 - ix0 + w, y0 - iy0 + h))
    digits, colours = patch_labels(item, window, grid)
    return DenseView(to_chw_uint8(crop), torch.from_numpy(digits), torch.from_numpy(colours))


def dense_loss_from_batch(tower: nn.Module, heads: ReadingHeads, batch, device: torch.device,
                          background_weight: float = 0.1) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy of both heads over every labelled patch of a batch of same-size views.

    ``batch`` has uint8 ``pixels [B, 3, S, S]``, ``digits`` and ``colours`` ``[B, g*g]`` (see ``batches.DenseBatch``).
    Background patches weigh ``background_weight``: they outnumber digit patches about 30 to 1.
    """
    digits, colours = batch.digits.flatten().to(device), batch.colours.flatten().to(device)
    native = batch.pixels.shape[-1] == tower.config.image_size
    features = tower(pixel_values=normalise(batch.pixels.to(device)), interpolate_pos_encoding=not native,
                     output_hidden_states=True).hidden_states[-1]
    digit_logits, colour_logits = heads(features.flatten(0, 1))
    weight = torch.ones(BACKGROUND + 1, device=device)
    weight[BACKGROUND] = background_weight
    loss_digit = F.cross_entropy(digit_logits, digits, weight=weight, ignore_index=IGNORE)
    loss_colour = F.cross_entropy(colour_logits, colours)
    with torch.no_grad():
        on_digit = digits.ge(0) & digits.lt(BACKGROUND)
        hits = (digit_logits.argmax(-1) == digits) & on_digit
        stats = {"loss_digit": float(loss_digit), "loss_colour": float(loss_colour),
                 "digit_acc": float(hits.sum() / on_digit.sum().clamp_min(1)), "digit_patches": float(on_digit.sum())}
    return loss_digit + loss_colour, stats
