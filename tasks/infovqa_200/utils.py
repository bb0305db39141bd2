"""infovqa_200's task-specific hooks, referenced from infovqa_200.yaml as ``!function utils.NAME``.

The shared functions live in small modules beside this folder (installed as ``shirg_eval.tasks.*``), which the
YAML names directly; lmms-eval executes this file by path, hence the absolute imports.
"""

from shirg_eval.tasks import data_source, ocr_results, subset

TASK = "infovqa_200"
TaskClass = data_source.task_class(TASK)
process_results = ocr_results.infovqa_results


def process_docs(dataset):  # noqa: ANN001, ANN201 - a datasets.Dataset in and out
    """Seeded stratified subset with ``shirg_uid`` and ``shirg_question`` columns (rule: tasks/subset.py)."""
    return subset.process_docs_for(dataset, TASK)
