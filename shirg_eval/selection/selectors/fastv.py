"""``fastv``: rank the visual tokens inside the LM after its first layers, keep ``k`` for the rest and the cache.

Paper: Liang Chen et al., "An Image is Worth 1/2 Tokens After Layer 2: Plug-and-Play Inference Acceleration for
Large Vision-Language Models" (FastV), ECCV 2024 (arXiv:2403.06764; code github.com/pkunlp-icler/FastV). FastV
runs the prompt through the first ``K`` LM layers with every image token, takes the attention map of layer
``K - 1`` averaged over heads, ranks the image tokens by the attention the last token pays them, and drops all but
the top ones from layer ``K`` on (kept tokens keep their original position ids). ``K = 2`` by default.

The visual side of this selector keeps every token (like ``full``); the choice happens in the LM prefill
(:class:`FastVPrefill`, wired in by :class:`~shirg_eval.pipeline.ShirgPipeline` through the sampler's ``prefill``
hook). Adaptations, stated:

- LLaDA is bidirectional and decodes a block of masked answer tokens from a prefix cache: there is no "last
  token" that predicts the next one, and the answer positions are not in the prefix. The ranking is the mean
  attention each visual token receives from all text positions of the prompt (system prompt, question and chat
  template), averaged over heads, at layer ``lm_layers - 1``, computed from that layer's queries and keys.
  So FastV, unlike the vision-side selectors, is *not* conditioned on the document's question alone (the
  harness's ``query``): the task instruction is part of the prompt the LM reads, and its positions vote too (as
  FastV's last token has read the instruction).
- The prefix cache holds only the kept positions (text + ``k`` visual) in *every* layer: in the first
  ``lm_layers`` layers their keys/values were computed with all visual tokens present, but the answer tokens of
  the denoising steps attend to the kept ones only (FastV's autoregressive cache keeps all image tokens in its
  first ``K`` layers). One prefix length for every layer keeps the Prefix-DLM cache and its mask uniform, and is
  the whole KV saving.
- ``k`` is the number of visual tokens the LM keeps after layer ``lm_layers - 1`` (FastV's ``R`` as a count).
- The prefill cost FastV adds (its first layers over every visual token, and the ranking) is measured per sample
  and recorded in the selection info (``fastv.full_layers_ms``, ``fastv.rank_ms``, ``fastv.kept_layers_ms``).
- Needs the prefix cache (``prefix_cache=true``, the default).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from ...model.kv_cache import PrefixCache
from ...model.lavida import LavidaModel, VisualSequence
from ...model.sampler import synced_perf_counter
from ..base import DEFAULT_K, SelectionResult, Selector, check_int
from ..context import SelectionContext, SelectorNeeds
from ..reduce_ops import top_k_raster
from ..registry import register_selector


@dataclass
class FastVResult:
    cache: PrefixCache
    kept: Tensor  # [k] ascending indices into the visual block
    scores: Tensor  # [n_visual] attention received from the text positions at layer lm_layers - 1
    timings_ms: dict[str, float] = field(default_factory=dict)


@torch.no_grad()
def text_to_visual_attention(queries: Tensor, keys: Tensor, visual_span: tuple[int, int]) -> Tensor:
    """``[n_visual]``: mean over heads and text queries of the softmax attention on each visual key.

    ``queries``: ``[1, H, T, d]`` and ``keys``: ``[1, H_kv, T, d]`` of one layer, RoPE applied. Text positions are
    every position outside ``visual_span``.
    """
    lo, hi = visual_span
    t = queries.shape[2]
    text = torch.cat([torch.arange(lo), torch.arange(hi, t)]).to(queries.device)
    q = queries[:, :, text].float()
    k = keys.float().repeat_interleave(queries.shape[1] // keys.shape[1], dim=1)
    weights = torch.softmax(q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5, dim=-1)  # [1, H, T_text, T]
    return weights.mean(dim=(0, 1, 2))[lo:hi]


@torch.no_grad()
def fastv_prefill(model: LavidaModel, prompt_embeds: Tensor, visual_span: tuple[int, int], k: int, lm_layers: int = 2,
                  kv_dtype: str = "auto") -> FastVResult:
    """The Prefix-DLM prefill with FastV: all tokens through ``lm_layers`` layers, then the kept ones only."""
    n_layers = model.config.n_layers
    if not 1 <= lm_layers <= n_layers:
        # lm_layers == n_layers is allowed (tiny test models): nothing left to prune, only the cache shrinks.
        raise ValueError(f"fastv: lm_layers={lm_layers} must be in [1, {n_layers}] (the LM has {n_layers} layers)")
    lo, hi = visual_span
    n_visual = hi - lo
    if not 1 <= k <= n_visual:
        raise ValueError(f"fastv: k={k} must be in [1, {n_visual}] (the visual tokens in the prompt)")
    device = prompt_embeds.device
    total = prompt_embeds.shape[1]
    cache = PrefixCache(n_layers, kv_dtype)
    start = synced_perf_counter(device)
    first = model.run_first_layers(prompt_embeds, lm_layers, cache, return_queries=True)
    t_full = synced_perf_counter(device)
    keys = cache.layers[lm_layers - 1].prefix(first.hidden.dtype)[0]
    scores = text_to_visual_attention(first.queries, keys, visual_span)
    kept = top_k_raster(scores, k)
    keep = torch.cat([torch.arange(lo, device=device), lo + kept, torch.arange(hi, total, device=device)])
    t_rank = synced_perf_counter(device)
    cache.keep(keep)  # the first layers cached every token: from here on the kept ones only, in every layer
    model.run_layers_from(lm_layers, first.hidden[:, keep], first.position_ids[:, keep], cache)
    end = synced_perf_counter(device)
    timings = {"full_layers_ms": (t_full - start) * 1e3, "rank_ms": (t_rank - t_full) * 1e3,
               "kept_layers_ms": (end - t_rank) * 1e3}
    return FastVResult(cache, kept, scores, timings)


class FastVPrefill:
    """The sampler's ``prefill`` hook for one prompt; after the call, :meth:`apply` narrows the visual block."""

    def __init__(self, selector: FastVSelector, visual_span: tuple[int, int]):
        self.selector, self.visual_span = selector, visual_span
        self.result: FastVResult | None = None

    def __call__(self, model: LavidaModel, prompt_embeds: Tensor, kv_dtype: str) -> PrefixCache:
        self.result = fastv_prefill(model, prompt_embeds, self.visual_span, self.selector.k,
                                    self.selector.lm_layers, kv_dtype)
        return self.result.cache

    def apply(self, visual: VisualSequence) -> VisualSequence:
        """The visual block as the LM kept it: kept tokens, their grid positions, and FastV's measured costs."""
        if self.result is None:
            raise RuntimeError("FastVPrefill.apply before the prefill ran")
        kept = self.result.kept.to(visual.embeds.device)
        positions = visual.kept_indices.to(kept.device)[kept] if visual.kept_indices is not None else kept
        info: dict[str, Any] = {**visual.info, "k": self.selector.k, "n_tokens": [int(kept.numel())],
                                "fastv": {"lm_layers": self.selector.lm_layers, "n_visual_in": visual.n_tokens,
                                          **{k: round(v, 3) for k, v in self.result.timings_ms.items()}}}
        return replace(visual, embeds=visual.embeds[kept], kept_indices=positions, info=info)


@register_selector("fastv")
class FastVSelector(Selector):
    needs = SelectorNeeds(lm_layers=2, multi_view=True)

    def __init__(self, k: int = DEFAULT_K, lm_layers: int = 2) -> None:
        self.k = check_int("k", k)
        self.lm_layers = check_int("lm_layers", lm_layers)
        self.needs = SelectorNeeds(lm_layers=self.lm_layers, multi_view=True)
        super().__init__(k=self.k, lm_layers=self.lm_layers)

    def select(
        self,
        tokens: Tensor,
        grid_hw: tuple[int, int],
        text_embeds: Tensor | None = None,
        generator: torch.Generator | None = None,
        context: SelectionContext | None = None,
    ) -> SelectionResult:
        """Every token goes to the LM; the ranking happens in its prefill (see :class:`FastVPrefill`)."""
        self.check_inputs(tokens, grid_hw, text_embeds)
        n = tokens.shape[1]
        if self.k > n:
            raise ValueError(f"fastv: k={self.k} exceeds the number of visual tokens ({n}); choose k <= {n}")
        kept = torch.arange(n, device=tokens.device)
        info = {"selector": self.name, "k": self.k, "lm_layers": self.lm_layers, "in_lm": True, "n_scaffold": 0,
                "n_tokens": [n] * tokens.shape[0]}
        return SelectionResult([tokens[b] for b in range(tokens.shape[0])], [kept.clone()] * tokens.shape[0], info)

    def prefill_for(self, visual_span: tuple[int, int]) -> FastVPrefill:
        return FastVPrefill(self, visual_span)
