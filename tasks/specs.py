"""What each task is: its data source, the text fields that identify a doc, its strata and quotas."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TASKS_DIR = Path(__file__).resolve().parent
SEP = "\x1f"  # joins a doc's text fields before hashing


@dataclass(frozen=True)
class TaskSpec:
    name: str
    env_var: str  # local copy of the data, instead of the hub
    hub_path: str
    hub_name: str | None
    split: str
    text_columns: tuple[str, ...]
    uid_text: Callable[[dict[str, Any]], str]
    stratum: Callable[[dict[str, Any]], str]
    quotas: dict[str, int | None] = field(default_factory=dict)  # None: every doc of the stratum
    image_column: str = "image"
    question_column: str = "question"
    default_data: Callable[[], Path] | None = None  # renders the data when env_var is unset (no hub dataset)

    @property
    def manifest_dir(self) -> Path:
        return TASKS_DIR / self.name / "manifests"


def _chartqa_text(doc: dict[str, Any]) -> str:
    return SEP.join(["chartqa", str(doc["type"]), str(doc["question"]), str(doc["answer"])])


def _docvqa_text(doc: dict[str, Any]) -> str:
    answers = doc.get("answers") or []
    return SEP.join(["docvqa", str(doc["questionId"]), str(doc["question"]), *sorted(str(a) for a in answers)])


def _reading_set(kind: str) -> Callable[[], Path]:
    def render() -> Path:
        from shirg_eval.data.reading import cached_reading_set

        return cached_reading_set(kind)

    return render


SPECS: dict[str, TaskSpec] = {
    "chartqa_200": TaskSpec(
        name="chartqa_200",
        env_var="SHIRG_CHARTQA_PATH",
        hub_path="lmms-lab-encoder/ChartQA",
        hub_name=None,
        split="test",
        text_columns=("type", "question", "answer"),
        uid_text=_chartqa_text,
        stratum=lambda doc: str(doc["type"]),
        quotas={"human_test": 100, "augmented_test": 100},
    ),
    "docvqa_200": TaskSpec(
        name="docvqa_200",
        env_var="SHIRG_DOCVQA_PATH",
        hub_path="lmms-lab-encoder/DocVQA",
        hub_name="DocVQA",
        split="validation",
        text_columns=("questionId", "question", "answers"),
        uid_text=_docvqa_text,
        stratum=lambda doc: "all",
        quotas={"all": 200},
    ),
    # The hard reading sets (shirg_eval/data/reading.py), every document of the rendered test split.
    "chartqa_reading": TaskSpec(
        name="chartqa_reading",
        env_var="SHIRG_READING_CHART_PATH",
        hub_path="(rendered locally: shirg-synth --what reading)",
        hub_name=None,
        split="test",
        text_columns=("type", "question", "answer"),
        uid_text=_chartqa_text,
        stratum=lambda doc: str(doc["type"]),
        quotas={"human_test": None, "augmented_test": None},
        default_data=_reading_set("chart"),
    ),
    "docvqa_reading": TaskSpec(
        name="docvqa_reading",
        env_var="SHIRG_READING_DOC_PATH",
        hub_path="(rendered locally: shirg-synth --what reading)",
        hub_name=None,
        split="validation",
        text_columns=("questionId", "question", "answers"),
        uid_text=_docvqa_text,
        stratum=lambda doc: "all",
        quotas={"all": None},
        default_data=_reading_set("doc"),
    ),
}
