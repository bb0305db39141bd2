"""Loading a checkpoint folder's tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedConfig, PreTrainedTokenizerBase


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """The checkpoint's tokenizer (LLaDA's for real weights, the tiny BPE for tiny ones), offline-safe.

    AutoTokenizer reads the model config to pick a tokenizer class. transformers does not know ``llava_llada``,
    so it falls back to ``PreTrainedConfig.from_pretrained``, which warns that a ``llava_llada`` config
    instantiates a config of type ``""`` on every load. Handing it the same config built from the dict (what
    that fallback returns, minus the type check) removes the cause; the tokenizer chosen is unchanged.
    """
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        return AutoTokenizer.from_pretrained(str(path))
    config = PreTrainedConfig.from_dict(json.loads(config_file.read_text()))
    return AutoTokenizer.from_pretrained(str(path), config=config)
