"""Answer metrics: ChartQA relaxed accuracy, DocVQA ANLS, corpus CIDEr-D, exact match."""

from shirg_eval.metrics.anls import anls, levenshtein, normalised_levenshtein
from shirg_eval.metrics.cider import CIDER_SCALE, corpus_cider, corpus_cider_scores, tokenize
from shirg_eval.metrics.exact import exact_match, normalise_answer
from shirg_eval.metrics.relaxed import relaxed_correctness

__all__ = [
    "CIDER_SCALE",
    "anls",
    "corpus_cider",
    "corpus_cider_scores",
    "exact_match",
    "levenshtein",
    "normalise_answer",
    "normalised_levenshtein",
    "relaxed_correctness",
    "tokenize",
]
