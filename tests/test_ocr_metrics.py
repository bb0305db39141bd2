"""Headline metrics of infovqa_200 / textvqa_200 / ocrbench_200 on tricky prediction/answer pairs.

Each expected value is worked out by hand from lmms-eval 0.7.3's rules (written next to the case), not by calling
the same function:

* ANLS: both strings stripped, lower-cased, inner whitespace collapsed; NL = Levenshtein / max(len) of the
  *original* strings; score = 1 - min NL over the answers, 0 below 0.5 (0.5 itself kept).
* TextVQA: EvalAI processing (lower-case; commas and "?" dropped; other punctuation removed when next to a space,
  else a space; "." dropped unless before a digit; number words -> digits; a/an/the dropped); with k of the ten
  processed answers equal to the prediction, accuracy = mean over the ten leave-one-out subsets of
  min(matches / 3, 1): k=0 -> 0, 1 -> 0.3, 2 -> 0.6, 3 -> 0.9, k>=4 -> 1.
* OCRBench: 1 if any gold answer (full-width ASCII folded, lower-cased, stripped, newlines -> spaces) is a
  substring of the prediction treated alike; HME100k: spaces removed on both sides, case kept.
"""

from __future__ import annotations

import pytest

from shirg_eval.harness import efficiency
from shirg_eval.tasks import ocr_results


@pytest.fixture(autouse=True)
def _no_records() -> None:
    efficiency.clear()


ANLS_CASES = [
    ("22%", ["22%"], 1.0),  # identical
    ("22", ["22%"], 1 - 1 / 3),  # one deletion over 3 characters
    ("", ["22%"], 0.0),  # empty: NL 1
    ("Employees", ["employees"], 1.0),  # case is ignored
    ("employees.", ["employees"], 0.9),  # trailing dot: 1 / 10
    ("Europe and Asia", ["Europe, Asia", "Europe and Asia"], 1.0),  # best of several gold answers
    ("Europe, Asia", ["Europe, Asia", "Europe and Asia"], 1.0),
    ("1,000", ["1000"], 0.8),  # thousands separator: 1 / 5
    ("1000", ["1,000"], 0.8),
    ("ten", ["10"], 0.0),  # number words are not digits: 3 edits / 3
    ("  22 %", ["22%"], 0.75),  # prediction stripped, then one extra space: 1 / 4
    ("abc", ["abcd"], 0.75),
    ("ab", ["abcd"], 0.5),  # NL exactly 0.5: kept
    ("a", ["abcd"], 0.0),  # 0.25 < 0.5: zero
    ("x", ["x", "yyyyy"], 1.0),
    ("new york", ["New  York"], 1.0),  # repeated inner spaces collapse (the length uses the original: 9)
    ("ÉCOLE", ["école"], 1.0),  # lower-casing is Unicode-aware
    ("anything", [], 0.0),  # no gold answer: scored 0 (shirg_eval's rule; lmms-eval would raise)
]


@pytest.mark.parametrize("pred,answers,expected", ANLS_CASES)
def test_infovqa_anls_table(pred: str, answers: list[str], expected: float) -> None:
    out = ocr_results.infovqa_results({"shirg_uid": "u", "answers": answers}, [pred])
    assert out["anls"] == pytest.approx(expected, abs=1e-9)


def _ten(*groups: tuple[str, int]) -> list[str]:
    answers = [a for a, count in groups for _ in range(count)]
    assert len(answers) == 10
    return answers


TEXTVQA_CASES = [
    ("cafe", _ten(("cafe", 10)), 1.0),
    ("CAFE", _ten(("cafe", 10)), 1.0),  # lower-cased
    ("cafe.", _ten(("cafe", 10)), 1.0),  # "." not before a digit is dropped
    ("the cafe", _ten(("cafe", 10)), 1.0),  # articles dropped
    ("", _ten(("cafe", 10)), 0.0),
    ("cafe", _ten(("cafe", 1), ("bar", 9)), 0.3),  # k=1: nine subsets with 1 match -> 9 * 1/3 / 10
    ("cafe", _ten(("cafe", 2), ("bar", 8)), 0.6),  # k=2: (2 * 1/3 + 8 * 2/3) / 10
    ("cafe", _ten(("cafe", 3), ("bar", 7)), 0.9),  # k=3: (3 * 2/3 + 7) / 10
    ("cafe", _ten(("cafe", 4), ("bar", 6)), 1.0),  # k=4: every subset has >= 3 matches
    ("two", _ten(("2", 2), ("two", 1), ("x", 7)), 0.9),  # number words -> digits on both sides: k=3
    ("1,000", _ten(("1000", 10)), 1.0),  # commas dropped
    ("coca-cola", _ten(("coca cola", 10)), 1.0),  # "-" inside a word becomes a space
    ("coca-cola", _ten(("cocacola", 10)), 0.0),
    ("3.5", _ten(("3.5", 10)), 1.0),  # a "." before a digit stays
    ("35", _ten(("3.5", 10)), 0.0),
    ("Stop!", _ten(("stop", 5), ("STOP", 5)), 1.0),  # "!" becomes a space, then split away
    ("unanswerable", _ten(("unanswerable", 1), ("cafe", 9)), 0.3),
    ("cafe", _ten(("cafe", 1), ("Cafe", 1), ("CAFE.", 1), ("the cafe", 1), ("bar", 6)), 1.0),  # 4 variants, k=4
    ("cafe bar", _ten(("cafe", 10)), 0.0),  # processed strings must be equal, not contained
    ("McDonald's", _ten(("mcdonald's", 10)), 1.0),  # "'s" split off on both sides alike
    ("  cafe \n", _ten(("cafe", 10)), 1.0),  # surrounding whitespace
]


@pytest.mark.parametrize("pred,answers,expected", TEXTVQA_CASES)
def test_textvqa_accuracy_table(pred: str, answers: list[str], expected: float) -> None:
    doc = {"shirg_uid": "u", "question_id": 7, "answers": list(answers)}
    out = ocr_results.textvqa_results(doc, [pred])
    assert out[ocr_results.TEXTVQA_HEADLINE] == pytest.approx(expected, abs=1e-9)
    assert doc["answers"] == answers  # lmms-eval's function rewrites the answers it gets: ours are a copy


def test_textvqa_without_answers_scores_zero_as_lmms_eval() -> None:
    assert ocr_results.textvqa_results({"shirg_uid": "u", "question_id": 1, "answers": None}, ["cafe"])[
        "vqa_accuracy"] == 0.0


def test_textvqa_headline_is_not_our_exact_match() -> None:
    """One human said "cafe": our exact_match extra says 1, lmms-eval's accuracy (its "exact_match") 0.3."""
    out = ocr_results.textvqa_results({"shirg_uid": "u", "question_id": 1, "answers": _ten(("cafe", 1), ("bar", 9))},
                                      ["cafe"])
    assert out["exact_match"] == 1.0 and out["vqa_accuracy"] == pytest.approx(0.3)


OCRBENCH_CASES = [
    ("market", ["market"], "IIIT5K", 1),
    ("MARKET", ["market"], "IIIT5K", 1),  # lower-cased
    ("The word is market.", ["market"], "IIIT5K", 1),  # the answer only has to occur in the prediction
    ("", ["market"], "IIIT5K", 0),
    ("marke", ["market"], "IIIT5K", 0),
    ("ｍａｒｋｅｔ", ["market"], "IIIT5K", 1),  # full-width ASCII folded
    ("market", ["MARKET"], "WordArt", 1),
    ("1,234", ["1234"], "ORAND", 0),  # no number normalisation
    ("1234", ["1,234"], "ORAND", 0),
    ("12.50", ["12.5"], "SROIE", 1),  # substring, not numeric equality
    ("kitchen", ["garden", "kitchen"], "docVQA", 1),  # any gold answer
    ("gardening", ["garden"], "IAM", 1),
    ("mark et", ["market"], "IIIT5K", 0),
    ("line one line two", ["line one\nline two"], "docVQA", 1),  # newlines in the answer read as spaces
    ("x^{2}+3", ["x ^ { 2 } + 3"], "HME100k", 1),  # HME100k: spaces removed
    ("X^{2}+3", ["x ^ { 2 } + 3"], "HME100k", 0),  # HME100k keeps case
    ("$x ^ {2} + 3$", ["x ^ { 2 } + 3"], "HME100k", 1),
    ("", ["x ^ { 2 } + 3"], "HME100k", 0),
    ("anything", ["  "], "IIIT5K", 1),  # a blank gold answer is in every prediction (lmms-eval's rule)
    ("Market", "market", "IIIT5K", 1),  # a plain-string answer cell
    ("  market  ", ["market"], "IIIT5K", 1),
    ("５", ["5"], "ORAND", 1),  # full-width digit
]


@pytest.mark.parametrize("pred,answer,dataset,expected", OCRBENCH_CASES)
def test_ocrbench_item_score_table(pred: str, answer: list[str] | str, dataset: str, expected: int) -> None:
    doc = {"shirg_uid": "u", "answer": answer, "dataset": dataset, "question_type": "Regular Text Recognition"}
    out = ocr_results.ocrbench_results(doc, [pred])
    assert out[ocr_results.OCRBENCH_HEADLINE] == expected and out["ocrbench_correct"] == expected
    assert out["ocrbench_correct_regular_text_recognition"] == expected


def test_ocrbench_mean_is_over_the_items_and_repeatable() -> None:
    """200 items, 150 correct: the headline is 0.75 on every call (lmms-eval's aggregate: 150 / 1000, then
    growing with each call through its module-level counter); the per-type counts add up."""
    from lmms_eval.api.metrics import mean

    types = list(ocr_results.OCRBENCH_TYPE_METRICS)
    rows = []
    for i in range(200):
        doc = {"shirg_uid": str(i), "answer": ["word"], "dataset": "IIIT5K", "question_type": types[i % len(types)]}
        rows.append(ocr_results.ocrbench_results(doc, ["word" if i < 150 else "other"]))
    for _ in range(2):
        assert mean([r["ocrbench_mean_score"] for r in rows]) == 0.75
        assert ocr_results.count_correct([r["ocrbench_correct"] for r in rows]) == 150
    per_type = {t: ocr_results.count_correct([r[m] for r in rows if m in r])
                for t, m in ocr_results.OCRBENCH_TYPE_METRICS.items()}
    assert sum(per_type.values()) == 150 and per_type[types[0]] == 15  # items 0, 10, ..., 140


def test_failed_sample_is_not_scored() -> None:
    efficiency.record("bad", efficiency.EfficiencyRecord.failure("boom", {"variant": "x"}))
    for fn, doc in [(ocr_results.infovqa_results, {"answers": ["a"]}),
                    (ocr_results.textvqa_results, {"answers": ["a"] * 10, "question_id": 1}),
                    (ocr_results.ocrbench_results, {"answer": ["a"], "dataset": "IIIT5K",
                                                    "question_type": "Regular Text Recognition"})]:
        out = fn({"shirg_uid": "bad", **doc}, ["a"])
        assert out["failed"] == 1 and not {"anls", "vqa_accuracy", "ocrbench_mean_score"} & set(out)
