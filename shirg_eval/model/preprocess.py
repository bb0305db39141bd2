"""LaViDa's image preprocessing: anyres tiling, square padding, and single views at any resolution.

Pixel normalisation is transformers' ``SiglipImageProcessorPil`` (named explicitly: with torchvision installed
transformers would pick another backend whose resize differs by a few grey levels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps
from transformers import SiglipImageProcessorPil

PAD_FILL = (127, 127, 127)  # int(0.5 * 255) per channel: LaViDa's expand2square background


class ImageInputError(ValueError):
    """An image that cannot be turned into model input (corrupt, empty, absurd size)."""


def load_strict(image: Image.Image) -> Image.Image:
    """Decode ``image`` fully, or raise :class:`ImageInputError` naming why.

    lmms-eval sets PIL's ``LOAD_TRUNCATED_IMAGES`` globally, which silently pads a truncated file with grey; a
    truncated input must be an error here, not a quietly different image.
    """
    if not isinstance(image, Image.Image):
        raise ImageInputError(f"expected a PIL image, got {type(image).__name__}")
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        image.load()
    except (OSError, SyntaxError) as err:
        raise ImageInputError(f"cannot decode image ({err}); the file is truncated or corrupt") from err
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous
    if image.width < 1 or image.height < 1:
        raise ImageInputError(f"image has no pixels ({image.width}x{image.height})")
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image as upright 8-bit RGB.

    EXIF orientation is applied (a phone photo is read the way it is shown); 16-bit and float greyscale are
    rescaled to 8 bits instead of being clipped; alpha is composited on white (documents and charts are drawn
    on white), palette and CMYK go through PIL's own conversion.
    """
    image = load_strict(image)
    image = ImageOps.exif_transpose(image) or image
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        arr = np.asarray(image, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        arr = np.clip((arr - lo) * scale, 0, 255).round().astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def select_best_resolution(image_size: tuple[int, int], pinpoints: list[list[int]]) -> tuple[int, int]:
    """The (width, height) pinpoint that keeps the most of the image's pixels, then wastes the least."""
    width, height = image_size
    best, best_effective, best_wasted = None, -1, math.inf
    for cand_w, cand_h in pinpoints:
        scale = min(cand_w / width, cand_h / height)
        effective = min(int(width * scale) * int(height * scale), width * height)
        wasted = cand_w * cand_h - effective
        if effective > best_effective or (effective == best_effective and wasted < best_wasted):
            best, best_effective, best_wasted = (cand_w, cand_h), effective, wasted
    assert best is not None
    return best


def fitted_size(image_size: tuple[int, int], target: tuple[int, int]) -> tuple[int, int]:
    """(width, height) of an ``image_size`` image resized to fit inside ``target`` keeping its aspect ratio."""
    width, height = image_size
    target_w, target_h = target
    scale_w, scale_h = target_w / width, target_h / height
    if scale_w < scale_h:
        return target_w, min(math.ceil(height * scale_w), target_h)
    return min(math.ceil(width * scale_h), target_w), target_h


def resize_and_pad(image: Image.Image, target: tuple[int, int]) -> Image.Image:
    """Fit inside ``target`` (width, height) keeping the aspect ratio, centred on black (LLaVA-NeXT anyres)."""
    target_w, target_h = target
    new_w, new_h = fitted_size(image.size, target)
    canvas = Image.new("RGB", (target_w, target_h), (0, 0, 0))
    canvas.paste(image.resize((new_w, new_h), Image.Resampling.BICUBIC), ((target_w - new_w) // 2, (target_h - new_h) // 2))
    return canvas


def expand_to_square(image: Image.Image, fill: tuple[int, int, int] = PAD_FILL) -> Image.Image:
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new(image.mode, (side, side), fill)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


@dataclass
class ImageViews:
    """Views of one image ready for the vision tower."""

    pixel_values: torch.Tensor  # [V, 3, S, S] float32, normalised
    views: list[Image.Image]  # the same views as RGB images (view 0 first), for pictures and debugging
    image_size: tuple[int, int]  # original (width, height)
    grid_wh: tuple[int, int] | None = None  # anyres tile grid (columns, rows); None for single views


class LavidaImageProcessor:
    """Turns a PIL image into LaViDa's views: ``anyres`` (release), ``pad`` or one ``single`` view of any size."""

    def __init__(self, image_size: int = 384, grid_pinpoints: list[list[int]] | None = None):
        self.image_size = image_size
        self.grid_pinpoints = grid_pinpoints or [[384, 768], [768, 384], [768, 768], [1152, 384], [384, 1152]]
        self._processors: dict[int, SiglipImageProcessorPil] = {}

    def normalise(self, views: list[Image.Image], size: int) -> torch.Tensor:
        """Bicubic resize to ``size`` x ``size``, scale by 1/255, normalise with mean = std = 0.5; CHW float32."""
        if size not in self._processors:
            self._processors[size] = SiglipImageProcessorPil(
                size={"height": size, "width": size}, image_mean=[0.5] * 3, image_std=[0.5] * 3, resample=3
            )
        out = self._processors[size](images=views, return_tensors="pt")
        return out["pixel_values"].to(torch.float32)

    def anyres(self, image: Image.Image) -> ImageViews:
        image = to_rgb(image)
        best_w, best_h = select_best_resolution(image.size, self.grid_pinpoints)
        padded = resize_and_pad(image, (best_w, best_h))
        size = self.image_size
        tiles = [padded.crop((x, y, x + size, y + size)) for y in range(0, best_h, size) for x in range(0, best_w, size)]
        views = [image.resize((size, size), Image.Resampling.BICUBIC)] + tiles
        # View 0 is normalised from the original image: the processor's own resize, as the reference does.
        pixel_values = torch.cat([self.normalise([image], size), self.normalise(tiles, size)])
        return ImageViews(pixel_values, views, image.size, (best_w // size, best_h // size))

    def pad(self, image: Image.Image) -> ImageViews:
        image = to_rgb(image)
        square = expand_to_square(image)
        return ImageViews(self.normalise([square], self.image_size), [square.resize((self.image_size,) * 2)], image.size)

    def single(self, image: Image.Image, size: int, mode: str = "resize") -> ImageViews:
        """One ``size`` x ``size`` view from the original pixels (``resize``: stretch like view 0; ``pad``: square)."""
        image = to_rgb(image)
        if mode == "pad":
            image_for_view = expand_to_square(image)
        elif mode == "resize":
            image_for_view = image
        else:
            raise ValueError(f"single-view mode must be 'resize' or 'pad', got {mode!r}")
        view = image_for_view.resize((size, size), Image.Resampling.BICUBIC)
        return ImageViews(self.normalise([image_for_view], size), [view], image.size)
