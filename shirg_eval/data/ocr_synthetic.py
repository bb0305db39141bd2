"""Offline, seed-deterministic stand-ins for InfographicVQA, TextVQA and OCRBench in their hub schemas.

The ``infovqa_200`` / ``textvqa_200`` / ``ocrbench_200`` tasks (and lmms-eval's own ``infovqa_val`` /
``textvqa_val`` through a local-parquet YAML) run on what :func:`write_ocr_dataset` writes:

* InfographicVQA (``lmms-lab-encoder/DocVQA``, config ``InfographicVQA``, split ``validation``): ``questionId``
  (str), ``question``, ``answers`` (list[str]), ``answer_type`` (list[str]), ``image``, ``image_url``,
  ``operation/reasoning`` (list[str]), ``ocr`` (str), ``data_split``. Images are tall (600 px wide, 1:3 to 1:5)
  with section captions in small type: the case where a 384 px view loses the text.
* TextVQA (``lmms-lab-encoder/textvqa``, split ``validation``): ``image_id``, ``question_id`` (int),
  ``question`` (lower case, as TextVQA's), ``question_tokens``, ``image``, ``image_width``, ``image_height``,
  ``flickr_original_url``, ``flickr_300k_url``, ``answers`` (ten human answers with the usual variation in
  case, articles and typos), ``image_classes``, ``set_name``, ``ocr_tokens``. A sky/ground scene with one sign.
* OCRBench (``echo840/OCRBench``, split ``test``): ``dataset``, ``question``, ``question_type``, ``answer``
  (list[str]), ``image``; item ``i``'s type follows OCRBench's proportions in every run of 100 items (5 per
  recognition type, 20 per VQA/KIE type, 10 handwritten math), so 200 items hold exactly the subset's quotas.

``image`` is PNG bytes, or None with ``render=False`` (the text, and so ``shirg_uid``, is the same either way).
Item ``i`` draws from ``random.Random(f"{seed}:<set>:{i}")``, so it does not depend on ``n``.
"""

from __future__ import annotations

import io
import random
import string
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from shirg_eval.data.synthetic import write_dataset

SPLITS = {"infovqa": "validation", "textvqa": "validation", "ocrbench": "test"}
_TOPICS = ["Coffee", "Cycling", "Recycling", "Streaming", "Tourism", "Solar power", "Remote work", "Reading",
           "Vaccination", "Gaming", "Water use", "Air travel"]
_GROUPS = ["adults", "teenagers", "students", "households", "employees", "retirees", "parents", "drivers"]
_REGIONS = ["Europe", "Asia", "Africa", "Oceania", "North America", "South America"]
_SIGN_WORDS = ["BAKERY", "PHARMACY", "HOTEL", "EXIT", "STOP", "CAFE", "MARKET", "BOOKS", "TAXI", "GARAGE",
               "DINER", "POST OFFICE", "FLOWERS", "SUSHI", "PIZZA", "CINEMA"]
_WORDS = ["river", "garden", "station", "window", "yellow", "market", "silver", "candle", "planet", "forest",
          "bridge", "letter", "orange", "summer", "castle", "pencil"]
OCRBENCH_TYPES = (  # (question_type, source dataset, items per 100)
    ("Regular Text Recognition", "IIIT5K", 5),
    ("Irregular Text Recognition", "CUTE80", 5),
    ("Artistic Text Recognition", "WordArt", 5),
    ("Handwriting Recognition", "IAM", 5),
    ("Digit String Recognition", "ORAND", 5),
    ("Non-Semantic Text Recognition", "Non-Semantic Text", 5),
    ("Scene Text-centric VQA", "textVQA", 20),
    ("Doc-oriented VQA", "docVQA", 20),
    ("Key Information Extraction", "SROIE", 20),
    ("Handwritten Mathematical Expression Recognition", "HME100k", 10),
)
_OCRBENCH_CYCLE = [i for i, (_, _, per100) in enumerate(OCRBENCH_TYPES) for _ in range(per100)]


def _font(size: int) -> Any:
    return ImageFont.load_default(size=size)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------- InfoVQA


def _infovqa_item(rng: random.Random) -> tuple[dict[str, Any], Any]:
    topic = rng.choice(_TOPICS)
    groups = rng.sample(_GROUPS, 4)
    shares = rng.sample(range(5, 96), 4)
    regions = rng.sample(_REGIONS, 3)
    year = rng.randint(2012, 2023)
    width, height = 600, rng.choice([1800, 2400, 3000])
    kind = rng.choice(["single", "single", "multi", "question", "count"])
    if kind == "single":
        i = rng.randrange(4)
        question, answers, types = f"What percentage of {groups[i]} are into {topic.lower()}?", [f"{shares[i]}%"], ["single span"]
    elif kind == "multi":
        question = f"Which regions are listed under top markets for {topic.lower()}?"
        answers, types = [", ".join(regions[:2]), " and ".join(regions[:2])], ["multi-span"]
    elif kind == "question":
        i = rng.randrange(4)
        question = f"Are more {groups[i]} or {groups[(i + 1) % 4]} into {topic.lower()}?"
        answers, types = [groups[i] if shares[i] > shares[(i + 1) % 4] else groups[(i + 1) % 4]], ["question span"]
    else:
        question = f"How many groups have a share above 50% in {year}?"
        answers, types = [str(sum(s > 50 for s in shares))], ["non-extractive"]
    lines = [f"{topic.upper()} IN {year}"] + [f"{s}% of {g}" for s, g in zip(shares, groups, strict=True)]
    lines += ["Top markets: " + ", ".join(regions[:2])]
    record = {"question": question, "answers": answers, "answer_type": types,
              "operation/reasoning": ["counting"] if kind == "count" else [], "ocr": " ".join(lines)}
    spec = (topic, year, shares, groups, regions, width, height, rng.randint(0, 2**31))
    return record, spec


def _render_infographic(spec: Any) -> bytes:
    topic, year, shares, groups, regions, width, height, noise_seed = spec
    rng = random.Random(noise_seed)
    img = Image.new("RGB", (width, height), (246, 242, 232))
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, width, 160), fill=(40, 70, 120))
    draw.text((30, 50), f"{topic.upper()} IN {year}", fill="white", font=_font(40))
    band = (height - 400) // 4
    for k, (share, group) in enumerate(zip(shares, groups, strict=True)):
        top = 200 + k * band
        draw.ellipse((30, top, 150, top + 120), fill=(220, 120 + 20 * k, 60))
        draw.text((48, top + 40), f"{share}%", fill="white", font=_font(32))
        draw.text((180, top + 30), f"{share}% of {group}", fill=(30, 30, 30), font=_font(11))  # the small print
        draw.rectangle((180, top + 60, 180 + 3 * share, top + 80), fill=(90, 140, 200))
        for j in range(3):  # filler text, as infographics carry
            draw.text((180, top + 95 + 14 * j), " ".join(rng.sample(_WORDS, 6)), fill=(120, 120, 120), font=_font(9))
    draw.text((30, height - 150), "Top markets: " + ", ".join(regions[:2]), fill=(30, 30, 30), font=_font(12))
    return _png(img)


def make_infovqa(n: int = 200, seed: int = 0, render: bool = True) -> list[dict[str, Any]]:
    records = []
    for i in range(n):
        record, spec = _infovqa_item(random.Random(f"{seed}:infovqa:{i}"))
        record.update({"questionId": str(90000 + i), "image_url": "", "data_split": "val",
                       "image": _render_infographic(spec) if render else None})
        records.append(record)
    return records


# ----------------------------------------------------------------------------------------------- TextVQA


def _human_answers(rng: random.Random, word: str) -> list[str]:
    """Ten answers as TextVQA's annotators give them: mostly the text, some case/article/typo variants."""
    variants = [word.lower(), word.lower(), word, f"the {word.lower()}", word.lower() + ".",
                word.lower()[:-1] if len(word) > 3 else word.lower(), "unanswerable"]
    weights = [5, 2, 2, 1, 1, 1, 1]
    return rng.choices(variants, weights=weights, k=10)


def make_textvqa(n: int = 200, seed: int = 0, render: bool = True) -> list[dict[str, Any]]:
    records = []
    for i in range(n):
        rng = random.Random(f"{seed}:textvqa:{i}")
        word = rng.choice(_SIGN_WORDS)
        number = str(rng.randint(1, 999))
        if rng.random() < 0.7:
            question, target = rng.choice(["what does the sign say?", "what is written on the sign?",
                                           "what kind of shop is this?"]), word
        else:
            question, target = "what number is on the sign?", number
        width, height = rng.choice([(1024, 768), (800, 600), (1024, 683)])
        record = {
            "image_id": f"{rng.getrandbits(64):016x}", "question_id": 50000 + i, "question": question,
            "question_tokens": question.rstrip("?").split(), "image_width": width, "image_height": height,
            "flickr_original_url": "", "flickr_300k_url": "", "answers": _human_answers(rng, target),
            "image_classes": ["Building", "Sign"], "set_name": "val", "ocr_tokens": [*word.lower().split(), number],
        }
        record["image"] = _render_scene(rng, word, number, width, height) if render else None
        records.append(record)
    return records


def _render_scene(rng: random.Random, word: str, number: str, width: int, height: int) -> bytes:
    img = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(img)
    horizon = int(height * rng.uniform(0.45, 0.65))
    for y in range(horizon):  # sky gradient
        draw.line((0, y, width, y), fill=(110 + y * 100 // horizon, 160 + y * 60 // horizon, 230))
    draw.rectangle((0, horizon, width, height), fill=(90, 110, 80))
    bx = rng.randint(40, width // 2)
    bw, bh = rng.randint(width // 4, width // 2), rng.randint(height // 4, horizon - 20)
    draw.rectangle((bx, horizon - bh, bx + bw, horizon), fill=(170, 150, 130))
    size = rng.randint(14, 30)
    sign_w = int(len(word) * size * 0.7) + 40
    sx, sy = bx + 10, horizon - bh + 15
    draw.rectangle((sx, sy, sx + sign_w, sy + size + 30), fill=rng.choice([(180, 30, 30), (20, 60, 140), (250, 250, 240)]))
    ink = "black" if img.getpixel((sx + 2, sy + 2))[0] > 200 else "white"
    draw.text((sx + 20, sy + 12), word, fill=ink, font=_font(size))
    draw.text((bx + bw - 60, horizon - 40), number, fill="black", font=_font(max(10, size // 2)))
    return _png(img)


# ----------------------------------------------------------------------------------------------- OCRBench


def _crop(text: str, size: int = 28, fill=(0, 0, 0), bg=(255, 255, 255)) -> Image.Image:
    font = _font(size)
    w = int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(text, font=font)) + 24
    img = Image.new("RGB", (max(w, 32), size + 24), bg)
    ImageDraw.Draw(img).text((12, 10), text, fill=fill, font=font)
    return img


def _handwritten(text: str, rng: random.Random) -> Image.Image:
    img = Image.new("RGB", (30 + 22 * len(text), 70), (250, 248, 240))
    draw = ImageDraw.Draw(img)
    x = 12
    for ch in text:  # per-character jitter in place, size and ink: a handwriting stand-in
        draw.text((x, 18 + rng.randint(-5, 5)), ch, fill=(20, 20, rng.randint(60, 140)), font=_font(rng.randint(22, 30)))
        x += 18 + rng.randint(0, 5)
    return img


def _document(lines: list[str], width: int = 640) -> Image.Image:
    img = Image.new("RGB", (width, 60 + 26 * len(lines)), "white")
    draw = ImageDraw.Draw(img)
    for k, line in enumerate(lines):
        draw.text((30, 30 + 26 * k), line, fill="black", font=_font(16))
    return img


def _ocrbench_item(type_index: int, rng: random.Random) -> tuple[str, list[str], Image.Image]:
    """(question, answers, image) for one item of OCRBENCH_TYPES[type_index]."""
    qtype = OCRBENCH_TYPES[type_index][0]
    word = rng.choice(_WORDS) + rng.choice(["", "", "s", "er", "ing"])
    read = "what is written in the image?"
    if qtype == "Regular Text Recognition":
        return read, [word], _crop(word, rng.randint(20, 36), bg=tuple(rng.randint(215, 255) for _ in range(3)))
    if qtype == "Irregular Text Recognition":
        return read, [word], _crop(word, rng.randint(24, 36)).rotate(rng.choice([-25, -15, 15, 25]), expand=True, fillcolor="white")
    if qtype == "Artistic Text Recognition":
        colour = tuple(rng.randint(0, 200) for _ in range(3))
        return read, [word], _crop(word.upper(), 40, fill=colour, bg=(255, 235, 200))
    if qtype == "Handwriting Recognition":
        return read, [word], _handwritten(word, rng)
    if qtype == "Digit String Recognition":
        digits = "".join(rng.choice(string.digits) for _ in range(rng.randint(4, 9)))
        return "what is the number in the image?", [digits], _handwritten(digits, rng)
    if qtype == "Non-Semantic Text Recognition":
        junk = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(5, 8)))
        return read, [junk], _crop(junk)
    if qtype == "Scene Text-centric VQA":
        sign = rng.choice(_SIGN_WORDS)
        scene = Image.open(io.BytesIO(_render_scene(rng, sign, str(rng.randint(1, 99)), 640, 480)))
        return "What is written on the sign?", [sign], scene
    if qtype == "Doc-oriented VQA":
        date = f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/{rng.randint(1990, 2020)}"
        ref = f"{rng.randint(1000, 9999)}-{rng.choice(string.ascii_uppercase)}"
        lines = ["MEMORANDUM", f"Date: {date}", f"Reference: {ref}", "Subject: " + " ".join(rng.sample(_WORDS, 3))]
        question, answer = rng.choice([("What is the date of the memo?", date), ("What is the reference number?", ref)])
        return question, [answer], _document(lines)
    if qtype == "Key Information Extraction":
        total = f"{rng.randint(1, 300)}.{rng.randint(0, 99):02d}"
        shop = f"{rng.choice(_WORDS).upper()} MART SDN BHD"
        lines = [shop, f"Invoice no: {rng.randint(10000, 99999)}", f"Items: {rng.randint(1, 9)}", f"TOTAL: {total}"]
        key, value = rng.choice([("total", total), ("company", shop)])
        return f"What is the value for '{key}'? Answer this question using the text in the image directly.", \
            [value], _document(lines, 520)
    a, b = rng.randint(2, 9), rng.randint(1, 9)
    latex = rng.choice([f"x ^ {{ {a} }} + {b}", f"\\frac {{ {a} }} {{ {b} }}", f"{a} \\times {b} = {a * b}"])
    shown = latex.replace("^ {", "^").replace("\\frac {", "").replace("\\times", "x").replace("{", "").replace("}", "")
    return ("Please write out the expression of the formula in the image using LaTeX format.", [latex],
            _handwritten(shown, rng))


def make_ocrbench(n: int = 200, seed: int = 0, render: bool = True) -> list[dict[str, Any]]:
    records = []
    for i in range(n):
        rng = random.Random(f"{seed}:ocrbench:{i}")
        type_index = _OCRBENCH_CYCLE[i % len(_OCRBENCH_CYCLE)]
        question, answers, image = _ocrbench_item(type_index, rng)
        qtype, dataset, _ = OCRBENCH_TYPES[type_index]
        records.append({"dataset": dataset, "question": question, "question_type": qtype, "answer": answers,
                        "image": _png(image) if render else None})
    return records


# ----------------------------------------------------------------------------------------------- writing


def features_for(kind: str) -> Any:
    """The hub schema of ``kind`` (``infovqa`` | ``textvqa`` | ``ocrbench``) as ``datasets.Features``."""
    from datasets import Features, List, Value
    from datasets import Image as ImageFeature

    text, texts = Value("string"), List(Value("string"))
    if kind == "infovqa":
        return Features({"questionId": text, "question": text, "answers": texts, "answer_type": texts,
                         "image": ImageFeature(), "image_url": text, "operation/reasoning": texts, "ocr": text,
                         "data_split": text})
    if kind == "textvqa":
        return Features({"image_id": text, "question_id": Value("int32"), "question": text, "question_tokens": texts,
                         "image": ImageFeature(), "image_width": Value("int32"), "image_height": Value("int32"),
                         "flickr_original_url": text, "flickr_300k_url": text, "answers": texts,
                         "image_classes": texts, "set_name": text, "ocr_tokens": texts})
    if kind == "ocrbench":
        return Features({"dataset": text, "question": text, "question_type": text, "answer": texts,
                         "image": ImageFeature()})
    raise ValueError(f"unknown kind {kind!r}: expected one of {sorted(SPLITS)}")


MAKERS = {"infovqa": make_infovqa, "textvqa": make_textvqa, "ocrbench": make_ocrbench}
ENV_VARS = {"infovqa": "SHIRG_INFOVQA_PATH", "textvqa": "SHIRG_TEXTVQA_PATH", "ocrbench": "SHIRG_OCRBENCH_PATH"}


def write_ocr_dataset(kind: str, records: list[dict[str, Any]], out_dir: str | Path, fmt: str = "parquet") -> Path:
    """Write ``kind``'s records in its hub schema and split; returns the path for its ``SHIRG_*_PATH``."""
    return write_dataset(records, out_dir, fmt, split=SPLITS[kind], features=features_for(kind))
