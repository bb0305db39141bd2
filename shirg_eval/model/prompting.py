"""LaViDa's ``llada`` conversation template and prompt tokenisation with the image placeholder."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .lavida import IMAGE_TOKEN_INDEX

if TYPE_CHECKING:
    from .lavida import LavidaModel

SYSTEM_PROMPT = (
    "You are a helpful language and vision assistant. You are able to understand the visual content that the "
    "user provides, and assist the user with a variety of tasks using natural language."
)
IMAGE_PLACEHOLDER = "<image>"
STOP_TOKEN = "<|eot_id|>"
# Llama-3 layout; used when a tokenizer carries no chat template of its own.
FALLBACK_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def render_prompt(tokenizer, question: str, with_image: bool = True, system: str = SYSTEM_PROMPT) -> str:
    content = f"{IMAGE_PLACEHOLDER}\n{question}" if with_image else question
    messages = [{"role": "system", "content": system}, {"role": "user", "content": content}]
    template = None if getattr(tokenizer, "chat_template", None) else FALLBACK_TEMPLATE
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, chat_template=template)


def tokenize_prompt(tokenizer, text: str) -> torch.Tensor:
    """Split on ``<image>``, tokenise each chunk alone, put -200 between; keep exactly one leading bos."""
    ids: list[int] = []
    for i, chunk in enumerate(text.split(IMAGE_PLACEHOLDER)):
        if i:
            ids.append(IMAGE_TOKEN_INDEX)
        ids.extend(tokenizer(chunk, add_special_tokens=False)["input_ids"])
    bos = tokenizer.bos_token_id
    if bos is not None:
        while len(ids) > 1 and ids[0] == bos and ids[1] == bos:
            ids.pop(0)
        if not ids or ids[0] != bos:
            ids.insert(0, bos)
    return torch.tensor([ids], dtype=torch.long)


def build_prompt_ids(tokenizer, question: str, with_image: bool = True) -> torch.Tensor:
    if not isinstance(question, str):
        raise TypeError(f"question must be a string, got {type(question).__name__}")
    return tokenize_prompt(tokenizer, render_prompt(tokenizer, question, with_image))


def stop_ids(tokenizer) -> list[int]:
    """Ids that end an answer: ``<|eot_id|>`` and eos."""
    ids = []
    for token in (STOP_TOKEN, tokenizer.eos_token):
        if token is not None:
            tid = tokenizer.convert_tokens_to_ids(token)
            if tid is not None and tid != tokenizer.unk_token_id:
                ids.append(int(tid))
    return ids


def decode_answer(tokenizer, ids: torch.Tensor, mask_id: int | None = None) -> str:
    """Text of the answer up to the first stop id (diffusion fills the whole canvas; the text ends at EOS)."""
    stops = set(stop_ids(tokenizer))
    kept = []
    for tid in ids.flatten().tolist():
        if tid in stops:
            break
        if mask_id is not None and tid == mask_id:
            continue
        kept.append(tid)
    return tokenizer.decode(kept, skip_special_tokens=True).strip()


def question_embeds(model: LavidaModel, tokenizer, question: str) -> torch.Tensor | None:
    """``[T, D]``: the question's LM input embeddings, what text-aware selectors score against (None when empty).

    The bare question, no chat template or special tokens: the same embeddings in evaluation, training and bench."""
    ids = tokenizer(question, add_special_tokens=False)["input_ids"] if question else []
    if not ids:
        return None
    return model.embed_tokens(torch.tensor(ids, device=model.device))
