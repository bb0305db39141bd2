"""docvqa_200 helpers, referenced from docvqa_200.yaml as ``!function utils.NAME``.

lmms-eval executes this file by path (module name ``utils``), so relative imports do not work; the shared code
in ``tasks/_common.py`` is loaded from the file next to this folder (see :func:`_load_common`).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

TASK = "docvqa_200"


def _load_common() -> ModuleType:
    """The ``_common.py`` of this same tree: ``shirg_eval.tasks._common`` when installed, else by file path
    (in a checkout, tasks/ is only mapped into ``shirg_eval.tasks`` by an install)."""
    path = Path(__file__).resolve().parent.parent / "_common.py"
    try:
        from shirg_eval.tasks import _common

        if Path(_common.__file__).resolve() == path:
            return _common
    except ImportError:
        pass
    name = "shirg_eval_tasks_common"
    module = sys.modules.get(name)
    if module is None or Path(module.__file__).resolve() != path:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module


_common = _load_common()

TaskClass = _common.task_class(TASK)
doc_to_visual = _common.doc_to_visual
doc_to_text = _common.doc_to_text
process_results = _common.docvqa_results
aggregate_cider = _common.aggregate_cider
count_failed = _common.count_failed
agg_latency_ms_mean = _common.agg_latency_ms_mean
agg_latency_ms_p50 = _common.agg_latency_ms_p50
agg_latency_ms_p95 = _common.agg_latency_ms_p95
agg_prefill_ms_mean = _common.agg_prefill_ms_mean
agg_denoise_ms_mean = _common.agg_denoise_ms_mean
agg_peak_mem_gb_max = _common.agg_peak_mem_gb_max
agg_visual_tokens_mean = _common.agg_visual_tokens_mean


def process_docs(dataset):  # noqa: ANN001, ANN201 - a datasets.Dataset in and out
    """Seeded stratified subset with a ``shirg_uid`` column (rule: tasks/_common.py)."""
    return _common.process_docs_for(dataset, TASK)
