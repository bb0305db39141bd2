"""Corpus CIDEr-D via pycocoevalcap, with a pure-Python tokeniser (no Java PTB tokenizer here).

pycocoevalcap's ``Cider`` implements CIDEr-D (clipped n-gram tf-idf cosine, Gaussian length penalty, x10) and
returns values around 0-10 for a single-reference corpus; papers (and our reports) quote it x100, so
:func:`corpus_cider` returns ``100 * score``. Note that the document frequencies come from the references of the
corpus itself: a one-sample corpus gets idf 0 everywhere and scores 0 (CIDEr is only meaningful over a corpus).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

CIDER_SCALE = 100.0
_PUNCT = re.compile(r"[^\w\s]", flags=re.UNICODE)


def tokenize(text: str) -> str:
    """Lowercase, replace punctuation by spaces, collapse whitespace (a stand-in for the PTB tokenizer)."""
    return " ".join(_PUNCT.sub(" ", str(text).lower()).split())


def corpus_cider_scores(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> tuple[float, list[float]]:
    """(corpus score, per-sample scores), both on the x100 scale. Samples without references are dropped."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    from pycocoevalcap.cider.cider import Cider  # imported lazily: only needed when scoring

    gts: dict[int, list[str]] = {}
    res: dict[int, list[str]] = {}
    for i, (pred, refs) in enumerate(zip(predictions, references, strict=True)):
        if isinstance(refs, str):
            refs = [refs]
        if not refs:
            continue
        gts[i] = [tokenize(r) for r in refs]
        res[i] = [tokenize(pred if pred is not None else "")]
    if not gts:
        return 0.0, []
    score, scores = Cider().compute_score(gts, res)
    return float(score) * CIDER_SCALE, [float(s) * CIDER_SCALE for s in scores]


def corpus_cider(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus CIDEr-D x100 (see module doc)."""
    return corpus_cider_scores(predictions, references)[0]
