"""Corpus CIDEr-D as the COCO caption evaluation computes it: pycocoevalcap's ``Cider`` on PTB-tokenised text.

Tokenisation is :func:`shirg_eval.metrics.ptb_tokenizer.ptb_tokenize`, a pure-Python reproduction of the Java
PTBTokenizer step that pycocoevalcap runs (lower-cased, PTB token rules, its punctuation list removed); the
leaderboard recomputes CIDEr with the same function, so results.json and the leaderboard agree.

pycocoevalcap's ``Cider`` implements CIDEr-D (clipped n-gram tf-idf cosine, Gaussian length penalty, x10) and
returns values around 0-10 for a single-reference corpus; papers (and our reports) quote it x100, so
:func:`corpus_cider` returns ``100 * score``. The document frequencies come from the references of the corpus
itself: a one-sample corpus gets idf 0 everywhere and scores 0 (CIDEr is only meaningful over a corpus).
"""

from __future__ import annotations

from collections.abc import Sequence

from shirg_eval.metrics.ptb_tokenizer import ptb_tokenize

CIDER_SCALE = 100.0


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
        gts[i] = [ptb_tokenize(r) for r in refs]
        res[i] = [ptb_tokenize(pred if pred is not None else "")]
    if not gts:
        return 0.0, []
    score, scores = Cider().compute_score(gts, res)
    return float(score) * CIDER_SCALE, [float(s) * CIDER_SCALE for s in scores]


def corpus_cider(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus CIDEr-D x100 (see module doc)."""
    return corpus_cider_scores(predictions, references)[0]
