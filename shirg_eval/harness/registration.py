"""Entry point ``lmms_eval.models`` -> one ModelManifest per variant (see pyproject.toml)."""

from __future__ import annotations

from lmms_eval.models.registry_v2 import ModelManifest

from .lmms_model import MODEL_CLASSES


def manifests() -> list[ModelManifest]:
    return [
        ModelManifest(model_id=name, simple_class_path=f"{cls.__module__}.{cls.__qualname__}")
        for name, cls in MODEL_CLASSES.items()
    ]
