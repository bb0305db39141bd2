"""Offline synthetic stand-ins for ChartQA, DocVQA and LCS-558K (see :mod:`shirg_eval.data.synthetic`)."""

from shirg_eval.data.synthetic import make_chartqa, make_docvqa, render_lcs, write_dataset

__all__ = ["make_chartqa", "make_docvqa", "render_lcs", "write_dataset"]
