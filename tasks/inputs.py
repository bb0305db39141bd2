"""What the model gets from a doc: the image (decoded strictly) and the prompt (as lmms-eval's chartqa/docvqa)."""

from __future__ import annotations

import io
from typing import Any

from shirg_eval.model.preprocess import load_strict


def open_image(value: Any) -> Any:
    """A PIL image from a decoded image or datasets' undecoded ``{"bytes", "path"}`` cell."""
    if isinstance(value, dict):
        from PIL import Image as PILImage

        if value.get("bytes"):
            return PILImage.open(io.BytesIO(value["bytes"]))
        if value.get("path"):
            return PILImage.open(value["path"])
        raise ValueError("image cell has neither bytes nor path")
    return value


def doc_to_visual(doc: dict[str, Any]) -> list[Any]:
    # As lmms-eval's chartqa/docvqa (RGB convert), but a truncated file is an error, never grey padding.
    return [load_strict(open_image(doc["image"])).convert("RGB")]


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> str:
    """``pre_prompt + question + post_prompt``; selection sees only the question (``shirg_question``)."""
    kwargs = lmms_eval_specific_kwargs or {}
    return f"{kwargs.get('pre_prompt', '')}{doc['question']}{kwargs.get('post_prompt', '')}"
