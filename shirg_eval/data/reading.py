"""Hard synthetic reading sets: small printed numbers found by a colour cue, at >= 672 px.

Two sets, in the hub schemas the tasks read (see :mod:`shirg_eval.data.synthetic`):

* ``chart`` (ChartQA schema): a bar chart whose bars carry their value as a small label printed inside the bar
  top; *bar heights are drawn independently of the labels*, so the answer can only come from reading the label.
  Axis tick labels and category names are small distractor text. Q: "What is the value of the red bar?"
* ``doc`` (DocVQA schema): a page of small distractor text (words and numbers) with 3-5 coloured boxes, each
  holding a small number. Q: "What is the number in the blue box?"

Every answer is one digit printed at ``text_px`` (default 12 px font: digits about 8 px high, 6 px wide) on an
image of 920-1080 px a side, among distractor digits, two-digit numbers and words of the same size. At a 384 px view a digit is about 3.5 px high, at 672 px about 6 px, and in
LaViDa's anyres tiles (768 px for the whole image) about 7 px: legible at 672 px and in the tiles, not at 384 px.
The cue (a colour from :data:`COLOURS`) is a large flat area that survives any downscale.

Chance levels: guessing a digit is 10 %; reading a random cued region of the image instead of the asked one
gives about 1/n_regions + (1 - 1/n_regions) / 10 (chart 3-6 bars, doc 3-5 boxes: about 30 % on average).

Items are deterministic in ``(seed, kind, split, index)``; splits draw from disjoint random streams
(``train`` / ``validation`` / ``test``). Each item also carries the renderer's annotations (every printed
number's box and the region colours), which the reference-model trainer uses for its dense reading objective.
"""

from __future__ import annotations

import functools
import io
import json
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from .task_yaml import TaskPrompting, task_prompting

KINDS = ("chart", "doc")
SPLITS = ("train", "validation", "test")
# Mid-saturation fills: black digits stay legible on each, and each stays distinct after a 384 px downscale.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (232, 86, 86),
    "blue": (96, 136, 236),
    "green": (92, 190, 104),
    "orange": (246, 166, 64),
    "purple": (178, 122, 216),
    "yellow": (232, 212, 72),
}
COLOUR_NAMES = tuple(COLOURS)
_TITLES = ["Quarterly sales", "Regional output", "Survey results", "Annual budget", "Site visits", "Energy use",
           "Exports by sector", "Monthly orders", "Fleet usage", "Ticket sales"]
_CATEGORIES = ["North", "South", "East", "West", "Alpha", "Beta", "Gamma", "Delta", "Metro", "Rural", "Coast",
               "Inland", "Upper", "Lower"]
_WORDS = ["total", "amount", "invoice", "date", "account", "item", "price", "order", "code", "ref", "page", "unit",
          "rate", "sum", "tax", "net", "paid", "due", "qty", "note"]
_DOC_TITLES = ["Order form", "Account summary", "Inspection sheet", "Delivery note", "Payment record",
               "Stock report", "Claim form", "Service log"]


@dataclass
class Printed:
    """One printed string and where it is (image pixels, ``x0, y0, x1, y1``); ``cue`` names its region's colour.

    ``chars`` holds each character's cell: its advance-width span across the string's ink height.
    """

    text: str
    box: tuple[int, int, int, int]
    cue: str | None = None
    chars: list[tuple[str, tuple[int, int, int, int]]] = field(default_factory=list)


@dataclass
class ReadingItem:
    kind: str
    image: Image.Image
    question: str
    answer: str
    cue: str  # the colour the question names
    numbers: list[Printed]  # every printed number (answers and distractors)
    regions: list[tuple[str, tuple[int, int, int, int]]]  # (colour, box) of every cued region
    questions: list[tuple[str, str, str]] = field(default_factory=list)  # (question, answer, cue) for every region

    def png(self) -> bytes:
        buf = io.BytesIO()
        self.image.save(buf, format="PNG")
        return buf.getvalue()


def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _answer(rng: random.Random) -> str:
    return str(rng.randint(0, 9))


def _distractor(rng: random.Random) -> str:
    roll = rng.random()
    return str(rng.randint(10, 99)) if roll < 0.25 else str(rng.randint(0, 9)) if roll < 0.4 else rng.choice(_WORDS)


def _put(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, font, fill=(0, 0, 0), anchor: str = "la",
         cue: str | None = None) -> Printed:
    draw.text(xy, text, fill=fill, font=font, anchor=anchor)
    x0, y0, x1, y1 = draw.textbbox(xy, text, font=font, anchor=anchor)
    left = x1 - draw.textlength(text, font=font)  # the ink box's right edge is the last advance's end
    cuts = [left + draw.textlength(text[:i], font=font) for i in range(len(text) + 1)]
    chars = [(ch, (int(cuts[i]), int(y0), int(round(cuts[i + 1])), int(y1))) for i, ch in enumerate(text)]
    return Printed(text, (int(x0), int(y0), int(x1), int(y1)), cue, chars)


def _chart(rng: random.Random, text_px: int) -> ReadingItem:
    width, height = rng.randint(920, 1080), rng.randint(920, 1080)
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    small = _font(text_px + rng.choice([-1, 0, 0, 1]))
    draw.text((width // 2, 40), rng.choice(_TITLES), fill=(0, 0, 0), font=_font(34), anchor="mt")
    left, right, top, bottom = 110, width - 50, 120, height - 90
    numbers: list[Printed] = []
    draw.line((left, top, left, bottom), fill=(0, 0, 0), width=2)
    draw.line((left, bottom, right, bottom), fill=(0, 0, 0), width=2)
    step = rng.choice([10, 20, 25])
    ticks = list(range(step, 100, step))
    for value in ticks:  # tick labels: small numbers that are never an answer's cue
        y = bottom - (bottom - top) * value / 100
        draw.line((left - 6, y, left, y), fill=(0, 0, 0), width=1)
        numbers.append(_put(draw, (left - 10, y), str(value), small, anchor="rm"))
    n_bars = rng.randint(3, 6)
    colours = rng.sample(COLOUR_NAMES, n_bars)
    slot = (right - left) / n_bars
    bar_w = min(int(slot * rng.uniform(0.45, 0.7)), 160)
    regions, questions = [], []
    for i, colour in enumerate(colours):
        x0 = int(left + slot * i + (slot - bar_w) / 2)
        bar_top = int(bottom - (bottom - top) * rng.uniform(0.25, 0.95))
        box = (x0, bar_top, x0 + bar_w, bottom - 1)
        draw.rectangle(box, fill=COLOURS[colour])
        regions.append((colour, box))
        label = _answer(rng)
        numbers.append(_put(draw, (x0 + bar_w / 2, bar_top + 8), label, small, anchor="mt", cue=colour))
        category = rng.choice(_CATEGORIES)
        draw.text((x0 + bar_w / 2, bottom + 12), category, fill=(0, 0, 0), font=small, anchor="mt")
        questions.append((f"What is the value of the {colour} bar?", label, colour))
    question, answer, cue = rng.choice(questions)
    return ReadingItem("chart", img, question, answer, cue, numbers, regions, questions)


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int], margin: int = 0) -> bool:
    return not (a[2] + margin <= b[0] or b[2] + margin <= a[0] or a[3] + margin <= b[1] or b[3] + margin <= a[1])


def _doc(rng: random.Random, text_px: int) -> ReadingItem:
    width, height = rng.randint(920, 1080), rng.randint(920, 1080)
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    small = _font(text_px + rng.choice([-1, 0, 0, 1]))
    draw.text((60, 40), rng.choice(_DOC_TITLES), fill=(0, 0, 0), font=_font(32))
    n_boxes = rng.randint(3, 5)
    colours = rng.sample(COLOUR_NAMES, n_boxes)
    regions: list[tuple[str, tuple[int, int, int, int]]] = []
    while len(regions) < n_boxes:  # non-overlapping boxes below the title
        w, h = rng.randint(90, 170), rng.randint(38, 60)
        x0, y0 = rng.randint(50, width - w - 50), rng.randint(110, height - h - 40)
        box = (x0, y0, x0 + w, y0 + h)
        if not any(_overlaps(box, other, margin=24) for _, other in regions):
            regions.append((colours[len(regions)], box))
    numbers: list[Printed] = []
    questions = []
    for colour, box in regions:
        draw.rectangle(box, fill=COLOURS[colour])
        label = _answer(rng)
        at = (box[0] + rng.randint(10, max(10, box[2] - box[0] - 40)), (box[1] + box[3]) / 2)
        numbers.append(_put(draw, at, label, small, anchor="lm", cue=colour))
        questions.append((f"What is the number in the {colour} box?", label, colour))
    y = 110
    grey = (40, 40, 40)
    while y < height - 40:  # lines of small distractor text, skipping the boxes
        x = 60
        while x < width - 120:
            token = _distractor(rng)
            x0, y0, x1, y1 = draw.textbbox((x, y), token, font=small)
            if not any(_overlaps((x0, y0, x1, y1), box, margin=10) for _, box in regions):
                printed = _put(draw, (x, y), token, small, fill=grey)
                if token.isdigit():
                    numbers.append(printed)
            x = x1 + rng.randint(30, 90)
        y += rng.randint(40, 72)
    question, answer, cue = rng.choice(questions)
    return ReadingItem("doc", img, question, answer, cue, numbers, regions, questions)


def _page(rng: random.Random, text_px: int) -> ReadingItem:
    """A training page densely printed with digits and words, some on cue colours: the most characters to read
    per pixel, for the tower's dense reading objective (no question of its own)."""
    size = rng.randint(420, 640)
    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    regions: list[tuple[str, tuple[int, int, int, int]]] = []
    for colour in rng.sample(COLOUR_NAMES, rng.randint(1, 4)):
        w, h = rng.randint(60, 200), rng.randint(30, 120)
        x0, y0 = rng.randint(0, size - w), rng.randint(0, size - h)
        regions.append((colour, (x0, y0, x0 + w, y0 + h)))
        draw.rectangle(regions[-1][1], fill=COLOURS[colour])
    numbers: list[Printed] = []
    y = rng.randint(4, 20)
    while y < size - 16:
        font = _font(text_px + rng.randint(-2, 3))
        x = rng.randint(4, 30)
        while x < size - 30:
            roll = rng.random()
            token = str(rng.randint(0, 9)) if roll < 0.45 else str(rng.randint(10, 999)) if roll < 0.8 \
                else rng.choice(_WORDS)
            printed = _put(draw, (x, y), token, font, fill=(0, 0, 0) if rng.random() < 0.8 else (60, 60, 60))
            if token.isdigit():
                numbers.append(printed)
            x = printed.box[2] + rng.randint(6, 40)
        y += rng.randint(18, 40)
    return ReadingItem("page", img, "", "", "", numbers, regions, [])


_RENDERERS = {"chart": _chart, "doc": _doc, "page": _page}


def make_item(kind: str, index: int, seed: int = 0, split: str = "test", text_px: int = 12) -> ReadingItem:
    """Item ``index`` of a split; the same arguments always give the same image, question and answer."""
    if kind not in _RENDERERS:
        raise ValueError(f"unknown reading set {kind!r}; expected one of {KINDS} (or 'page', training only)")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    rng = random.Random(f"reading:{seed}:{kind}:{split}:{index}")
    return _RENDERERS[kind](rng, text_px)


def to_record(item: ReadingItem, index: int, seed: int = 0) -> dict[str, Any]:
    """The item as one row of the hub schema its set imitates (ChartQA for charts, DocVQA for documents)."""
    if item.kind == "chart":
        return {"type": ("human_test", "augmented_test")[index % 2], "question": item.question,
                "answer": item.answer, "image": item.png()}
    return {"questionId": str(700000 + index), "question": item.question, "question_types": ["reading"],
            "image": item.png(), "docId": 70000 + index, "ucsf_document_id": f"read{seed:02d}{index:06d}",
            "ucsf_document_page_no": "1", "answers": [item.answer], "data_split": "val"}


def make_records(kind: str, n: int, seed: int = 0, split: str = "test", text_px: int = 12) -> list[dict[str, Any]]:
    """``n`` hub-schema rows of a reading set (one question per image)."""
    return [to_record(make_item(kind, i, seed, split, text_px), i, seed) for i in range(n)]


def write_reading_set(kind: str, out_dir: str | Path, n: int, seed: int = 0, split: str = "test",
                      text_px: int = 12) -> Path:
    """Write ``n`` rows of a reading set where the tasks read them; returns the file for ``SHIRG_*_PATH``.

    The file is named after the split its task reads (``test`` for ChartQA-like charts, ``validation`` for
    DocVQA-like documents), whatever reading split (``split``) the rows come from.
    """
    from .synthetic import write_dataset

    return write_dataset(make_records(kind, n, seed, split, text_px), out_dir)


# The lmms-eval task that evaluates each reading set; its YAML holds the set's prompts and generation length.
READING_TASKS = {"chart": "chartqa_reading", "doc": "docvqa_reading"}


@functools.cache
def reading_task(kind: str) -> TaskPrompting:
    """The prompts and generation length of the task that evaluates reading set ``kind`` (read once a process)."""
    return task_prompting(READING_TASKS[kind])


GEN_LENGTH_FIELD = "shirg_gen_length"  # a conversation record's canvas (the trainer pads its answer to it)


def write_conversations(out_dir: str | Path, n: int, seed: int = 0, split: str = "train", text_px: int = 12) -> Path:
    """``n`` images of each reading set as a LLaVA-format conversation file (what ``train/lora.py`` reads).

    Every cued region of an image becomes one record, so ``n`` images give about 4 ``n`` records per set. Questions
    carry their task's post-prompt, as short-answer VQA data in LLaVA-format SFT sets do, so a LoRA trains on the
    prompt it is evaluated with; ``shirg_question`` (the question alone) conditions selection, as in the tasks, and
    ``shirg_gen_length`` is the task's answer canvas.
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    entries = []
    for kind in KINDS:
        for i in range(n):
            item = make_item(kind, i, seed, split, text_px)
            rel = f"images/{kind}_{split}_{i:06d}.png"
            (out / rel).write_bytes(item.png())
            for j, (question, answer, _) in enumerate(item.questions):
                entries.append({"id": f"{kind}-{split}-{i}-{j}", "image": rel, "shirg_question": question,
                                GEN_LENGTH_FIELD: reading_task(kind).max_new_tokens,
                                "conversations": [
                                    {"from": "human", "value": f"<image>\n{reading_task(kind).prompt(question)}"},
                                    {"from": "gpt", "value": answer}]})
    path = out / f"reading_{split}.json"
    path.write_text(json.dumps(entries, indent=1))
    return path


DEFAULT_TEST_DOCS = 400


def cache_dir() -> Path:
    """Where rendered sets are kept: ``$SHIRG_CACHE`` or ``~/.cache/shirg_eval``."""
    return Path(os.environ.get("SHIRG_CACHE") or Path.home() / ".cache" / "shirg_eval").expanduser()


def cached_reading_set(kind: str, n: int = DEFAULT_TEST_DOCS, seed: int = 0, split: str = "test",
                       text_px: int = 12) -> Path:
    """The default evaluation set of ``kind``, rendered once into :func:`cache_dir` (atomically, so parallel
    ranks and interrupted renders never leave a partial file); returns the file for the task."""
    folder = cache_dir() / "reading" / f"{kind}-{split}-n{n}-seed{seed}-px{text_px}"
    done = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if done:
        return done[0]
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    path = write_reading_set(kind, tmp, n, seed, split, text_px)
    try:
        os.replace(tmp, folder)
    except OSError:  # another process finished first: use its copy
        shutil.rmtree(tmp, ignore_errors=True)
    return folder / path.name
