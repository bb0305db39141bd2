"""docvqa_200 helpers, referenced from docvqa_200.yaml as ``!function utils.NAME``.

lmms-eval executes this file by path (module name ``utils``), so it imports the shared code absolutely from
the installed package (``tasks/`` is installed as ``shirg_eval.tasks``); the logic lives in ``tasks/_common.py``.
"""

from shirg_eval.tasks import _common
from shirg_eval.tasks._common import (  # noqa: F401  (names the YAML refers to)
    agg_denoise_ms_mean,
    agg_latency_ms_mean,
    agg_latency_ms_p50,
    agg_latency_ms_p95,
    agg_peak_mem_gb_max,
    agg_prefill_ms_mean,
    agg_visual_tokens_mean,
    aggregate_cider,
    count_failed,
    doc_to_text,
    doc_to_visual,
)

TASK = "docvqa_200"
TaskClass = _common.task_class(TASK)
process_results = _common.docvqa_results


def process_docs(dataset):  # noqa: ANN001, ANN201 - a datasets.Dataset in and out
    """Seeded stratified subset with a ``shirg_uid`` column (rule: tasks/_common.py)."""
    return _common.process_docs_for(dataset, TASK)
