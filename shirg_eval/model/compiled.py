"""``compile=true``: the cached denoising step through ``torch.compile``, on static shapes.

What is compiled is one step: answer embeddings -> LM forward over the static prefix cache -> logits (the commit
rule stays eager: it is a handful of small ops). Shapes are static (``dynamic=False``): the compiled graph is
specialised to (batch, prefix slots, canvas), so prefix lengths are right-padded (key-masked) up to a multiple of
``compile_bucket`` positions, and a task whose prompts span a few hundred positions compiles a few shapes, not one
per document. The working K/V buffers are allocated before the first compiled call, so the graph only writes into
them. On CUDA the mode is ``reduce-overhead`` (CUDA graphs through the compiler's cudagraph trees); elsewhere the
default mode.

Compilation happens in a warm-up call made when a shape is seen for the first time (on that answer's first canvas;
its logits are discarded and it is not an ``n_forward``): its wall time is the answer's ``compile_s``, reported
apart and left out of latency. :data:`COMPILE_STATS` counts, for the process, frames compiled, graph breaks and
recompiles (frames compiled beyond the first), read from dynamo's own counters. Dynamo stops compiling a function
after ``recompile_limit`` shapes (8 by default) and runs new ones eagerly; a process that serves a sweep meets more
buckets than that, so the limit is raised to :data:`RECOMPILE_LIMIT`. (A new shape key whose graph dynamo can reuse,
e.g. another storage dtype -- the step reads only the compute-dtype working buffer -- compiles no new frame.)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch


@dataclass
class CompileStats:
    mode: str | None = None
    frames_compiled: int = 0
    graph_breaks: int = 0
    recompiles: int = 0
    compile_s: float = 0.0
    shapes: list[list[int]] = field(default_factory=list)  # [batch, prefix slots, canvas] compiled

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


COMPILE_STATS = CompileStats()
RECOMPILE_LIMIT = 256  # shapes per process (batch sizes x prefix buckets x canvases x models)


def bucket_length(length: int, bucket: int) -> int:
    """``length`` rounded up to a multiple of ``bucket`` (the compiled step's prefix slots)."""
    if bucket < 1:
        raise ValueError(f"compile_bucket must be >= 1, got {bucket}")
    return int(math.ceil(length / bucket) * bucket)


def _dynamo_counts() -> tuple[int, int]:
    from torch._dynamo.utils import counters

    return int(counters["frames"].get("ok", 0)), int(sum(counters["graph_break"].values()))


def _cached_step(model, answer_embeds: torch.Tensor, cache, positions: torch.Tensor,
                 key_padding: torch.Tensor | None) -> torch.Tensor:
    return model.logits(answer_embeds, cache=cache, position_ids=positions, key_padding=key_padding)


class CompiledStep:
    """The process's compiled step; :meth:`warm` compiles a new shape (timed), :meth:`__call__` runs it."""

    def __init__(self) -> None:
        self.fn = None
        self.seen: set[tuple] = set()

    def _compiled(self, device: torch.device):
        if self.fn is None:
            import torch._dynamo.config as dynamo_config

            for name in ("recompile_limit", "cache_size_limit"):  # the name changed across torch versions
                if hasattr(dynamo_config, name):
                    setattr(dynamo_config, name, max(getattr(dynamo_config, name), RECOMPILE_LIMIT))
            COMPILE_STATS.mode = "reduce-overhead" if device.type == "cuda" else "default"
            self.fn = torch.compile(_cached_step, dynamic=False, mode=COMPILE_STATS.mode)
        return self.fn

    def warm(self, model, answer_embeds: torch.Tensor, cache, positions: torch.Tensor,
             key_padding: torch.Tensor | None) -> float:
        """Compile for this shape if it is new; returns the seconds spent (0.0 for a known shape)."""
        shape = (tuple(answer_embeds.shape), cache.get_seq_length(), answer_embeds.dtype, cache.kv_dtype,
                 answer_embeds.device.type, id(model))
        if shape in self.seen:
            return 0.0
        from .sampler import synced_perf_counter

        frames_before, breaks_before = _dynamo_counts()
        start = synced_perf_counter(answer_embeds.device)
        self._compiled(answer_embeds.device)(model, answer_embeds, cache, positions, key_padding)
        seconds = synced_perf_counter(answer_embeds.device) - start
        frames, breaks = _dynamo_counts()
        self.seen.add(shape)
        COMPILE_STATS.frames_compiled += frames - frames_before
        COMPILE_STATS.graph_breaks += breaks - breaks_before
        COMPILE_STATS.recompiles = max(0, COMPILE_STATS.frames_compiled - 1)
        COMPILE_STATS.compile_s += seconds
        COMPILE_STATS.shapes.append([int(answer_embeds.shape[0]), cache.get_seq_length(),
                                     int(answer_embeds.shape[1])])
        return seconds

    def __call__(self, model, answer_embeds: torch.Tensor, cache, positions: torch.Tensor,
                 key_padding: torch.Tensor | None) -> torch.Tensor:
        return self._compiled(answer_embeds.device)(model, answer_embeds, cache, positions, key_padding)


COMPILED_STEP = CompiledStep()
