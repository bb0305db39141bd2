"""LaViDa-LLaDA rebuilt from transformers parts: SigLIP (layer -2) -> mlp2x_gelu -> LLaDA (bidirectional Llama).

One module, explicit config, readable forward. Checkpoint I/O lives in ``loading.py``, decoding in
``sampler.py``; this file is the network and LaViDa's visual-sequence assembly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache, LlamaForCausalLM, SiglipVisionModel
from transformers.cache_utils import Cache
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from .compat import LAYER_CACHE_KWARG, LM_CACHE_KWARG
from .config import LavidaConfig
from .preprocess import ImageViews, LavidaImageProcessor

IMAGE_TOKEN_INDEX = -200  # placeholder id in prompt ids where the visual block goes


@dataclass
class VisualSequence:
    """The visual block spliced into the LM sequence, and the facts about how it was made."""

    embeds: torch.Tensor  # [T, d_model]
    views: ImageViews | None = None
    grid_hw: tuple[int, int] | None = None  # token grid the selection ran on (e.g. 48x48), if any
    kept_indices: torch.Tensor | None = None  # raster indices kept by a selector
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_tokens(self) -> int:
        return int(self.embeds.shape[0])


def bidirectional_mask(batch: int, q_len: int, kv_len: int, dtype: torch.dtype, device: torch.device,
                       key_padding: torch.Tensor | None = None) -> torch.Tensor:
    """Additive 4-D mask: every query sees every key (LLaDA is not causal), except padded keys if given."""
    mask = torch.zeros(batch, 1, q_len, kv_len, dtype=dtype, device=device)
    if key_padding is not None:  # [B, kv_len] True where the key is padding
        mask = mask.masked_fill(key_padding[:, None, None, :], torch.finfo(dtype).min)
    return mask


def unpad(fmap: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Crop a ``[D, H, W]`` tile map back to the original aspect ratio (LLaVA-NeXT's ``unpad_image``)."""
    orig_w, orig_h = image_size
    cur_h, cur_w = fmap.shape[1:]
    if orig_w / orig_h > cur_w / cur_h:
        new_h = int(orig_h * (cur_w / orig_w))
        pad = (cur_h - new_h) // 2
        return fmap[:, pad: cur_h - pad, :]
    new_w = int(orig_w * (cur_h / orig_h))
    pad = (cur_w - new_w) // 2
    return fmap[:, :, pad: cur_w - pad]


@dataclass
class FirstLayers:
    """The prompt after the LM's first layers (:meth:`LavidaModel.run_first_layers`)."""

    hidden: torch.Tensor  # [B, T, D]: the last of those layers' output
    position_ids: torch.Tensor  # [B, T]
    queries: torch.Tensor | None = None  # [B, H, T, d]: that layer's attention queries, RoPE applied (if asked)


class LavidaModel(nn.Module):
    def __init__(self, config: LavidaConfig, attn_implementation: str | None = None):
        super().__init__()
        self.config = config
        self.vision_tower = SiglipVisionModel(config.vision)
        self.mm_projector = nn.Sequential(
            nn.Linear(config.mm_hidden_size, config.d_model),
            nn.GELU(),  # exact (erf) GELU, as LaViDa's mlp2x_gelu
            nn.Linear(config.d_model, config.d_model),
        )
        self.image_newline = nn.Parameter(torch.zeros(config.d_model))
        self.language_model = LlamaForCausalLM(config.llama_config(attn_implementation))
        for layer in self.language_model.model.layers:
            layer.self_attn.is_causal = False  # LLaDA attends both ways
        self.image_processor = LavidaImageProcessor(config.vision.image_size, config.image_grid_pinpoints)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, path_or_id: str | Path, *, device: str | torch.device | None = None,
                        dtype: torch.dtype | str | None = None, attn_implementation: str | None = None,
                        revision: str | None = None) -> LavidaModel:
        """Load a checkpoint in LaViDa's released layout (local directory or hub id); see ``loading.py``."""
        from .loading import load_lavida

        return load_lavida(path_or_id, device=device, dtype=dtype, attn_implementation=attn_implementation,
                           revision=revision)

    @property
    def device(self) -> torch.device:
        return self.image_newline.device

    @property
    def dtype(self) -> torch.dtype:
        return self.image_newline.dtype

    @property
    def embed_tokens(self) -> nn.Embedding:
        return self.language_model.model.embed_tokens

    # ------------------------------------------------------------------ vision
    def encode_views(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """SigLIP features of each view, ``[V, N, mm_hidden]``: layer -2 of the full tower, no post-layernorm.

        Views larger than the tower's native size use transformers' bicubic position-embedding interpolation.
        """
        pixel_values = pixel_values.to(device=self.device, dtype=self.vision_tower.dtype)
        native = pixel_values.shape[-1] == self.config.vision.image_size and pixel_values.shape[-2] == self.config.vision.image_size
        out = self.vision_tower(pixel_values=pixel_values, interpolate_pos_encoding=not native, output_hidden_states=True)
        # hidden_states[-1] is the last kept layer's output; last_hidden_state has post_layernorm applied,
        # which LaViDa never uses.
        return out.hidden_states[-1]

    def project(self, features: torch.Tensor) -> torch.Tensor:
        return self.mm_projector(features.to(self.mm_projector[0].weight.dtype))

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Projected tokens per view, ``[V, N, d_model]`` (LaViDa's ``encode_images``)."""
        return self.project(self.encode_views(pixel_values))

    @staticmethod
    def pool_2d(tokens: torch.Tensor, stride: int = 2, mode: str = "bilinear") -> torch.Tensor:
        """LaViDa's ``get_2dPool``: ``[V, S*S, D]`` -> ``[V, ceil(S/2)^2, D]`` (27x27 -> 14x14), row-major."""
        views, n, dim = tokens.shape
        side = math.isqrt(n)
        grid = tokens.view(views, side, side, dim).permute(0, 3, 1, 2)
        size = (math.ceil(side / stride), math.ceil(side / stride))
        if mode == "bilinear":
            pooled = F.interpolate(grid, size=size, mode="bilinear", align_corners=False)
        elif mode == "average":
            pooled = F.avg_pool2d(grid, stride, ceil_mode=True)
        elif mode == "max":
            pooled = F.max_pool2d(grid, stride, ceil_mode=True)
        else:
            raise ValueError(f"unknown mm_spatial_pool_mode {mode!r}")
        return pooled.permute(0, 2, 3, 1).reshape(views, -1, dim)

    def assemble_anyres(self, pooled: torch.Tensor, image_size: tuple[int, int], grid_wh: tuple[int, int],
                        newline: torch.Tensor | None = None) -> torch.Tensor:
        """Base view (no newline), then the tile map unpadded to the image's aspect with a newline per row.

        ``newline`` (default ``image_newline``) lets per-token maps other than embeddings (e.g. labels of each
        visual position) be laid out exactly as the visual block.
        """
        base, tiles = pooled[0], pooled[1:]
        cols, rows = grid_wh
        side = math.isqrt(tiles.shape[1])
        dim = tiles.shape[-1]
        fmap = tiles.view(rows, cols, side, side, dim).permute(4, 0, 2, 1, 3).reshape(dim, rows * side, cols * side)
        fmap = unpad(fmap, image_size)
        newline = (self.image_newline if newline is None else newline).to(fmap.dtype)[:, None, None]
        newline = newline.expand(dim, fmap.shape[1], 1)
        fmap = torch.cat([fmap, newline], dim=-1)
        return torch.cat([base, fmap.flatten(1, 2).transpose(0, 1)], dim=0)

    def release_embeds(self, views: ImageViews) -> torch.Tensor:
        """Projected, 2x2-pooled views assembled as LaViDa does: anyres tile map with newlines, or one padded
        view followed by a single newline."""
        pooled = self.pool_2d(self.encode_images(views.pixel_values), mode=self.config.mm_spatial_pool_mode)
        return self.layout_block(pooled, views)

    def layout_block(self, pooled: torch.Tensor, views: ImageViews, newline: torch.Tensor | None = None) -> torch.Tensor:
        """Pooled views -> the visual block: the anyres tile map, or one padded view and a single newline.

        ``newline`` (default ``image_newline``) lays out per-token maps other than embeddings the same way.
        """
        if views.grid_wh is not None:
            return self.assemble_anyres(pooled, views.image_size, views.grid_wh, newline=newline)
        newline = self.image_newline if newline is None else newline
        return torch.cat([pooled[0], newline.to(pooled.dtype)[None]], dim=0)

    def visual_sequence(self, image, mode: str | None = None) -> VisualSequence:
        """LaViDa's visual block for one image, as the released model builds it.

        ``mode``: ``anyres`` (release, ~980 tokens for a typical image), ``pad`` (one square view, 196 + newline)
        or ``single`` (one 384 px view, 729 tokens, unpooled, no newline: lmms-eval's old 4-D tensor path).
        """
        mode = mode or self.config.image_aspect_ratio
        proc = self.image_processor
        if mode in ("anyres", "pad"):
            views = proc.anyres(image) if mode == "anyres" else proc.pad(image)
            embeds = self.release_embeds(views)
        elif mode == "single":
            views = proc.single(image, self.config.vision.image_size)
            embeds = self.encode_images(views.pixel_values)[0]
        else:
            raise ValueError(f"unknown image mode {mode!r}; expected 'anyres', 'pad' or 'single'")
        return VisualSequence(embeds, views, info={"mode": mode, "n_views": int(views.pixel_values.shape[0])})

    # ------------------------------------------------------------------ language model
    def embed_prompt(self, input_ids: torch.Tensor, visual: torch.Tensor | None) -> torch.Tensor:
        """Text ids -> embeddings with the visual block spliced in place of ``IMAGE_TOKEN_INDEX``: ``[1, L, D]``."""
        if input_ids.dim() == 2:
            if input_ids.shape[0] != 1:
                raise ValueError("embed_prompt takes one prompt at a time (batch size 1)")
            input_ids = input_ids[0]
        input_ids = input_ids.to(self.device)
        image_positions = (input_ids == IMAGE_TOKEN_INDEX).nonzero().flatten().tolist()
        if len(image_positions) > 1:
            raise ValueError(f"prompt has {len(image_positions)} image placeholders; one image per prompt is supported")
        if image_positions and visual is None:
            raise ValueError("prompt has an image placeholder but no visual tokens were given")
        text = self.embed_tokens(input_ids.clamp(min=0))
        if not image_positions:
            embeds = text
        else:
            pos = image_positions[0]
            embeds = torch.cat([text[:pos], visual.to(device=text.device, dtype=text.dtype), text[pos + 1:]], dim=0)
        return embeds[: self.config.tokenizer_model_max_length][None]

    def forward(self, inputs_embeds: torch.Tensor, cache: DynamicCache | None = None,
                position_ids: torch.Tensor | None = None, key_padding: torch.Tensor | None = None,
                use_cache: bool = False, logits_to_keep: int = 0, output_hidden_states: bool = False):
        """One bidirectional LLaDA pass over embeddings (optionally on top of a prefix cache)."""
        batch, q_len, _ = inputs_embeds.shape
        past = cache.get_seq_length() if cache is not None else 0
        if position_ids is None:
            position_ids = torch.arange(past, past + q_len, device=inputs_embeds.device)[None].expand(batch, -1)
        mask = bidirectional_mask(batch, q_len, past + q_len, inputs_embeds.dtype, inputs_embeds.device, key_padding)
        return self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=mask,
            position_ids=position_ids,
            use_cache=use_cache or cache is not None,
            logits_to_keep=logits_to_keep,
            output_hidden_states=output_hidden_states,
            **{LM_CACHE_KWARG: cache},
        )

    # ------------------------------------------------------------------ the LM a few layers at a time (in-LM reducers)
    def _run_decoder_layers(self, layers: slice, hidden: torch.Tensor, position_ids: torch.Tensor,
                            cache: Cache) -> torch.Tensor:
        """``hidden`` through the decoder layers ``layers``, bidirectionally, each storing its keys/values in
        ``cache``; the positions attend to each other only (the layers' cache entries must still be empty)."""
        lm = self.language_model.model
        batch, length, _ = hidden.shape
        mask = bidirectional_mask(batch, length, length, hidden.dtype, hidden.device)
        position_embeddings = lm.rotary_emb(hidden, position_ids=position_ids)
        for layer in lm.layers[layers]:
            out = layer(hidden, attention_mask=mask, position_ids=position_ids, use_cache=True,
                        position_embeddings=position_embeddings, **{LAYER_CACHE_KWARG: cache})
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    def run_first_layers(self, inputs_embeds: torch.Tensor, n_layers: int, cache: Cache,
                         return_queries: bool = False) -> FirstLayers:
        """The prompt through the LM's first ``n_layers`` decoder layers (the start of :meth:`forward`), their
        keys/values stored in ``cache``. ``return_queries``: also the last of those layers' attention queries
        (what an in-LM reducer ranks tokens with, against that layer's cached keys)."""
        if not 1 <= n_layers <= self.config.n_layers:
            raise ValueError(f"n_layers={n_layers} must be in [1, {self.config.n_layers}]")
        batch, length, _ = inputs_embeds.shape
        position_ids = torch.arange(length, device=inputs_embeds.device)[None].expand(batch, -1)
        attn = self.language_model.model.layers[n_layers - 1].self_attn
        captured: dict[str, torch.Tensor] = {}
        handle = (attn.q_proj.register_forward_hook(lambda _m, _i, out: captured.__setitem__("q", out))
                  if return_queries else None)
        try:
            hidden = self._run_decoder_layers(slice(0, n_layers), inputs_embeds, position_ids, cache)
        finally:
            if handle is not None:
                handle.remove()
        queries = None
        if return_queries:
            cos, sin = self.language_model.model.rotary_emb(hidden, position_ids=position_ids)
            queries = captured["q"].view(batch, length, -1, attn.head_dim).transpose(1, 2)
            queries, _ = apply_rotary_pos_emb(queries, queries, cos, sin)
        return FirstLayers(hidden, position_ids, queries)

    def run_layers_from(self, first_layer: int, hidden: torch.Tensor, position_ids: torch.Tensor,
                        cache: Cache) -> torch.Tensor:
        """``hidden`` (a :meth:`run_first_layers` output, or some of its positions with their ``position_ids``)
        through the decoder layers from ``first_layer`` on, storing their keys/values in ``cache``; returns the
        last layer's output (before the final norm)."""
        if not 0 <= first_layer <= self.config.n_layers:
            raise ValueError(f"first_layer={first_layer} must be in [0, {self.config.n_layers}]")
        return self._run_decoder_layers(slice(first_layer, None), hidden, position_ids, cache)

    def logits(self, inputs_embeds: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.forward(inputs_embeds, **kwargs).logits

    def fill_prefix_cache(self, prompt_embeds: torch.Tensor) -> tuple[DynamicCache, torch.Tensor]:
        """Prefix-DLM: encode image+prompt once (bidirectionally) into a cache; returns (cache, prompt logits)."""
        cache = DynamicCache(config=self.language_model.config)
        out = self.forward(prompt_embeds, cache=cache, use_cache=True)
        return cache, out.logits
