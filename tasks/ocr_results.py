"""Scoring one answer for infovqa_200, textvqa_200 and ocrbench_200 with lmms-eval 0.7.3's own functions.

* InfoVQA ``anls``: ``lmms_eval.api.metrics.anls`` (what ``infovqa_val`` aggregates), through
  :func:`shirg_eval.metrics.anls`.
* TextVQA ``vqa_accuracy``: ``lmms_eval.tasks.textvqa.utils.textvqa_process_results``, which lmms-eval reports as
  ``exact_match``: EvalAI's answer processor on the prediction and the ten human answers, then
  ``min(#matching others / 3, 1)`` averaged over the ten leave-one-out subsets. Renamed because our own
  ``exact_match`` extra (normalised string equality with any answer) sits beside it. lmms-eval's function
  rewrites ``doc["answers"]`` in place, so it gets a copy.
* OCRBench ``ocrbench_mean_score``: the per-item score (0/1) of ``ocrbench_process_results`` (substring match after
  lower-casing and folding full-width ASCII; HME100k with spaces removed and case kept), averaged. lmms-eval's
  own aggregate divides the sum by 1000 whatever the number of items and adds into a module-level counter that
  persists across calls, so it is not used; ``ocrbench_correct`` and ``ocrbench_correct_<type>`` are the
  per-type counts its aggregate prints.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from shirg_eval.metrics import anls, exact_match
from shirg_eval.tasks.efficiency_metrics import efficiency_fields
from shirg_eval.tasks.results import failed_sample, prediction_text
from shirg_eval.tasks.specs import OCRBENCH_QUOTAS, answer_list

TEXTVQA_HEADLINE = "vqa_accuracy"  # lmms-eval's textvqa_val key: exact_match
OCRBENCH_HEADLINE = "ocrbench_mean_score"  # lmms-eval's ocrbench key: ocrbench_accuracy (= total / 1000)


def ocrbench_type_metric(question_type: str) -> str:
    """``ocrbench_correct_<snake_case type>``, e.g. ``ocrbench_correct_scene_text_centric_vqa``."""
    return "ocrbench_correct_" + re.sub(r"[^a-z0-9]+", "_", question_type.lower()).strip("_")


OCRBENCH_TYPE_METRICS = {t: ocrbench_type_metric(t) for t in OCRBENCH_QUOTAS}


def _extras(doc: dict[str, Any], pred: str, answers: list[str]) -> dict[str, Any]:
    out = {"exact_match": exact_match(pred, answers), "cider": {"pred": pred, "refs": answers}}
    out.update(efficiency_fields(doc["shirg_uid"]))
    return out


def textvqa_accuracy(pred: str, answers: Sequence[str], question_id: Any = None) -> float:
    """lmms-eval's TextVQA accuracy of one prediction (its ``exact_match``), on a copy of the answers."""
    from lmms_eval.tasks.textvqa.utils import textvqa_process_results

    # It rewrites "answers" in place, hence a copy; no answers is None, which it scores 0 (an empty list raises).
    scratch = {"answers": [str(a) for a in answers] or None, "question_id": question_id}
    return float(textvqa_process_results(scratch, [pred])["exact_match"])


def ocrbench_item_score(pred: str, answers: Sequence[str] | str, dataset: str, question_type: str) -> int:
    """lmms-eval's OCRBench per-item score (0 or 1)."""
    from lmms_eval.tasks.ocrbench.utils import ocrbench_process_results

    doc = {"answer": answer_list(answers), "dataset": str(dataset), "question_type": str(question_type)}
    return int(ocrbench_process_results(doc, [pred])["ocrbench_accuracy"]["score"])


def _scored(doc: dict[str, Any], results: Sequence[Any], answers_column: str,
            headline: Callable[[str, list[str]], dict[str, Any]]) -> dict[str, Any]:
    """One sample's row: the failure record if the model could not run, else the task's headline fields, then
    exact match, CIDEr's inputs and the efficiency fields (the extras every task carries)."""
    failed = failed_sample(doc)
    if failed is not None:
        return failed
    pred = prediction_text(results)
    answers = answer_list(doc.get(answers_column))
    out: dict[str, Any] = {"shirg_uid": doc["shirg_uid"], "failed": 0, **headline(pred, answers)}
    out.update(_extras(doc, pred, answers))
    return out


def infovqa_results(doc: dict[str, Any], results: Sequence[Any]) -> dict[str, Any]:
    return _scored(doc, results, "answers", lambda pred, answers: {"anls": anls(pred, answers)})


def textvqa_results(doc: dict[str, Any], results: Sequence[Any]) -> dict[str, Any]:
    return _scored(doc, results, "answers", lambda pred, answers: {
        TEXTVQA_HEADLINE: textvqa_accuracy(pred, answers, doc.get("question_id"))})


def ocrbench_results(doc: dict[str, Any], results: Sequence[Any]) -> dict[str, Any]:
    def headline(pred: str, answers: list[str]) -> dict[str, Any]:
        qtype = str(doc["question_type"])
        score = ocrbench_item_score(pred, answers, doc["dataset"], qtype)
        out: dict[str, Any] = {OCRBENCH_HEADLINE: float(score), "ocrbench_correct": score, "question_type": qtype}
        if qtype in OCRBENCH_TYPE_METRICS:
            out[OCRBENCH_TYPE_METRICS[qtype]] = score
        return out

    return _scored(doc, results, "answer", headline)


def count_correct(items: Sequence[Any]) -> int:
    """Correct items (the per-type counts OCRBench's own aggregate prints)."""
    return int(sum(int(x or 0) for x in items))
