"""chartqa_200's task-specific hooks, referenced from chartqa_200.yaml as ``!function utils.NAME``.

The shared functions live in ``tasks/_common.py`` (installed as ``shirg_eval.tasks._common``), which the YAML
names directly; lmms-eval executes this file by path, hence the absolute import.
"""

from shirg_eval.tasks import _common

TASK = "chartqa_200"
TaskClass = _common.task_class(TASK)
process_results = _common.chartqa_results


def process_docs(dataset):  # noqa: ANN001, ANN201 - a datasets.Dataset in and out
    """Seeded stratified subset with a ``shirg_uid`` column (rule: tasks/_common.py)."""
    return _common.process_docs_for(dataset, TASK)
