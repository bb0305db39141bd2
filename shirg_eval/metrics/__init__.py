"""Answer metrics: ChartQA relaxed accuracy, DocVQA ANLS, corpus CIDEr-D, exact match.

Headline metrics match the published references: ChartQA ``relaxed_correctness`` and DocVQA ``anls`` call
lmms-eval 0.7.3's own functions; CIDEr-D is pycocoevalcap's on PTB-tokenised text (:mod:`.ptb_tokenizer`).
"""

from shirg_eval.metrics.anls import anls
from shirg_eval.metrics.cider import CIDER_SCALE, corpus_cider, corpus_cider_scores
from shirg_eval.metrics.exact import exact_match, normalise_answer
from shirg_eval.metrics.ptb_tokenizer import ptb_tokenize
from shirg_eval.metrics.relaxed import relaxed_correctness, relaxed_norm

__all__ = [
    "CIDER_SCALE",
    "anls",
    "corpus_cider",
    "corpus_cider_scores",
    "exact_match",
    "normalise_answer",
    "ptb_tokenize",
    "relaxed_correctness",
    "relaxed_norm",
]
