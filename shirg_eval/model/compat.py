"""The one place that follows transformers' renames: the name of the cache argument.

transformers renamed the cache argument of ``LlamaForCausalLM.forward`` and ``LlamaDecoderLayer.forward``
(``past_key_value`` -> ``past_key_values`` -> ``cache``, 4.5x to 5.x). The installed version's spelling is read
from the signatures once, so the model code passes ``**{LM_CACHE_KWARG: cache}`` and works on either side of it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import transformers
from transformers import LlamaForCausalLM
from transformers.models.llama.modeling_llama import LlamaDecoderLayer

_CACHE_SPELLINGS = ("cache", "past_key_values", "past_key_value")  # newest first


def cache_kwarg(forward: Callable) -> str:
    """How ``forward`` (a transformers module's) names its cache argument in the installed version."""
    params = inspect.signature(forward).parameters
    for name in _CACHE_SPELLINGS:
        if name in params:
            return name
    raise RuntimeError(f"transformers {transformers.__version__}: {forward.__qualname__} takes none of "
                       f"{_CACHE_SPELLINGS} as its cache argument; shirg_eval/model/compat.py needs the new name")


LM_CACHE_KWARG = cache_kwarg(LlamaForCausalLM.forward)
LAYER_CACHE_KWARG = cache_kwarg(LlamaDecoderLayer.forward)
