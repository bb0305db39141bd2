"""Scoring one answer (``process_results``), corpus CIDEr, failed samples, and keeping results.json to metrics.

Headline metrics are the references' own: ChartQA ``relaxed_overall`` / ``relaxed_human_split`` /
``relaxed_augmented_split`` use lmms-eval 0.7.3's ``relaxed_correctness`` and DocVQA ``anls`` its ``anls`` (the
official scorer's rule); ``relaxed_norm`` is the normalised ChartQA variant, an extra column (see
:mod:`shirg_eval.metrics.relaxed`). ``cider`` is corpus CIDEr-D on PTB-tokenised text, as the leaderboard's.

Besides metrics, ``process_results`` returns per-sample fields (``shirg_uid``, ``run_meta``, ``latency_ms``, ...)
for the samples log, where the leaderboard reads them. lmms-eval would also put each of them into results.json as
an empty list; :func:`shirg_eval.harness.compat.keep_results_to_metrics` leaves them out there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shirg_eval.harness import efficiency
from shirg_eval.metrics import anls, corpus_cider, exact_match, relaxed_correctness, relaxed_norm
from shirg_eval.tasks.efficiency_metrics import efficiency_fields


def prediction_text(results: Sequence[Any]) -> str:
    pred = results[0] if results else ""
    if isinstance(pred, (list, tuple)):
        pred = pred[0] if pred else ""
    if not isinstance(pred, str):
        pred = getattr(pred, "text", None) or ("" if pred is None else str(pred))
    return pred.strip()


def failed_sample(doc: dict[str, Any]) -> dict[str, Any] | None:
    """A sample the model could not run (allow_failures=true): no score keys at all, so lmms-eval's means skip
    it instead of counting it wrong; ``failed`` counts it and ``error`` says why."""
    rec = efficiency.lookup(doc["shirg_uid"])
    if rec is None or rec.error is None:
        return None
    return {"shirg_uid": doc["shirg_uid"], "failed": 1, "error": rec.error, "run_meta": dict(rec.meta)}


def count_failed(items: Sequence[Any]) -> int:
    return int(sum(int(x or 0) for x in items))


def aggregate_cider(items: Sequence[Any]) -> float | None:
    """Corpus CIDEr-D x100 over the per-sample ``{"pred", "refs"}`` items."""
    pairs = [it for it in items if isinstance(it, dict) and it.get("refs")]
    if not pairs:
        return None
    return corpus_cider([str(it.get("pred") or "") for it in pairs], [list(it["refs"]) for it in pairs])


def chartqa_results(doc: dict[str, Any], results: Sequence[Any]) -> dict[str, Any]:
    failed = failed_sample(doc)
    if failed is not None:
        return failed
    pred = prediction_text(results)
    answer = str(doc["answer"])
    score = 1.0 if relaxed_correctness(pred, answer) else 0.0
    out: dict[str, Any] = {"shirg_uid": doc["shirg_uid"], "failed": 0, "relaxed_overall": score}
    # Same split rule as lmms-eval's chartqa utils: anything that is not human_test counts as augmented.
    out["relaxed_human_split" if doc["type"] == "human_test" else "relaxed_augmented_split"] = score
    out["relaxed_norm"] = 1.0 if relaxed_norm(pred, answer) else 0.0
    out["exact_match"] = exact_match(pred, [answer])
    out["cider"] = {"pred": pred, "refs": [answer]}
    out.update(efficiency_fields(doc["shirg_uid"]))
    return out


def docvqa_results(doc: dict[str, Any], results: Sequence[Any]) -> dict[str, Any]:
    failed = failed_sample(doc)
    if failed is not None:
        return failed
    pred = prediction_text(results)
    answers = [str(a) for a in (doc.get("answers") or [])]
    out: dict[str, Any] = {
        "shirg_uid": doc["shirg_uid"],
        "failed": 0,
        "anls": anls(pred, answers),
        "exact_match": exact_match(pred, answers),
        "cider": {"pred": pred, "refs": answers},
    }
    out.update(efficiency_fields(doc["shirg_uid"]))
    return out
