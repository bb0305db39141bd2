"""Which text the selectors' relevance is conditioned on: the document's question, never the task instruction.

lmms-eval hands a model the whole prompt (``pre_prompt + question + post_prompt``), and a selector's text
relevance is a max over every token it is given, so an instruction such as "Answer the question with a single
word." would take part in every document's selection. The harness therefore asks the *document* for its question:

1. ``doc["shirg_question"]`` when the task declares it (``chartqa_200`` and ``docvqa_200`` add it in
   ``process_docs``; any task can do the same);
2. otherwise ``doc["question"]`` when that string occurs in the prompt, ignoring case (most lmms-eval VQA tasks;
   TextVQA's prompt capitalises the question), as the prompt spells it;
3. otherwise the whole prompt (logged once per task, since the instruction then conditions selection).

The LM always sees the whole prompt; only selection uses the question.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

try:  # lmms-eval logs through loguru; use it so the warning lands in the same stream
    from loguru import logger as log
except ImportError:  # pragma: no cover - loguru ships with lmms-eval
    import logging

    log = logging.getLogger("shirg_eval.query")

QUESTION_FIELD = "shirg_question"
_warned: set[str] = set()


def selection_query(doc: Any, context: str, task: str = "") -> tuple[str, str]:
    """(text that conditions selection, where it came from: ``shirg_question`` | ``question`` | ``prompt``)."""
    if isinstance(doc, Mapping):
        declared = doc.get(QUESTION_FIELD)
        if isinstance(declared, str):
            return declared, QUESTION_FIELD
        question = doc.get("question")
        if isinstance(question, str) and question.strip():
            found = re.search(re.escape(question.strip()), context, flags=re.IGNORECASE)
            if found is not None:
                return found.group(0), "question"
    if task not in _warned:
        _warned.add(task)
        log.warning(f"{task or 'a task'}: its docs declare no '{QUESTION_FIELD}' and no 'question' found in the "
                    "prompt; selection is conditioned on the whole prompt, instruction included")
    return context, "prompt"
