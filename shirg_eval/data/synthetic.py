"""Offline, seed-deterministic stand-ins for ChartQA, DocVQA and the LCS-558K captioning set.

Records use the schemas of the hub datasets that lmms-eval reads, so the ``chartqa_200`` / ``docvqa_200`` tasks run
on them unchanged (point ``SHIRG_CHARTQA_PATH`` / ``SHIRG_DOCVQA_PATH`` at what :func:`write_dataset` writes):

* ChartQA (``lmms-lab-encoder/ChartQA``, split ``test``): ``type`` (``"human_test"`` / ``"augmented_test"``, the
  values lmms-eval's chartqa utils split on), ``question``, ``answer`` (str), ``image``.
* DocVQA (``lmms-lab-encoder/DocVQA``, split ``validation``): ``questionId`` (str), ``question``,
  ``question_types`` (list[str]), ``image``, ``docId`` (int), ``ucsf_document_id``, ``ucsf_document_page_no``,
  ``answers`` (list[str]), ``data_split``.

In memory a record's ``image`` is PNG bytes (what the ``datasets.Image`` feature stores), or None with
``render=False``: question/answer text never depends on rendering, so ``render=False`` gives exactly the same
text (and therefore the same ``shirg_uid`` values) quickly. Every chart/document draws from its own
``random.Random(f"{seed}:...:{i}")``, so item ``i`` does not depend on ``n``.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

CHARTQA_SPLIT = "test"
DOCVQA_SPLIT = "validation"
CHARTQA_TYPES = ("human_test", "augmented_test")
LCS_JSON_NAME = "blip_laion_cc_sbu_558k.json"

# ----------------------------------------------------------------------------------------------- features


def chartqa_features() -> Any:
    from datasets import Features, Image, Value

    return Features({"type": Value("string"), "question": Value("string"), "answer": Value("string"), "image": Image()})


def docvqa_features() -> Any:
    from datasets import Features, Image, List, Value

    return Features(
        {
            "questionId": Value("string"),
            "question": Value("string"),
            "question_types": List(Value("string")),
            "image": Image(),
            "docId": Value("int64"),
            "ucsf_document_id": Value("string"),
            "ucsf_document_page_no": Value("string"),
            "answers": List(Value("string")),
            "data_split": Value("string"),
        }
    )


# ----------------------------------------------------------------------------------------------- ChartQA

_CATEGORY_POOLS = {
    "country": ["Canada", "Brazil", "Japan", "Kenya", "Norway", "Chile", "India", "Spain", "Egypt", "Peru",
                "Italy", "Ghana", "Mexico", "Poland", "Vietnam", "Sweden"],
    "year": [str(y) for y in range(2008, 2024)],
    "product": ["Laptops", "Phones", "Tablets", "Cameras", "Watches", "Speakers", "Monitors", "Printers",
                "Routers", "Consoles"],
    "sector": ["Energy", "Health", "Retail", "Finance", "Transport", "Education", "Tourism", "Farming"],
}
_MEASURES = ["Revenue (million USD)", "Share of respondents", "Number of users (thousands)", "Exports (bn USD)",
             "Average price (USD)", "Unemployment rate", "Visitors (millions)", "Emissions (Mt CO2)"]
_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#17becf", "#bcbd22"]


def _fmt_value(v: float) -> str:
    """ChartQA-style numeric answer: integers without a decimal point, otherwise one decimal."""
    return str(int(round(v))) if abs(v - round(v)) < 1e-9 else f"{v:.1f}"


def _chart_spec(rng: random.Random) -> dict[str, Any]:
    kind = rng.choice(["bar", "line", "pie"])
    if kind == "line":
        axis = "year"  # line charts are time series
    else:
        axis = rng.choice(["country", "product", "sector"])
    k = rng.randint(4, 6) if kind != "line" else rng.randint(5, 8)
    if axis == "year":
        start = rng.randint(0, len(_CATEGORY_POOLS["year"]) - k)
        cats = _CATEGORY_POOLS["year"][start : start + k]
    else:
        cats = rng.sample(_CATEGORY_POOLS[axis], k)
    if kind == "pie":
        # Integer percentages summing to 100, all distinct so "largest"/"smallest" are unambiguous.
        while True:
            cuts = sorted(rng.sample(range(3, 97), k - 1))
            vals = [b - a for a, b in zip([0, *cuts], [*cuts, 100], strict=True)]
            if min(vals) >= 3 and len(set(vals)) == k:
                break
        values = [float(v) for v in vals]
        measure = "Share (%)"
    else:
        decimals = rng.random() < 0.4
        while True:
            values = [round(rng.uniform(5, 95), 1) if decimals else float(rng.randint(5, 95)) for _ in cats]
            if len(set(values)) == k:
                break
        measure = rng.choice(_MEASURES)
    title = f"{measure.split(' (')[0]} by {axis}" + (f", {rng.randint(2015, 2023)}" if axis != "year" else "")
    return {"kind": kind, "axis": axis, "categories": cats, "values": values, "measure": measure, "title": title}


def _chart_questions(spec: dict[str, Any], rng: random.Random, human: bool) -> list[tuple[str, str]]:
    """Candidate (question, answer) pairs for one chart, in preference order."""
    cats, vals, axis = spec["categories"], spec["values"], spec["axis"]
    i, j = rng.sample(range(len(cats)), 2)
    hi = cats[vals.index(max(vals))]
    lo = cats[vals.index(min(vals))]
    diff = _fmt_value(round(abs(vals[i] - vals[j]), 1))
    pie = spec["kind"] == "pie"
    what = "percentage" if pie else "value"
    if human:
        value_q = (f"What {what} does {cats[i]} have?" if pie else f"What was the value for {cats[i]}?")
        label_q = f"Which {axis} has the largest share?" if pie else f"Which {axis} had the highest value?"
        low_q = f"Which {axis} has the smallest share?" if pie else f"Which {axis} had the lowest value?"
        cmp_q = f"What is the difference between {cats[i]} and {cats[j]}?"
    else:
        value_q = f"What is the {what} of {cats[i]}?"
        label_q = f"Which {axis} has the highest {what}?"
        low_q = f"Which {axis} has the lowest {what}?"
        cmp_q = f"What is the difference between the {what}s of {cats[i]} and {cats[j]}?"
    kinds = [("value", (value_q, _fmt_value(vals[i]))), ("label", (label_q, hi)), ("label", (low_q, lo)),
             ("compare", (cmp_q, diff))]
    first = rng.choice(["value", "label", "compare"])
    return [qa for kind, qa in kinds if kind == first] + [qa for kind, qa in kinds if kind != first]


def _render_chart(spec: dict[str, Any]) -> bytes:
    # Figure + Agg canvas directly (no pyplot): no global state, safe and fast in a loop.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(111)
    cats, vals = spec["categories"], spec["values"]
    if spec["kind"] == "bar":
        bars = ax.bar(cats, vals, color=_COLOURS[: len(cats)])
        ax.bar_label(bars, labels=[_fmt_value(v) for v in vals], fontsize=9)
        ax.set_ylabel(spec["measure"])
        ax.set_ylim(0, max(vals) * 1.15)
    elif spec["kind"] == "line":
        ax.plot(cats, vals, marker="o", color=_COLOURS[0])
        for x, v in zip(cats, vals, strict=True):
            ax.annotate(_fmt_value(v), (x, v), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=9)
        ax.set_ylabel(spec["measure"])
        ax.set_ylim(0, max(vals) * 1.2)
    else:
        ax.pie(vals, labels=[f"{c} {_fmt_value(v)}%" for c, v in zip(cats, vals, strict=True)], colors=_COLOURS[: len(cats)],
               startangle=90, counterclock=False, textprops={"fontsize": 9})
        ax.set_aspect("equal")
    ax.set_title(spec["title"], fontsize=11)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def make_chartqa(n: int = 200, seed: int = 0, render: bool = True) -> list[dict[str, Any]]:
    """``n`` ChartQA-like records; even indices ``human_test``, odd ``augmented_test`` (half and half)."""
    records: list[dict[str, Any]] = []
    seen: set[tuple[str, str, str]] = set()
    for i in range(n):
        rng = random.Random(f"{seed}:chartqa:{i}")
        typ = CHARTQA_TYPES[i % 2]
        spec = _chart_spec(rng)
        candidates = _chart_questions(spec, rng, human=typ == "human_test")
        # Keep (type, question, answer) unique across the set: a text-only shirg_uid then identifies every doc
        # without hashing image bytes (real ChartQA has a few repeats; the tasks handle those separately).
        chosen = None
        for q, a in candidates:
            if (typ, q, a) not in seen:
                chosen = (q, a)
                break
        if chosen is None:
            q, a = candidates[0]
            chosen = (f"In the chart titled '{spec['title']}', {q[0].lower()}{q[1:]}", a)
            k = 2
            while (typ, *chosen) in seen:
                chosen = (f"{chosen[0]} (chart {k})", a)
                k += 1
        seen.add((typ, *chosen))
        records.append({"type": typ, "question": chosen[0], "answer": chosen[1],
                        "image": _render_chart(spec) if render else None})
    return records


# ----------------------------------------------------------------------------------------------- DocVQA

_FIRST = ["John", "Mary", "Robert", "Linda", "James", "Susan", "David", "Karen", "Thomas", "Nancy", "Paul", "Helen"]
_LAST = ["Miller", "Johnson", "Walker", "Harris", "Young", "Clark", "Lewis", "Turner", "Baker", "Carter", "Reed"]
_COMPANIES = ["Acme Tobacco Co.", "Brown & Sons Ltd.", "Northfield Research Inc.", "Lorillard Corp.",
              "Greenway Foods", "Summit Laboratories", "Atlas Printing Co.", "Bluewater Supplies"]
_STREETS = ["Main Street", "Oak Avenue", "Park Road", "Elm Street", "Lake Drive", "Hill Road"]
_CITIES = ["Richmond, VA", "Durham, NC", "Louisville, KY", "Winston-Salem, NC", "Greensboro, NC"]
_TITLES = ["Director of Research", "Vice President", "Sales Manager", "Chief Chemist", "Project Coordinator"]
_ITEMS = ["Paper (ream)", "Ink cartridge", "Filter samples", "Shipping", "Lab supplies", "Binders", "Postage",
          "Toner", "Folders", "Envelopes"]
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]
_BODY = ("Thank you for your letter regarding the results of the recent study. As discussed at our meeting, "
         "the enclosed report summarises the findings and the proposed schedule for the next phase. Please "
         "review the attached tables and let us know whether the budget remains acceptable. We look forward "
         "to continuing our collaboration and will send the final figures as soon as they are available.")


def _date(rng: random.Random) -> tuple[int, int, int]:
    return rng.randint(1985, 2002), rng.randint(1, 12), rng.randint(1, 28)


def _name(rng: random.Random) -> str:
    return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"


def _doc_receipt(rng: random.Random) -> tuple[list[tuple[str, int, bool]], list[tuple[str, list[str], str]]]:
    """Lines (text, font size, bold) and extractive questions (question, answers, question type)."""
    company = rng.choice(_COMPANIES)
    inv = f"INV-{rng.randint(10000, 99999)}"
    y, m, d = _date(rng)
    items = [(it, rng.randint(1, 9), rng.randint(150, 9999) / 100) for it in rng.sample(_ITEMS, rng.randint(3, 6))]
    subtotal = round(sum(q * p for _, q, p in items), 2)
    tax = round(subtotal * 0.06, 2)
    total = round(subtotal + tax, 2)
    lines = [(company.upper(), 22, True), (f"{rng.randint(10, 999)} {rng.choice(_STREETS)}, {rng.choice(_CITIES)}", 13, False),
             ("", 10, False), ("INVOICE", 20, True), (f"Invoice No.: {inv}", 14, False),
             (f"Date: {m:02d}/{d:02d}/{y}", 14, False), (f"Bill to: {_name(rng)}", 14, False), ("", 10, False),
             (f"{'Item':<22}{'Qty':>5}{'Unit':>10}{'Amount':>11}", 13, True)]
    lines += [(f"{it:<22}{q:>5}{p:>10.2f}{q * p:>11.2f}", 13, False) for it, q, p in items]
    lines += [("", 10, False), (f"Subtotal: ${subtotal:,.2f}", 13, False), (f"Tax (6%): ${tax:,.2f}", 13, False),
              (f"TOTAL: ${total:,.2f}", 15, True)]
    questions = [
        ("What is the invoice number?", [inv, inv.split("-")[1]], "form"),
        ("What is the total amount?", [f"${total:,.2f}", f"{total:,.2f}", f"{total:.2f}"], "table/list"),
        ("What is the date on the invoice?", [f"{m:02d}/{d:02d}/{y}", f"{_MONTHS[m - 1]} {d}, {y}"], "form"),
        ("Which company issued the invoice?", [company, company.rstrip(".")], "layout"),
    ]
    return lines, questions


def _doc_form(rng: random.Random) -> tuple[list[tuple[str, int, bool]], list[tuple[str, list[str], str]]]:
    name = _name(rng)
    y, m, d = _date(rng)
    phone = f"({rng.randint(200, 989)}) {rng.randint(200, 989)}-{rng.randint(1000, 9999)}"
    dept = rng.choice(["Research", "Marketing", "Legal", "Quality Control", "Purchasing"])
    ref = f"{rng.choice('ABCDEFGH')}{rng.randint(100, 999)}-{rng.randint(10, 99)}"
    lines = [(rng.choice(_COMPANIES).upper(), 18, True), ("EMPLOYEE REQUEST FORM", 20, True), ("", 10, False),
             (f"Reference No.: {ref}", 13, False), (f"Name: {name}", 13, False),
             (f"Department: {dept}", 13, False), (f"Telephone: {phone}", 13, False),
             (f"Date submitted: {_MONTHS[m - 1]} {d}, {y}", 13, False), ("", 10, False),
             ("Purpose of request:", 13, True), ("Purchase of laboratory materials for the evaluation", 12, False),
             ("of filter performance as described in the attached memo.", 12, False), ("", 10, False),
             ("Approved by: ______________________", 13, False)]
    questions = [
        ("What is the name given in the form?", [name], "form"),
        ("What is the telephone number?", [phone, phone.replace("(", "").replace(") ", "-")], "form"),
        ("What is the date submitted?", [f"{_MONTHS[m - 1]} {d}, {y}", f"{m:02d}/{d:02d}/{y}"], "form"),
        ("Which department is mentioned in the form?", [dept], "form"),
        ("What is the reference number?", [ref], "layout"),
    ]
    return lines, questions


def _doc_letter(rng: random.Random) -> tuple[list[tuple[str, int, bool]], list[tuple[str, list[str], str]]]:
    company = rng.choice(_COMPANIES)
    sender, recipient = _name(rng), _name(rng)
    title = rng.choice(_TITLES)
    y, m, d = _date(rng)
    words = _BODY.split()
    body, line = [], ""
    for w in words:  # wrap at ~80 characters
        if len(line) + len(w) + 1 > 80:
            body.append((line, 12, False))
            line = w
        else:
            line = f"{line} {w}".strip()
    body.append((line, 12, False))
    lines = [(company.upper(), 20, True), (f"{rng.randint(10, 999)} {rng.choice(_STREETS)}, {rng.choice(_CITIES)}", 12, False),
             ("", 10, False), (f"{_MONTHS[m - 1]} {d}, {y}", 13, False), ("", 10, False),
             (f"Mr. {recipient}" if rng.random() < 0.5 else f"Dr. {recipient}", 13, False), ("", 10, False),
             (f"Dear {recipient.split()[1]}:", 13, False), ("", 8, False), *body, ("", 10, False),
             ("Sincerely,", 13, False), ("", 14, False), (sender, 13, False), (title, 12, False)]
    questions = [
        ("Who is the letter addressed to?", [recipient], "layout"),
        ("Who signed the letter?", [sender], "layout"),
        ("What is the date of the letter?", [f"{_MONTHS[m - 1]} {d}, {y}", f"{m:02d}/{d:02d}/{y}"], "layout"),
        ("What is the title of the sender?", [title], "free_text"),
    ]
    return lines, questions


def _font(size: int, bold: bool) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size + (1 if bold else 0))
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font only
        return ImageFont.load_default()


def _render_doc(lines: Sequence[tuple[str, int, bool]]) -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (800, 1000), "white")
    draw = ImageDraw.Draw(img)
    y = 60
    for text, size, bold in lines:
        if text:
            font = _font(size, bold)
            draw.text((60, y), text, fill="black", font=font)
            if bold:  # fake bold: draw again one pixel to the right
                draw.text((61, y), text, fill="black", font=font)
        y += int(size * 1.6)
    draw.rectangle((30, 30, 769, 969), outline="#888888")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def make_docvqa(n: int = 200, seed: int = 0, render: bool = True) -> list[dict[str, Any]]:
    """``n`` DocVQA-like records (2-4 questions per rendered document, like the real set)."""
    records: list[dict[str, Any]] = []
    doc_idx = 0
    while len(records) < n:
        rng = random.Random(f"{seed}:docvqa:{doc_idx}")
        maker = rng.choice([_doc_receipt, _doc_form, _doc_letter])
        lines, questions = maker(rng)
        picked = rng.sample(questions, min(len(questions), rng.randint(2, 4)))
        image = _render_doc(lines) if render else None
        page = str(rng.randint(1, 9))
        for q_idx, (question, answers, qtype) in enumerate(picked):
            if len(records) >= n:
                break
            records.append({
                "questionId": str(50000 + doc_idx * 10 + q_idx),
                "question": question,
                "question_types": [qtype],
                "image": image,
                "docId": 1000 + doc_idx,
                "ucsf_document_id": f"syn{seed:02d}{doc_idx:05d}",
                "ucsf_document_page_no": page,
                "answers": list(dict.fromkeys(answers)),  # de-duplicate, keep order
                "data_split": "val",
            })
        doc_idx += 1
    return records


# ----------------------------------------------------------------------------------------------- LCS

_SHAPES = ["circle", "square", "triangle"]
_LCS_COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (235, 200, 30),
                "purple": (140, 60, 170), "orange": (245, 140, 30)}
_BACKGROUNDS = {"white": (255, 255, 255), "gray": (200, 200, 200), "black": (20, 20, 20)}
_COUNT_WORDS = ["zero", "one", "two", "three", "four"]


def _lcs_item(rng: random.Random) -> tuple[bytes, str]:
    from PIL import Image, ImageDraw

    bg_name = rng.choice(list(_BACKGROUNDS))
    img = Image.new("RGB", (256, 256), _BACKGROUNDS[bg_name])
    draw = ImageDraw.Draw(img)
    groups = []
    for shape in rng.sample(_SHAPES, rng.randint(1, 2)):
        colour = rng.choice([c for c in _LCS_COLOURS if c != groups[0][1]] if groups else list(_LCS_COLOURS))
        groups.append((shape, colour, rng.randint(1, 3)))
    cells = rng.sample(range(16), sum(c for _, _, c in groups))  # 4x4 grid, no overlaps
    k = 0
    for shape, colour, count in groups:
        for _ in range(count):
            cx, cy = 32 + 64 * (cells[k] % 4), 32 + 64 * (cells[k] // 4)
            k += 1
            r = rng.randint(16, 26)
            fill = _LCS_COLOURS[colour]
            if shape == "circle":
                draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
            elif shape == "square":
                draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)
            else:
                draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    parts = [f"{_COUNT_WORDS[c]} {col} {s}{'s' if c > 1 else ''}" for s, col, c in groups]
    caption = (" and ".join(parts) + f" on a {bg_name} background").capitalize() + "."
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue(), caption


_LCS_PROMPTS = ["Describe the image briefly.", "Write a short caption for this image.",
                "What does the image show?", "Give a brief description of the picture."]


def render_lcs(out_dir: str | Path, n: int = 200, seed: int = 0) -> Path:
    """Write ``n`` captioned shape images and a ``blip_laion_cc_sbu_558k.json``-style file; returns the JSON path."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(n):
        rng = random.Random(f"{seed}:lcs:{i}")
        png, caption = _lcs_item(rng)
        rel = f"images/{i:06d}.png"
        (out / rel).write_bytes(png)
        prompt = rng.choice(_LCS_PROMPTS)
        question = f"<image>\n{prompt}" if rng.random() < 0.5 else f"{prompt}\n<image>"
        entries.append({"id": f"{i:09d}", "image": rel,
                        "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": caption}]})
    path = out / LCS_JSON_NAME
    path.write_text(json.dumps(entries, indent=1))
    return path


# ----------------------------------------------------------------------------------------------- writers


def _features_for(records: Sequence[dict[str, Any]]) -> Any:
    keys = set(records[0]) if records else set()
    return docvqa_features() if "questionId" in keys else chartqa_features()


def write_dataset(records: Sequence[dict[str, Any]], out_dir: str | Path, fmt: str = "parquet",
                  split: str | None = None, features: Any = None) -> Path:
    """Write records where the tasks can read them; returns the path to put in ``SHIRG_*_PATH``.

    ``fmt="parquet"``: ``out_dir/<split>.parquet`` (image column typed ``Image``, decoded to PIL on load).
    ``fmt="disk"``: ``DatasetDict({split: ...}).save_to_disk(out_dir)``. ``split`` defaults to the split the task
    reads (``test`` for ChartQA-like, ``validation`` for DocVQA-like records). ``features`` (a ``datasets.Features``)
    names another schema (shirg_eval.data.ocr_synthetic's).
    """
    from datasets import Dataset, DatasetDict

    if not records:
        raise ValueError("no records to write")
    if any(r.get("image") is None for r in records):
        raise ValueError("records have no images (made with render=False?)")
    features = features if features is not None else _features_for(records)
    if split is None:
        split = DOCVQA_SPLIT if "questionId" in records[0] else CHARTQA_SPLIT
    ds = Dataset.from_list([{k: r[k] for k in features} for r in records], features=features)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        path = out / f"{split}.parquet"
        ds.to_parquet(str(path))
        return path
    if fmt == "disk":
        DatasetDict({split: ds}).save_to_disk(str(out))
        return out
    raise ValueError(f"unknown fmt {fmt!r} (use 'parquet' or 'disk')")


def records_digest(records: Sequence[dict[str, Any]]) -> str:
    """sha1 over all record fields (image bytes included): equal digests mean byte-identical data."""
    h = hashlib.sha1()
    for r in records:
        for key in sorted(r):
            value = r[key]
            h.update(key.encode())
            h.update(value if isinstance(value, bytes) else json.dumps(value).encode())
    return h.hexdigest()


SYNTH_SETS = ("chartqa", "docvqa", "infovqa", "textvqa", "ocrbench", "lcs", "reading", "reading_train")


def write_synthetic_sets(out: Path, what: Sequence[str], n: int, seed: int = 0, fmt: str = "parquet",
                         log: Callable[[str], None] = print) -> dict[str, Path]:
    """Write the sets named in ``what`` (from :data:`SYNTH_SETS`) under ``out``; returns {``SHIRG_*_PATH``: file}.

    ``reading`` is the hard reading sets' test split (``n`` documents each), ``reading_train`` their training
    split as LLaVA conversations (``n`` images per set); ``lcs`` has no task, so no variable.
    """
    unknown = set(what) - set(SYNTH_SETS)
    if unknown:
        raise ValueError(f"unknown sets: {sorted(unknown)}; expected some of {', '.join(SYNTH_SETS)}")
    env: dict[str, Path] = {}
    if "chartqa" in what:
        path = write_dataset(make_chartqa(n, seed), out / "chartqa", fmt)
        log(f"wrote {n} ChartQA-like records to {path}")
        env["SHIRG_CHARTQA_PATH"] = path
    if "docvqa" in what:
        path = write_dataset(make_docvqa(n, seed), out / "docvqa", fmt)
        log(f"wrote {n} DocVQA-like records to {path}")
        env["SHIRG_DOCVQA_PATH"] = path
    for kind in ("infovqa", "textvqa", "ocrbench"):
        if kind in what:
            from .ocr_synthetic import ENV_VARS, MAKERS, write_ocr_dataset

            path = write_ocr_dataset(kind, MAKERS[kind](n, seed), out / kind, fmt)
            log(f"wrote {n} {kind}-like records to {path}")
            env[ENV_VARS[kind]] = path
    if "lcs" in what:
        path = render_lcs(out / "lcs", n, seed)
        log(f"wrote {n} LCS-like captions to {path} (images under {path.parent / 'images'})")
    if "reading" in what:
        from .reading import write_reading_set

        for kind, var in (("chart", "SHIRG_READING_CHART_PATH"), ("doc", "SHIRG_READING_DOC_PATH")):
            path = write_reading_set(kind, out / "reading" / kind, n, seed)
            log(f"wrote {n} hard reading ({kind}) records to {path}")
            env[var] = path
    if "reading_train" in what:
        from .reading import write_conversations

        path = write_conversations(out / "reading_train", n, seed)
        log(f"wrote the reading sets' training split ({n} images per set) as conversations to {path}")
    return env
