"""LLaDA masked-diffusion decoding as LaViDa runs it, with the Prefix-DLM cache.

The answer canvas starts as ``gen_length`` mask tokens and is filled block by block (semi-autoregressive); in
each denoising step the model predicts every masked position and the most confident predictions inside the
current block are committed for good. With the prefix cache, the image+prompt prefix is encoded once and each
step forwards only the answer tokens. The prefix lives in a :class:`~shirg_eval.model.kv_cache.PrefixCache`: frozen
after the prefill, a static buffer the steps write their canvas into (no append + crop, no concatenation per
step), optionally stored in 16 bits or int8 (``kv_dtype``).

Decoding modes (``decoding``): ``fixed`` (LaViDa's: a precomputed count of commits per step, low-confidence
remasking; its schedule is known in advance, so a step never waits on the device) and ``threshold`` (Fast-dLLM's
parallel decoding, :func:`~shirg_eval.model.commit.commit_threshold`: one host sync per step, reading how many
positions of the block are still masked, to know when the block is done). :func:`generate_batch` decodes several
prompts together: each prompt's prefill runs alone (exactly the batch-of-one prefill; FastV's pruned prefill too),
the caches are padded into one with a key mask, and every denoising step is one forward for the whole batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .commit import commit_fixed, commit_threshold
from .compiled import COMPILED_STEP, bucket_length
from .kv_cache import KV_DTYPES, PrefixCache, cache_bytes, fill_prefix, pack_prefix_caches

__all__ = ["GenerationConfig", "GenerationOutput", "StageClock", "StageTimer", "cache_bytes", "commit_step", "generate",
           "generate_batch", "synced_perf_counter", "transfer_counts"]

SCHEDULES = (None, "shift", "cosine")
REMASKING = ("low_confidence", "random")
DECODINGS = ("fixed", "threshold")
Prefill = Callable[..., PrefixCache]


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
    decoding: str = "fixed"  # fixed (LaViDa's step schedule) | threshold (Fast-dLLM's confidence threshold)
    threshold: float = 0.9  # decoding=threshold: commit every masked position above this confidence
    compile: bool = False  # torch.compile the cached step (static shapes; see compiled.py)
    compile_bucket: int = 128  # compile=true: prefix slots are a multiple of this (padded, key-masked)

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
        if self.decoding not in DECODINGS:
            raise ValueError(f"decoding {self.decoding!r} is not one of {DECODINGS}")
        if self.compile and not self.prefix_cache:
            raise ValueError("compile=true compiles the prefix-cached step: use prefix_cache=true")
        if self.compile_bucket < 1:
            raise ValueError(f"compile_bucket must be >= 1, got {self.compile_bucket}")
        if self.decoding == "threshold":
            if not self.threshold > 0:
                raise ValueError(f"threshold must be > 0 (a confidence; > 1 commits one token per step), "
                                 f"got {self.threshold}")
            if self.remasking != "low_confidence":
                raise ValueError("decoding=threshold thresholds the model's confidence: use remasking=low_confidence")
        return block, n_blocks, per_block


@dataclass
class GenerationOutput:
    ids: torch.Tensor  # [B, gen_length] answer ids
    history: list[torch.Tensor] = field(default_factory=list)  # canvas after every executed step
    n_forward: int = 0  # LM forwards of this call: one prefill per prompt + the batched steps
    prefill_s: float = 0.0  # all prefills of the call
    denoise_s: float = 0.0
    prefix_cache_bytes: int = 0  # all prompts' stored prefixes
    step_s: list[float] = field(default_factory=list)  # wall time of every executed denoising step
    n_steps: int = 0  # batched denoising forwards
    sample_n_forward: list[int] = field(default_factory=list)  # per prompt: its prefill + steps it took part in
    sample_prefill_s: list[float] = field(default_factory=list)
    sample_cache_bytes: list[int] = field(default_factory=list)
    compile_s: float = 0.0  # compile=true: the warm-up call that compiled a new shape (not in prefill/denoise)


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


class StageTimer:
    """Named stages on one :class:`StageClock`: ``mark(name)`` closes the stage ``name`` (started at the previous
    mark); a name marked twice accumulates. The evaluation path marks its stages with it, so ``shirg-bench`` times
    the very code evaluation runs."""

    def __init__(self, device: torch.device):
        self.clock = StageClock(device)
        self.names: list[str] = []
        self.clock.mark()

    def mark(self, name: str) -> None:
        self.clock.mark()
        self.names.append(name)

    def ms(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, seconds in zip(self.names, self.clock.seconds(), strict=True):
            out[name] = out.get(name, 0.0) + seconds * 1e3
        return out


def mark(timer: StageTimer | None, name: str) -> None:
    """``timer.mark(name)`` when timing, nothing otherwise."""
    if timer is not None:
        timer.mark(name)


@torch.no_grad()
def generate(model, prompt_embeds: torch.Tensor, config: GenerationConfig | None = None, *,
             mask_id: int | None = None, generator: torch.Generator | None = None,
             on_step_logits: Callable[[torch.Tensor], None] | None = None,
             record_history: bool = False, prefill: Prefill | None = None) -> GenerationOutput:
    """Decode an answer after ``prompt_embeds`` ``[1, Lp, D]`` (image+prompt embeddings).

    ``prefill(model, prompt_embeds, kv_dtype) -> PrefixCache`` replaces the plain prefix prefill (an in-LM reducer
    such as FastV drops visual tokens there); answer positions stay ``Lp .. Lp + gen_length - 1`` either way.
    """
    if prompt_embeds.shape[0] != 1:
        raise ValueError("generate takes one prompt ([1, Lp, D]); decode several with generate_batch")
    return generate_batch(model, [prompt_embeds], config, mask_id=mask_id, generators=[generator],
                          on_step_logits=on_step_logits, record_history=record_history, prefills=[prefill])


@torch.no_grad()
def generate_batch(model, prompts: Sequence[torch.Tensor], config: GenerationConfig | None = None, *,
                   mask_id: int | None = None, generators: Sequence[torch.Generator | None] | None = None,
                   on_step_logits: Callable[[torch.Tensor], None] | None = None, record_history: bool = False,
                   prefills: Sequence[Prefill | None] | None = None) -> GenerationOutput:
    """Decode one answer per prompt (each ``[1, Lp_i, D]``, lengths may differ) with one forward per step.

    Per prompt: its own prefill, position ids ``Lp_i ..``, and generator; padding is masked out of attention.
    """
    config = config or GenerationConfig()
    block, n_blocks, per_block = config.resolved()
    n = len(prompts)
    if n < 1:
        raise ValueError("generate_batch needs at least one prompt")
    generators = list(generators) if generators is not None else [None] * n
    prefills = list(prefills) if prefills is not None else [None] * n
    if len(generators) != n or len(prefills) != n:
        raise ValueError(f"{n} prompts need {n} generators and prefills, got {len(generators)} and {len(prefills)}")
    mask_id = model.config.mask_token_id if mask_id is None else mask_id
    device, dtype = prompts[0].device, prompts[0].dtype
    gen = config.gen_length
    lengths = [int(p.shape[1]) for p in prompts]
    for p, length in zip(prompts, lengths, strict=True):
        if p.dim() != 3 or p.shape[0] != 1:
            raise ValueError(f"each prompt is [1, Lp, D] embeddings, got {tuple(p.shape)}")
        if length + gen > model.config.max_sequence_length:
            raise ValueError(
                f"prompt ({length} positions incl. visual tokens) + gen_length {gen} exceeds the model's "
                f"{model.config.max_sequence_length}-position context; shorten the question or lower gen_length"
            )
    if any(prefills) and not config.prefix_cache:
        raise ValueError("this prefill (an in-LM reducer such as fastv) prunes the prefix cache: use prefix_cache=true")
    canvas = torch.full((n, gen), mask_id, dtype=torch.long, device=device)
    out = GenerationOutput(ids=canvas)
    clock = StageClock(device)
    clock.mark()
    step = _prefix_cached_step(model, prompts, lengths, config, prefills, out, clock, canvas) \
        if config.prefix_cache else _full_sequence_step(model, prompts, lengths, gen, clock)
    n_prefill_marks = n if config.prefix_cache else 0
    n_setup_marks = len(clock.marks) - 1  # prefills, then the compile warm-up (left out of every timing)
    out.sample_n_forward = [1 if config.prefix_cache else 0] * n

    def run_step(commit: Callable[[torch.Tensor, torch.Tensor], None], active: list[bool]) -> None:
        masked = canvas == mask_id
        logits = step(model.embed_tokens(canvas).to(dtype))
        out.n_steps += 1
        out.sample_n_forward = [c + int(a) for c, a in zip(out.sample_n_forward, active, strict=True)]
        if on_step_logits is not None:
            on_step_logits(logits)
        commit(logits, masked)
        if record_history:
            out.history.append(canvas.clone())
        clock.mark()

    every = [True] * n
    for b in range(n_blocks):
        lo, hi = b * block, (b + 1) * block
        if config.decoding == "fixed":
            # Every block starts fully masked and the counts sum to its size: a step is skipped exactly when the
            # block is already done, known from the counts (no look at the canvas, so no host sync).
            done = 0
            for k in transfer_counts(block, per_block, config.schedule):
                if done == block:
                    continue
                run_step(lambda logits, masked, k=k, hi=hi: commit_fixed(
                    canvas, logits, masked, hi, k, config.temperature, config.remasking, generators), every)
                done += k
        else:
            while True:
                left = (canvas[:, lo:hi] == mask_id).sum(dim=1).tolist()  # the step's one host sync
                active = [c > 0 for c in left]
                if not any(active):
                    break
                run_step(lambda logits, masked, hi=hi, active=active: commit_threshold(
                    canvas, logits, masked, hi, config.threshold, active, config.temperature, generators), active)
    durations = clock.seconds()
    out.sample_prefill_s = durations[:n_prefill_marks] if config.prefix_cache else [0.0] * n
    out.prefill_s, out.step_s = sum(out.sample_prefill_s), durations[n_setup_marks:]
    out.denoise_s = sum(out.step_s)
    out.n_forward = (n if config.prefix_cache else 0) + out.n_steps
    return out


def _prefix_cached_step(model, prompts, lengths, config: GenerationConfig, prefills, out: GenerationOutput,
                        clock: StageClock, canvas: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Prefill every prompt alone, pack the caches; returns the step: answer embeddings -> logits.

    ``compile=true``: the packed prefix is padded to its shape bucket, the working buffers are allocated, and a
    new shape is compiled now, on the first canvas (timed as ``compile_s``, one extra mark on the clock)."""
    caches = []
    for prompt, prefill in zip(prompts, prefills, strict=True):
        caches.append(prefill(model, prompt, config.kv_dtype) if prefill else fill_prefix(model, prompt,
                                                                                           config.kv_dtype)[0])
        clock.mark()
    out.sample_cache_bytes = [cache_bytes(c) for c in caches]
    out.prefix_cache_bytes = sum(out.sample_cache_bytes)
    slots = None
    if config.compile:
        slots = bucket_length(max(c.get_seq_length() for c in caches), config.compile_bucket)
    cache, prefix_padding = pack_prefix_caches(caches, slots)
    device, gen = prompts[0].device, config.gen_length
    # Answer positions follow each prompt's own length (FastV's pruned cache keeps the original positions).
    positions = torch.tensor(lengths, device=device)[:, None] + torch.arange(gen, device=device)[None]
    key_padding = None
    if prefix_padding is not None:
        key_padding = torch.cat([prefix_padding, prefix_padding.new_zeros(len(prompts), gen)], dim=1)

    if config.compile:
        cache.prepare_static(len(prompts), gen, prompts[0].dtype)
        first = model.embed_tokens(canvas).to(prompts[0].dtype)
        out.compile_s = COMPILED_STEP.warm(model, first, cache, positions, key_padding)
        clock.mark()
        return lambda answer_embeds: COMPILED_STEP(model, answer_embeds, cache, positions, key_padding)

    def step(answer_embeds: torch.Tensor) -> torch.Tensor:
        return model.logits(answer_embeds, cache=cache, position_ids=positions, key_padding=key_padding)

    return step


def _full_sequence_step(model, prompts, lengths, gen: int, clock: StageClock
                        ) -> Callable[[torch.Tensor], torch.Tensor]:
    """No prefix cache: every step runs prompt + canvas (prompts right-padded, padding masked)."""
    if len(prompts) == 1:
        def single(answer_embeds: torch.Tensor) -> torch.Tensor:
            return model.logits(torch.cat([prompts[0], answer_embeds], dim=1), logits_to_keep=gen)

        return single
    longest, device = max(lengths), prompts[0].device
    padded = torch.cat([F.pad(p, (0, 0, 0, longest - p.shape[1])) for p in prompts])
    slots = torch.arange(longest, device=device)[None]
    lengths_t = torch.tensor(lengths, device=device)[:, None]
    key_padding = torch.cat([slots >= lengths_t, torch.zeros(len(prompts), gen, dtype=torch.bool, device=device)], 1)
    positions = torch.cat([slots.expand(len(prompts), -1), lengths_t + torch.arange(gen, device=device)[None]], 1)

    def step(answer_embeds: torch.Tensor) -> torch.Tensor:
        return model.logits(torch.cat([padded, answer_embeds], dim=1), position_ids=positions,
                            key_padding=key_padding, logits_to_keep=gen)

    return step


def commit_step(canvas: torch.Tensor, logits: torch.Tensor, masked: torch.Tensor, block_end: int, k: int,
                config: GenerationConfig, generator: torch.Generator | None) -> None:
    """Commit the ``k`` most confident predictions among masked positions before ``block_end`` (in place)."""
    commit_fixed(canvas, logits, masked, block_end, k, config.temperature, config.remasking,
                 [generator] * canvas.shape[0])
