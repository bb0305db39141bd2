"""The answer metrics, side by side with the references they claim to match (lmms-eval 0.7.3's own functions)."""

from __future__ import annotations

import math

import pytest

from shirg_eval.metrics import anls, corpus_cider, exact_match, relaxed_correctness, relaxed_norm
from shirg_eval.metrics.cider import corpus_cider_scores

# (prediction, target, lmms-eval relaxed_correctness, relaxed_norm): the expected values are literal so that a
# change on either side shows; where the two columns differ, relaxed_norm departs from lmms-eval on purpose.
RELAXED_CASES = [
    ("42", "42", True, True),
    ("43", "42", True, True),  # 1/42 = 2.4% <= 5%
    ("44.2", "42", False, False),  # 5.24%
    ("44.1", "42", False, True),  # exactly 5%, but 2.1 / 42 = 0.05000000000000007 in floats
    ("105", "100", True, True),  # exactly 5%, and 5 / 100 == 0.05
    ("1.05", "1", False, True),  # exactly 5%, 0.050000000000000044 in floats
    ("12%", "0.12", True, False),  # lmms-eval divides a "%" value by 100
    ("0.12", "12%", True, False),
    ("2%", "2", False, True),  # 0.02 vs 2 for lmms-eval; relaxed_norm drops "%" on both sides
    ("50%", "50%", True, True),
    ("12 %", "12%", True, True),
    ("1,000", "1000", False, True),  # float("1,000") fails: string match
    ("1,000", "1,000", True, True),
    ("1,23", "123", False, False),  # not a thousands separator
    ("42.", "42", True, True),  # float("42.") parses
    ("yes.", "Yes", False, True),  # trailing dot on a word
    ("Yes", "yes.", False, True),
    ("0.0", "0", False, True),  # zero target: lmms-eval falls back to the strings
    ("0", "0", True, True),
    ("0.01", "0", False, False),
    ("2016", "2015", True, True),  # years are numbers in both
    ("Canada", "canada", True, True),
    (" Canada. ", "Canada", False, True),
    ("", "", True, True),
    ("", "5", False, False),  # empty prediction
    ("New York City", "new york city", True, True),  # multi-token answers: case-insensitive string match
    ("New York", "New York City", False, False),
    ("nan", "nan", False, True),  # nan parses for lmms-eval and never compares equal
    ("inf", "5", False, False),
    ("-5", "5", False, False),
    ("1e3", "1000", True, True),
    ("$5", "5", False, False),
]


@pytest.mark.parametrize(("pred", "target", "lmms", "norm"), RELAXED_CASES)
def test_relaxed_headline_is_lmms_eval(pred: str, target: str, lmms: bool, norm: bool) -> None:
    from lmms_eval.tasks.chartqa.utils import relaxed_correctness as lmms_eval_relaxed

    assert len(RELAXED_CASES) >= 20
    assert lmms_eval_relaxed(pred, target) is lmms
    assert relaxed_correctness(pred, target) is lmms  # the headline: identical on every case
    assert relaxed_norm(pred, target) is norm


def test_relaxed_tolerance_argument() -> None:
    assert relaxed_correctness("110", "100", tolerance=0.1) and relaxed_norm("110", "100", tolerance=0.1)
    assert not relaxed_correctness("110", "100") and not relaxed_norm("110", "100")


# (prediction, gold answers, ANLS as the official scorer / lmms-eval computes it)
ANLS_CASES = [
    ("John Clark", ["john  clark"], 1.0),  # case and whitespace normalised before the distance
    ("Jon Clark", ["John Clark"], 0.9),  # 1 edit / 10 characters
    ("1987", ["February 25, 1987", "1987"], 1.0),  # best answer counts
    ("abcd", ["abxy"], 0.5),  # NL exactly 0.5: kept (the score is zeroed only below 0.5)
    ("abcdef", ["abcxyz"], 0.5),
    ("12", ["12.0"], 0.5),
    ("1", ["12"], 0.5),
    ("abcde", ["abxyz"], 0.0),  # NL 0.6
    ("abcd", ["abcx"], 0.75),
    ("", [""], 1.0),
    ("", ["abc"], 0.0),  # empty prediction
    ("abc", ["xyz"], 0.0),
    ("  Jon   Clark  ", ["John Clark"], 14 / 15),  # length of the *original* prediction: 15, not 9
    (" a ", ["ab"], 2 / 3),  # 1 edit over len(" a ") = 3; over the normalised length it would be 0.5
    ("maße", ["mase"], 0.8),  # lengths are taken upper-cased: "MASSE" has 5 characters
    ("Dr. Smith", ["Smith", "Dr Smith"], 8 / 9),
    ("INVOICE", ["invoice"], 1.0),
    ("$450", ["$ 450"], 0.8),
    ("March 3, 2001", ["March 3 2001"], 12 / 13),
    ("Page 4", ["page  4"], 1.0),
    ("answer", ["a", "answer"], 1.0),
    ("ab", ["abc"], 2 / 3),
    ("abc", "abc", 1.0),  # a single string is one answer
]


@pytest.mark.parametrize(("pred", "answers", "expected"), ANLS_CASES)
def test_anls_is_the_official_rule(pred: str, answers: list[str] | str, expected: float) -> None:
    from lmms_eval.api.metrics import anls as lmms_eval_anls

    assert len(ANLS_CASES) >= 20
    refs = [answers] if isinstance(answers, str) else answers
    assert lmms_eval_anls(refs, [pred])["anls"] == pytest.approx(expected)
    assert anls(pred, answers) == pytest.approx(expected)


def test_anls_edge_cases() -> None:
    assert anls("something", []) == 0.0  # no gold answer: nothing to match
    assert anls("abcd", ["abxy"], threshold=0.6) == 0.0
    assert isinstance(anls("abc", ["xyz"]), float)


def test_exact_match() -> None:
    assert exact_match("Canada.", ["canada"]) == 1.0
    assert exact_match("  New   York ", ["new york"]) == 1.0
    assert exact_match("42", "42.0") == 0.0  # exact, no numeric tolerance
    assert exact_match("b", ["a", "B"]) == 1.0
    assert exact_match("x", []) == 0.0


def test_cider_identical_beats_unrelated() -> None:
    refs = [["a red circle"], ["two blue squares"], ["a green triangle on white"]]
    same = corpus_cider(["a red circle", "two blue squares", "a green triangle on white"], refs)
    other = corpus_cider(["purple dog", "the cat sat", "rain falls"], refs)
    assert same > other
    assert other == 0.0


def test_cider_hand_worked_identical_four_word_captions() -> None:
    # Two images, disjoint vocabularies, hypothesis == reference, 4 words each. Every n-gram has df 1 over a
    # corpus of 2, so all tf-idf weights are log 2; each n in 1..4 has cosine 1 and no length penalty ->
    # per-image score = 10 * mean([1, 1, 1, 1]) = 10; corpus = 10; x100 = 1000.
    score = corpus_cider(["a b c d", "e f g h"], [["a b c d"], ["e f g h"]])
    assert score == pytest.approx(1000.0)


def test_cider_hand_worked_partial_match() -> None:
    # Image A: hyp "a b", ref "a b c d"; image B: hyp = ref = "e f g h"; all weights log 2 (see above).
    # A, n=1: hyp {a,b}, ref {a,b,c,d}: cos = 2 / (sqrt2 * 2) = 1/sqrt2.  n=2: {ab} vs {ab,bc,cd}: 1/sqrt3.
    # n=3, n=4: the hypothesis has none -> 0.  Length (pycocoevalcap counts bigrams): 1 vs 3 -> delta = -2,
    # penalty exp(-4 / 72).  A = 10 * (1/sqrt2 + 1/sqrt3) / 4 * exp(-1/18) = 3.0376...;  B = 10.
    a = 10 * (1 / math.sqrt(2) + 1 / math.sqrt(3)) / 4 * math.exp(-4 / 72)
    corpus, per_sample = corpus_cider_scores(["a b", "e f g h"], [["a b c d"], ["e f g h"]])
    assert per_sample[0] == pytest.approx(100 * a)
    assert per_sample[1] == pytest.approx(1000.0)
    assert corpus == pytest.approx(100 * (a + 10) / 2)  # = 651.88...
    assert corpus == pytest.approx(651.88, abs=0.01)


def test_cider_uses_ptb_tokens() -> None:
    # PTB punctuation is removed and case ignored ...
    assert corpus_cider(["A, B; C D!", "e f g h"], [["a b c d"], ["E F G H"]]) == pytest.approx(1000.0)
    # (a final "H." would stay "h.": PTB reads a capital letter with a period as an initial)
    # ... but "12.5" is one token (a tokeniser that drops punctuation would make it "12 5" and match).
    assert corpus_cider(["12.5 a b c", "e f g h"], [["12 5 a b c"], ["e f g h"]]) < 1000.0
    # "$450" -> "$ 450" on both sides; "No. 5" keeps "no." (PTB abbreviation before a number).
    assert corpus_cider(["$450 x y z", "No. 5 b c"], [["$ 450 x y z"], ["No. 5 b c"]]) == pytest.approx(1000.0)


def test_cider_edge_cases() -> None:
    assert corpus_cider(["a b"], [["a b"]]) == 0.0  # one-sample corpus: idf is 0 everywhere
    assert corpus_cider([], []) == 0.0
    with pytest.raises(ValueError):
        corpus_cider(["a"], [])
