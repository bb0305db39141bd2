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
    quotas: dict[str, int] = field(default_factory=dict)
    image_column: str = "image"
    question_column: str = "question"

    @property
    def manifest_dir(self) -> Path:
        return TASKS_DIR / self.name / "manifests"


def _chartqa_text(doc: dict[str, Any]) -> str:
    return SEP.join(["chartqa", str(doc["type"]), str(doc["question"]), str(doc["answer"])])


def _docvqa_text(doc: dict[str, Any]) -> str:
    answers = doc.get("answers") or []
    return SEP.join(["docvqa", str(doc["questionId"]), str(doc["question"]), *sorted(str(a) for a in answers)])


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
}
