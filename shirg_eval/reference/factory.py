"""The reference model's sizes, tokenizer and training initialisation.

Same layout as the released checkpoint (SigLIP-style tower, patch 14 at 384 px, layer -2 features, mlp2x_gelu,
image_newline, anyres pinpoints with 2x2 pooling, bidirectional Llama-style LM with the mask token, ``llada``
prompt); only the widths are small. The tiny factory's initialisation is tuned for golden-fixture tests
(N(0, 1) embeddings, scaled q/k); this one is a plain training init (N(0, 0.02) weights, unit norms).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ..data.reading import COLOUR_NAMES, reading_task
from ..model.prompting import SYSTEM_PROMPT
from ..model.tiny import TinyDims, build_tokenizer, make_tiny_checkpoint

REFERENCE_DIMS = TinyDims(
    d_model=128, n_heads=4, n_layers=3, mlp_hidden_size=384, vocab_size=768,
    vision_hidden=128, vision_intermediate=384, vision_heads=4, vision_layers_kept=3,
)
# The tasks' instructions, appended to questions in training so that evaluation prompts are in distribution.
POST_PROMPTS = ("", reading_task("chart").post_prompt, reading_task("doc").post_prompt)


def reference_corpus() -> list[str]:
    """Task text for the tokenizer: every number 0-99 and every question word become few tokens."""
    numbers = [" ".join(str(n) for n in range(100))] * 20 + [str(n) for n in range(100)] * 20
    questions = [f"What is the value of the {c} bar? What is the number in the {c} box?" for c in COLOUR_NAMES] * 10
    return numbers + questions + [SYSTEM_PROMPT + post for post in POST_PROMPTS] * 5


def reference_tokenizer(vocab_size: int = REFERENCE_DIMS.vocab_size):
    return build_tokenizer(vocab_size, extra_lines=reference_corpus())


def training_init(model: torch.nn.Module, generator: torch.Generator) -> None:
    """GPT-style init: N(0, 0.02) matrices and embeddings (output projections scaled by depth), zero biases."""
    n_layers = getattr(getattr(model, "config", None), "n_layers", 2)
    for name, param in model.named_parameters():
        with torch.no_grad():
            if "norm" in name and name.endswith("weight"):
                param.fill_(1.0)
            elif name.endswith("bias"):
                param.zero_()
            elif name.endswith("image_newline"):
                param.copy_(0.02 * torch.randn(param.shape, generator=generator))
            elif name.endswith("patch_embedding.weight"):
                fan_in = math.prod(param.shape[1:])
                param.copy_(torch.randn(param.shape, generator=generator) / math.sqrt(fan_in))
            else:
                std = 0.02 / math.sqrt(2 * n_layers) if name.endswith(("o_proj.weight", "down_proj.weight")) else 0.02
                param.copy_(std * torch.randn(param.shape, generator=generator))


def make_reference_init(out_dir: str | Path, seed: int = 0) -> Path:
    """The untrained reference checkpoint (LaViDa layout, reference tokenizer, training init)."""
    return make_tiny_checkpoint(out_dir, seed=seed, dims=REFERENCE_DIMS, tokenizer=reference_tokenizer(),
                                init=training_init)
