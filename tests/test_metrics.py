"""Hand-worked cases for the answer metrics."""

from __future__ import annotations

import math

import pytest

from shirg_eval.metrics import anls, corpus_cider, exact_match, levenshtein, relaxed_correctness, tokenize
from shirg_eval.metrics.cider import corpus_cider_scores


@pytest.mark.parametrize(
    ("pred", "target", "expected"),
    [
        ("42", "42", True),
        ("43", "42", True),  # |43-42|/42 = 2.4% <= 5%
        ("44.2", "42", False),  # 5.24% > 5%
        ("44.1", "42", True),  # exactly 5%
        ("1,234", "1234", True),  # thousands separator
        ("1,23", "123", False),  # not a thousands pattern: compared as strings
        ("42.", "42", True),  # trailing dot
        ("2%", "2", True),  # '%' stripped on both sides (pix2struct would say 0.02 vs 2: wrong)
        ("50%", "50%", True),
        ("0", "0", True),
        ("0.0", "0", True),  # zero target compared numerically
        ("0.01", "0", False),
        ("2016", "2015", True),  # years are numbers, as in pix2struct: within 5%
        ("Canada", "canada", True),
        (" Canada. ", "Canada", True),
        ("Brazil", "Canada", False),
        ("nan", "nan", True),  # not numbers: plain string match
        ("inf", "5", False),
        ("", "5", False),
    ],
)
def test_relaxed_correctness(pred: str, target: str, expected: bool) -> None:
    assert relaxed_correctness(pred, target) is expected


def test_relaxed_tolerance_argument() -> None:
    assert relaxed_correctness("110", "100", tolerance=0.1)
    assert not relaxed_correctness("110", "100")


def test_levenshtein() -> None:
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3
    assert levenshtein("abc", "abc") == 0


def test_anls_hand_worked() -> None:
    assert anls("John Clark", ["john  clark"]) == 1.0  # case and whitespace normalised
    # "jon clark" vs "john clark": 1 edit over 10 chars -> NL 0.1 -> 0.9
    assert anls("Jon Clark", ["John Clark"]) == pytest.approx(0.9)
    # max over answers: "1987" matches the second answer exactly
    assert anls("1987", ["February 25, 1987", "1987"]) == 1.0
    # "abcd" vs "abxy": NL = 2/4 = 0.5 -> not < 0.5 -> 0 (lmms-eval would keep 0.5)
    assert anls("abcd", ["abxy"]) == 0.0
    # "abcd" vs "abcx": NL 0.25 -> 0.75
    assert anls("abcd", "abcx") == pytest.approx(0.75)
    assert anls("", [""]) == 1.0
    assert anls("something", []) == 0.0
    assert anls("abcd", ["abxy"], threshold=0.6) == pytest.approx(0.5)


def test_exact_match() -> None:
    assert exact_match("Canada.", ["canada"]) == 1.0
    assert exact_match("  New   York ", ["new york"]) == 1.0
    assert exact_match("42", "42.0") == 0.0  # exact, no numeric tolerance
    assert exact_match("b", ["a", "B"]) == 1.0
    assert exact_match("x", []) == 0.0


def test_tokenize() -> None:
    assert tokenize("Hello, World! It's 3.5%") == "hello world it s 3 5"


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


def test_cider_tokenisation_and_edge_cases() -> None:
    # Punctuation and case do not matter.
    assert corpus_cider(["A, B; C D!", "e f g h"], [["a b c d"], ["E F G H."]]) == pytest.approx(1000.0)
    # One-sample corpus: idf is 0 everywhere.
    assert corpus_cider(["a b"], [["a b"]]) == 0.0
    assert corpus_cider([], []) == 0.0
    with pytest.raises(ValueError):
        corpus_cider(["a"], [])
