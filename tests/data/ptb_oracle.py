"""Print the expected-value table of tests/test_ptb_tokenizer.py from the Java PTBTokenizer (needs ``java``).

python tests/data/ptb_oracle.py            # the inputs of the committed table
python tests/data/ptb_oracle.py "text" ...  # any inputs

Each input is tokenised by pycocoevalcap's own ``PTBTokenizer`` (Stanford CoreNLP 3.4.1), followed by a sentinel
caption "x" so that it sees the context shirg_eval.metrics.ptb_tokenizer assumes.
"""

from __future__ import annotations

import sys
from pathlib import Path


def java_ptb(texts: list[str]) -> list[str]:
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    data = {}
    for i, text in enumerate(texts):
        data[2 * i] = [{"caption": text}]
        data[2 * i + 1] = [{"caption": "x"}]
    out = PTBTokenizer().tokenize(data)
    assert all(out[2 * i + 1] == ["x"] for i in range(len(texts))), "sentinel lines were not kept apart"
    return [out[2 * i][0] for i in range(len(texts))]


def main(argv: list[str]) -> int:
    if argv:
        texts = argv
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ is not a package
        from test_ptb_tokenizer import JAVA_PTB

        texts = [text for text, _ in JAVA_PTB]
    for text, expected in zip(texts, java_ptb(texts), strict=True):
        print(f"    ({text!r}, {expected!r}),")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
