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
    # Set for data whose strata are open-ended (InfoVQA's answer types): the quotas are then the stratum sizes
    # scaled to this total (see subset.proportional_quotas) and ``quotas`` stays empty.
    proportional_total: int | None = None
    # The question as the task's prompt shows it (TextVQA capitalises it, OCRBench strips it): shirg_question.
    question_text: Callable[[Any], str] = str

    @property
    def manifest_dir(self) -> Path:
        return TASKS_DIR / self.name / "manifests"


def _chartqa_text(doc: dict[str, Any]) -> str:
    return SEP.join(["chartqa", str(doc["type"]), str(doc["question"]), str(doc["answer"])])


def _docvqa_text(doc: dict[str, Any]) -> str:
    answers = doc.get("answers") or []
    return SEP.join(["docvqa", str(doc["questionId"]), str(doc["question"]), *sorted(str(a) for a in answers)])


def answer_list(value: Any) -> list[str]:
    """A gold-answer cell as a list of strings: the hubs store lists; a lone string is one answer."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(a) for a in value]


def _infovqa_text(doc: dict[str, Any]) -> str:
    return SEP.join(["infovqa", str(doc["questionId"]), str(doc["question"]), *sorted(answer_list(doc["answers"]))])


def infovqa_stratum(doc: dict[str, Any]) -> str:
    """InfoVQA's ``answer_type`` is a list (e.g. ["multi-span", "question span"]): its sorted tuple, joined by
    " + ", is the stratum; a row without answer types is stratum "none"."""
    return " + ".join(sorted(answer_list(doc.get("answer_type")))) or "none"


def _textvqa_text(doc: dict[str, Any]) -> str:
    return SEP.join(["textvqa", str(doc["question_id"]), str(doc["question"]), *sorted(answer_list(doc["answers"]))])


def _ocrbench_text(doc: dict[str, Any]) -> str:
    return SEP.join(["ocrbench", str(doc["dataset"]), str(doc["question_type"]), str(doc["question"]),
                     *sorted(answer_list(doc["answer"]))])


# OCRBench's 1,000 items: six recognition types x 50, three VQA/KIE types x 200, handwritten math x 100. The
# 200-document subset keeps those proportions (1/5 of each), so its mean per-item score compares with total/1000.
OCRBENCH_QUOTAS: dict[str, int | None] = {
    "Regular Text Recognition": 10,
    "Irregular Text Recognition": 10,
    "Artistic Text Recognition": 10,
    "Handwriting Recognition": 10,
    "Digit String Recognition": 10,
    "Non-Semantic Text Recognition": 10,
    "Scene Text-centric VQA": 40,
    "Doc-oriented VQA": 40,
    "Key Information Extraction": 40,
    "Handwritten Mathematical Expression Recognition": 20,
}


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
    # Same hub data, split and columns as lmms-eval 0.7.3's infovqa_val / textvqa_val / ocrbench.
    "infovqa_200": TaskSpec(
        name="infovqa_200",
        env_var="SHIRG_INFOVQA_PATH",
        hub_path="lmms-lab-encoder/DocVQA",
        hub_name="InfographicVQA",
        split="validation",
        text_columns=("questionId", "question", "answers", "answer_type"),
        uid_text=_infovqa_text,
        stratum=infovqa_stratum,
        proportional_total=200,
    ),
    "textvqa_200": TaskSpec(
        name="textvqa_200",
        env_var="SHIRG_TEXTVQA_PATH",
        hub_path="lmms-lab-encoder/textvqa",
        hub_name=None,
        split="validation",
        text_columns=("question_id", "question", "answers"),
        uid_text=_textvqa_text,
        stratum=lambda doc: "all",
        quotas={"all": 200},
        question_text=lambda q: str(q).capitalize(),  # lmms-eval's textvqa_doc_to_text capitalises it
    ),
    "ocrbench_200": TaskSpec(
        name="ocrbench_200",
        env_var="SHIRG_OCRBENCH_PATH",
        hub_path="echo840/OCRBench",
        hub_name=None,
        split="test",
        text_columns=("dataset", "question_type", "question", "answer"),
        uid_text=_ocrbench_text,
        stratum=lambda doc: str(doc["question_type"]),
        quotas=OCRBENCH_QUOTAS,
        question_text=lambda q: str(q).strip(),  # lmms-eval's ocrbench_doc_to_text strips it
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
