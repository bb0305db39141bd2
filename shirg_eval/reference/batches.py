"""Deterministic training batches for the reference recipe, built in DataLoader workers.

The batch of step ``s`` is a pure function of ``(seed, stage, s)``: which images are rendered, which crops are
cut, which questions are asked. So a run gives the same batches with 0 or 16 workers, and a resumed run
continues exactly where it stopped. Worker ``w`` of ``W`` builds the steps ``s`` with ``s % W == w``; the
DataLoader's round-robin over workers puts them back in step order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import NamedTuple

import torch
from PIL import Image

from ..data.reading import KINDS, ReadingItem, make_item
from ..model.preprocess import ImageViews, LavidaImageProcessor
from .dense import sample_view
from .labels import moved


def train_item(seed: int, index: int) -> ReadingItem:
    """Training image ``index``: the kinds alternate (chart, doc, chart, ...)."""
    return make_item(KINDS[index % len(KINDS)], index, seed=seed, split="train")


def dense_item(seed: int, index: int) -> ReadingItem:
    """Image ``index`` for the tower's reading objective: every other one a densely printed page (the most
    digits per view), the rest the sets' own charts and documents (their layouts, colours and sizes)."""
    if index % 2 == 0:
        return make_item("page", index, seed=seed, split="train")
    return train_item(seed, index // 2)


@dataclass
class DenseBatch:
    step: int
    pixels: torch.Tensor  # [B, 3, S, S] uint8
    digits: torch.Tensor  # [B, g*g]
    colours: torch.Tensor  # [B, g*g]


class Question(NamedTuple):
    question: str
    prompt: str  # the question with one of the tasks' instructions
    answer: str
    gen_length: int
    cue: str  # the colour the question names


@dataclass
class QASample:
    views: ImageViews  # pixel tensors only (the PIL views are dropped to keep worker transfers small)
    questions: list[Question]
    item: ReadingItem | None = None  # where its glyphs and regions are, in the views' source image (no pixels)


@dataclass
class QABatch:
    step: int
    samples: list[QASample]


class _StepShards(torch.utils.data.IterableDataset):
    def __init__(self, start: int, stop: int):
        super().__init__()
        self.start, self.stop = start, stop

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        if info is not None:
            torch.set_num_threads(1)
        for step in range(self.start + worker, self.stop, workers):
            yield self.build(step)

    def build(self, step: int):
        raise NotImplementedError


class DenseBatches(_StepShards):
    """Crops for the tower's dense reading objective: ``batch`` views from ``batch // views_per_item`` images."""

    def __init__(self, start: int, stop: int, seed: int, batch: int, grids: tuple[int, ...],
                 views_per_item: int = 4, curriculum_steps: int = 0,
                 scales: tuple[float, float, float, float] = (0.9, 1.5, 0.45, 1.0)):
        super().__init__(start, stop)
        self.seed, self.batch, self.grids = seed, batch, grids
        self.views_per_item, self.curriculum_steps = views_per_item, curriculum_steps
        self.scales = scales

    def scale(self, step: int, rng: random.Random) -> float:
        """View px per image px, uniform in a range that moves linearly from ``scales[:2]`` to ``scales[2:]`` over
        the curriculum (default: digits about 8-13 px high at first, 4-9 px at the end)."""
        f = min(1.0, step / self.curriculum_steps) if self.curriculum_steps else 1.0
        lo = self.scales[0] + (self.scales[2] - self.scales[0]) * f
        hi = self.scales[1] + (self.scales[3] - self.scales[1]) * f
        return rng.uniform(lo, hi)

    def build(self, step: int) -> DenseBatch:
        rng = random.Random(f"{self.seed}:dense:{step}")
        grid = rng.choice(self.grids)
        n_items = max(1, self.batch // self.views_per_item)
        items = [dense_item(self.seed, step * n_items + i) for i in range(n_items)]
        views = [sample_view(items[i % n_items], rng, grid, self.scale(step, rng)) for i in range(self.batch)]
        return DenseBatch(step, torch.stack([v.pixels for v in views]), torch.stack([v.digits for v in views]),
                          torch.stack([v.colours for v in views]))


class QABatches(_StepShards):
    """Images with their views (anyres, or one ``resolution`` px view) and ``questions`` questions each.

    The first ``crop_steps`` steps are a curriculum: instead of whole images, ``crop_images`` crops of 260-520 px
    around a cued region, as one padded 384 px view (LaViDa's ``pad`` path: 196 pooled tokens and a newline), with
    the questions whose regions lie inside. The LM first learns to find the cued region among ~200 visual tokens
    before it searches ~1,000 (from scratch, a needle among 1,000 tokens gives its attention almost no gradient).
    """

    def __init__(self, start: int, stop: int, seed: int, images: int, questions: int, processor: LavidaImageProcessor,
                 resolution: int | None, post_prompts: tuple[str, ...], gen_lengths: tuple[int, ...],
                 crop_steps: int = 0, crop_images: int = 0):
        super().__init__(start, stop)
        self.seed, self.images, self.questions = seed, images, questions
        self.processor, self.resolution = processor, resolution
        self.post_prompts, self.gen_lengths = post_prompts, gen_lengths
        self.crop_steps, self.crop_images = crop_steps, crop_images

    def _ask(self, rng: random.Random, questions: list[tuple[str, str, str]]) -> list[Question]:
        chosen = rng.sample(questions, min(self.questions, len(questions)))
        return [Question(q, q + rng.choice(self.post_prompts), a, rng.choice(self.gen_lengths), cue)
                for q, a, cue in chosen]

    def _isolated(self, item: ReadingItem, rng: random.Random) -> QASample:
        """One cued region (with its number) alone on white: the LM learns to read a visual token at all."""
        colour, (x0, y0, x1, y1) = rng.choice(item.regions)
        side = int(max(rng.uniform(260, 520), x1 - x0 + 20, y1 - y0 + 20))
        canvas = Image.new("RGB", (side, side), (255, 255, 255))
        left, top = rng.randint(0, side - (x1 - x0)), rng.randint(0, side - (y1 - y0))
        canvas.paste(item.image.crop((x0, y0, x1, y1)), (left, top))
        views = self.processor.pad(canvas)
        views.views = []
        at = moved(item, left - x0, top - y0, keep=(x0, y0, x1, y1))
        return QASample(views, self._ask(rng, [q for q in item.questions if q[2] == colour]), at)

    def _crop(self, item: ReadingItem, rng: random.Random) -> QASample:
        colour, (x0, y0, x1, y1) = rng.choice(item.regions)
        width, height = item.image.size
        side = max(rng.uniform(260, 520), x1 - x0 + 20, y1 - y0 + 20)
        left = min(max(rng.uniform(x1 - side + 10, x0 - 10), 0.0), max(width - side, 0.0))
        top = min(max(rng.uniform(y1 - side + 10, y0 - 10), 0.0), max(height - side, 0.0))
        window = (int(left), int(top), int(left + side), int(top + side))
        inside = {c for c, (a, b, c2, d) in item.regions
                  if a >= window[0] and b >= window[1] and c2 <= window[2] and d <= window[3]} | {colour}
        views = self.processor.pad(item.image.crop(window))
        views.views = []
        return QASample(views, self._ask(rng, [q for q in item.questions if q[2] in inside]),
                        moved(item, -window[0], -window[1]))

    def build(self, step: int) -> QABatch:
        rng = random.Random(f"{self.seed}:qa:{step}")
        samples = []
        cropping = step < self.crop_steps
        for i in range(self.crop_images if cropping else self.images):
            item = train_item(self.seed + 1, step * max(self.images, self.crop_images) + i)
            if cropping:  # the first third of the curriculum shows the cued region alone
                samples.append(self._isolated(item, rng) if step < self.crop_steps // 3 else self._crop(item, rng))
                continue
            if self.resolution is None:
                views = self.processor.anyres(item.image)
            else:
                views = self.processor.single(item.image, self.resolution)
            views.views = []
            samples.append(QASample(views, self._ask(rng, item.questions), moved(item, 0, 0)))
        return QABatch(step, samples)


def loader(dataset: _StepShards, workers: int) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers,
                                       prefetch_factor=2 if workers else None, persistent_workers=False)
