"""LLaDA masked-diffusion decoding as LaViDa runs it, with the Prefix-DLM cache.

The answer canvas starts as ``gen_length`` mask tokens and is filled block by block (semi-autoregressive); in
each denoising step the model predicts every masked position and the most confident predictions inside the
current block are committed for good. With the prefix cache, the image+prompt prefix is encoded once and each
step forwards only the answer tokens. The prefix lives in a :class:`~shirg_eval.model.kv_cache.PrefixCache`: frozen
after the prefill (no append + crop per step) and optionally stored in 16 bits or int8 (``kv_dtype``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .kv_cache import KV_DTYPES, PrefixCache, cache_bytes, fill_prefix

__all__ = ["GenerationConfig", "GenerationOutput", "StageClock", "cache_bytes", "commit_step", "generate",
           "synced_perf_counter", "transfer_counts"]

SCHEDULES = (None, "shift", "cosine")
REMASKING = ("low_confidence", "random")


@dataclass
class GenerationConfig:
    gen_length: int = 32
    block_length: int | None = None  # default: min(128, gen_length), as LaViDa's lmms-eval wrapper
    steps: int | None = None  # total denoising steps; default gen_length (LaViDa overwrites steps with it)
    step_per_block: int | None = None
    step_ratio: float | None = None
    schedule: str | None = None
    temperature: float = 0.0
    remasking: str = "low_confidence"
    prefix_cache: bool = True
    kv_dtype: str = "auto"  # prefix-cache storage: auto (model dtype), bf16, fp16, int8 (see kv_cache.py)

    def resolved(self) -> tuple[int, int, int]:
        """(block_length, number of blocks, steps per block), validated."""
        if self.gen_length < 1:
            raise ValueError(f"gen_length must be >= 1, got {self.gen_length}")
        block = self.block_length or min(128, self.gen_length)
        if block < 1 or self.gen_length % block:
            raise ValueError(f"gen_length {self.gen_length} must be a positive multiple of block_length {block}")
        n_blocks = self.gen_length // block
        steps = self.steps if self.steps is not None else self.gen_length
        if steps < n_blocks:
            raise ValueError(f"steps {steps} < number of blocks {n_blocks}: every block needs at least one step")
        per_block = steps // n_blocks
        if self.step_per_block is not None:
            per_block = min(self.step_per_block, block)
        if self.step_ratio is not None:
            per_block = int(per_block * self.step_ratio)
        if per_block < 1:
            raise ValueError(f"steps per block resolved to {per_block}; raise steps, step_per_block or step_ratio")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule {self.schedule!r} is not one of {SCHEDULES}")
        if self.remasking not in REMASKING:
            raise ValueError(f"remasking {self.remasking!r} is not one of {REMASKING}")
        if self.kv_dtype not in KV_DTYPES:
            raise ValueError(f"kv_dtype {self.kv_dtype!r} is not one of {KV_DTYPES}")
        return block, n_blocks, per_block


@dataclass
class GenerationOutput:
    ids: torch.Tensor  # [1, gen_length] answer ids
    history: list[torch.Tensor] = field(default_factory=list)  # canvas after every executed step
    n_forward: int = 0
    prefill_s: float = 0.0
    denoise_s: float = 0.0
    prefix_cache_bytes: int = 0
    step_s: list[float] = field(default_factory=list)  # wall time of every executed denoising step


def transfer_counts(n_masked: int, steps: int, schedule: str | None = None) -> list[int]:
    """How many tokens each step of a block commits.

    No schedule: ``n // steps`` each, the first ``n % steps`` steps one more (LLaDA). With a schedule the step
    count is capped at ``n``; counts are differences of the floored cumulative ``sigma(t) * n``, clamped to >= 1
    with any excess taken back round-robin from entries above 1, then reversed (few tokens first).
    """
    if schedule is None:
        base, rem = divmod(n_masked, steps)
        return [base + (1 if i < rem else 0) for i in range(steps)]
    steps = min(steps, n_masked)
    if steps == 0:
        return []
    ts = [i / steps for i in range(steps + 1)]
    if schedule == "shift":
        sigma = [3 * t / (1 + 2 * t) for t in ts]
    else:  # cosine
        sigma = [1 - math.cos(math.pi * t / 2) for t in ts]
    cumulative = [math.floor(s * n_masked) for s in sigma]
    counts = [max(1, cumulative[i + 1] - cumulative[i]) for i in range(steps)]
    excess, i = sum(counts) - n_masked, 0
    while excess > 0:
        if counts[i % steps] > 1:
            counts[i % steps] -= 1
            excess -= 1
        i += 1
    return counts[::-1]


def synced_perf_counter(device: torch.device) -> float:
    """``time.perf_counter()`` after the device's queued work has finished (a CUDA sync; nothing elsewhere)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


class StageClock:
    """Stage timer: CUDA events on a GPU (read once at the end, no sync per step), perf_counter elsewhere.

    Events are recorded on the current stream *of the model's device*: ``Event.record()`` without a stream
    would use the current device's stream, which times nothing when the model sits on another GPU.
    """

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.marks: list = []

    def mark(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record(torch.cuda.current_stream(self.device))
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def seconds(self) -> list[float]:
        """Durations between consecutive marks."""
        if self.cuda:
            self.marks[-1].synchronize()
            return [a.elapsed_time(b) / 1e3 for a, b in zip(self.marks, self.marks[1:], strict=False)]
        return [b - a for a, b in zip(self.marks, self.marks[1:], strict=False)]


@torch.no_grad()
def generate(model, prompt_embeds: torch.Tensor, config: GenerationConfig | None = None, *,
             mask_id: int | None = None, generator: torch.Generator | None = None,
             on_step_logits: Callable[[torch.Tensor], None] | None = None,
             record_history: bool = False,
             prefill: Callable[..., PrefixCache] | None = None) -> GenerationOutput:
    """Decode an answer after ``prompt_embeds`` ``[1, Lp, D]`` (image+prompt embeddings).

    ``prefill(model, prompt_embeds, kv_dtype) -> PrefixCache`` replaces the plain prefix prefill (an in-LM reducer
    such as FastV drops visual tokens there); answer positions stay ``Lp .. Lp + gen_length - 1`` either way.
    """
    config = config or GenerationConfig()
    block, n_blocks, per_block = config.resolved()
    if prompt_embeds.shape[0] != 1:
        raise ValueError("diffusion decoding runs one prompt at a time (batch size 1)")
    mask_id = model.config.mask_token_id if mask_id is None else mask_id
    device = prompt_embeds.device
    gen = config.gen_length
    prompt_len = prompt_embeds.shape[1]
    if prompt_len + gen > model.config.max_sequence_length:
        raise ValueError(
            f"prompt ({prompt_len} positions incl. visual tokens) + gen_length {gen} exceeds the model's "
            f"{model.config.max_sequence_length}-position context; shorten the question or lower gen_length"
        )
    canvas = torch.full((1, gen), mask_id, dtype=torch.long, device=device)
    out = GenerationOutput(ids=canvas)

    clock = StageClock(device)
    clock.mark()
    cache = None
    if prefill is not None and not config.prefix_cache:
        raise ValueError("this prefill (an in-LM reducer such as fastv) prunes the prefix cache: use prefix_cache=true")
    if config.prefix_cache:
        cache = prefill(model, prompt_embeds, config.kv_dtype) if prefill else fill_prefix(model, prompt_embeds,
                                                                                            config.kv_dtype)[0]
        out.n_forward += 1
        out.prefix_cache_bytes = cache_bytes(cache)
    clock.mark()
    positions = torch.arange(prompt_len, prompt_len + gen, device=device)[None]
    for b in range(n_blocks):
        lo, hi = b * block, (b + 1) * block
        counts = transfer_counts(int((canvas[:, lo:hi] == mask_id).sum()), per_block, config.schedule)
        for k in counts:
            masked = canvas == mask_id
            if not masked[:, lo:hi].any():
                continue
            answer_embeds = model.embed_tokens(canvas).to(prompt_embeds.dtype)
            if cache is not None:
                # The PrefixCache hands attention cat(prefix, this step) and keeps only the prefix.
                logits = model.logits(answer_embeds, cache=cache, position_ids=positions)
            else:
                logits = model.logits(torch.cat([prompt_embeds, answer_embeds], dim=1), logits_to_keep=gen)
            out.n_forward += 1
            if on_step_logits is not None:
                on_step_logits(logits)
            commit_step(canvas, logits, masked, hi, k, config, generator)
            if record_history:
                out.history.append(canvas.clone())
            clock.mark()
    durations = clock.seconds()
    out.prefill_s, out.step_s = durations[0], durations[1:]
    out.denoise_s = sum(out.step_s)
    return out


def commit_step(canvas: torch.Tensor, logits: torch.Tensor, masked: torch.Tensor, block_end: int, k: int,
                config: GenerationConfig, generator: torch.Generator | None) -> None:
    """Commit the ``k`` most confident predictions among masked positions before ``block_end`` (in place)."""
    logits64 = logits.to(torch.float64)
    if config.temperature > 0:
        # Gumbel-max in LLaDA's form: exp(logits) / (-log u)^T, in float64.
        u = torch.rand(logits64.shape, dtype=torch.float64, device=logits.device, generator=generator)
        x0 = torch.argmax(logits64.exp() / (-torch.log(u)) ** config.temperature, dim=-1)
    else:
        x0 = torch.argmax(logits, dim=-1)
    if config.remasking == "low_confidence":
        confidence = torch.gather(torch.softmax(logits64, dim=-1), -1, x0[..., None])[..., 0]
    else:
        confidence = torch.rand(x0.shape, dtype=torch.float64, device=x0.device, generator=generator)
    confidence[:, block_end:] = -math.inf
    confidence = torch.where(masked, confidence, torch.full_like(confidence, -math.inf))
    if k <= 0:
        return
    chosen = torch.topk(confidence[0], k=k).indices
    canvas[0, chosen] = x0[0, chosen]
