"""chartqa_reading's task-specific hooks (the rest comes from chartqa_200.yaml through ``include``)."""

from shirg_eval.tasks import data_source, subset

TASK = "chartqa_reading"
TaskClass = data_source.task_class(TASK)


def process_docs(dataset):  # noqa: ANN001, ANN201 - a datasets.Dataset in and out
    """Every document, with ``shirg_uid`` and ``shirg_question`` columns (rule: tasks/subset.py)."""
    return subset.process_docs_for(dataset, TASK)
