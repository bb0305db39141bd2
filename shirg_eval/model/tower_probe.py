"""One SigLIP layer's attention and keys, without switching the tower to eager attention.

:class:`TowerProbe` registers forward hooks on the ``q_proj`` / ``k_proj`` of the requested encoder layers and
keeps their outputs (detached). The tower itself runs unchanged (SDPA or flash attention, no attention maps
returned). From the captured queries and keys, :func:`attention_received` computes what the reducers need: the mean
attention each token receives, ``mean over heads and queries of softmax(q k^T / sqrt(d))`` -- SigLIP has no [CLS]
token whose attention row the CLIP-based methods read, so the mean over all queries stands in for it. Queries are
processed in chunks so the ``[heads, N, N]`` map never exists at once (at 672 px, 16 x 2304 x 2304 floats would be
340 MB per view).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["TowerProbe", "attention_received", "encoder_layers"]

# Softmax elements per chunk (~64 MB of float32): bounds the peak memory of attention_received.
_CHUNK_ELEMENTS = 1 << 24


def encoder_layers(tower: nn.Module) -> nn.ModuleList:
    """The SigLIP encoder layers (transformers 5 flattened ``SiglipVisionModel``; 4.x nests ``.vision_model``)."""
    return getattr(tower, "vision_model", tower).encoder.layers


@torch.no_grad()
def attention_received(queries: Tensor, keys: Tensor, n_heads: int) -> Tensor:
    """``[V, N]`` float32: mean over heads and queries of each key's softmax attention weight.

    ``queries``/``keys``: ``[V, N, C]`` projections of one layer (heads concatenated, SigLIP's layout). The rows of
    each softmax sum to one, so every view's result sums to one as well.
    """
    v, n, c = queries.shape
    d = c // n_heads
    q = queries.detach().float().view(v, n, n_heads, d).transpose(1, 2)  # [V, H, N, d]
    k = keys.detach().float().view(v, keys.shape[1], n_heads, d).transpose(1, 2)
    received = q.new_zeros(v, n_heads, k.shape[2])
    chunk = max(1, _CHUNK_ELEMENTS // (v * n_heads * k.shape[2]))
    scale = d**-0.5
    for start in range(0, n, chunk):
        logits = torch.matmul(q[:, :, start : start + chunk], k.transpose(-1, -2)) * scale
        received += torch.softmax(logits, dim=-1).sum(dim=2)
    return received.sum(dim=1) / (n * n_heads)


class TowerProbe:
    """Context manager: capture the queries and keys of some tower layers during one forward pass.

    ``layers`` are indices into the tower as LaViDa runs it (``-1`` = the last kept layer, whose output is the
    feature map). After the forward pass, :meth:`attention` and :meth:`keys` read the captured projections.
    """

    def __init__(self, tower: nn.Module, layers: Sequence[int] = (), keys: bool = False):
        self.blocks = encoder_layers(tower)
        self.n_heads = int(self.blocks[0].self_attn.num_heads)
        n = len(self.blocks)
        for layer in layers:
            if not -n <= layer < n:
                raise ValueError(f"tower layer {layer} does not exist (the tower has {n} layers)")
        self.layers = {int(layer): int(layer) % n for layer in layers}
        self.want_keys = keys
        self.read_layer = n - 1
        self._captured: dict[tuple[int, str], Tensor] = {}
        self._handles: list = []

    def _hook(self, layer: int, what: str):
        def store(_module, _inputs, output):
            self._captured[(layer, what)] = output.detach()

        return store

    def __enter__(self) -> TowerProbe:
        wanted = {(idx, "q") for idx in self.layers.values()} | {(idx, "k") for idx in self.layers.values()}
        if self.want_keys:
            wanted.add((self.read_layer, "k"))
        for idx, what in sorted(wanted):
            proj = self.blocks[idx].self_attn.q_proj if what == "q" else self.blocks[idx].self_attn.k_proj
            self._handles.append(proj.register_forward_hook(self._hook(idx, what)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _get(self, idx: int, what: str) -> Tensor:
        if (idx, what) not in self._captured:
            raise RuntimeError("TowerProbe: run the tower inside the `with` block before reading the probe")
        return self._captured[(idx, what)]

    def attention(self) -> dict[int, Tensor]:
        """``{requested layer: [V, N] attention received}`` (keys as requested, e.g. ``-1``)."""
        return {
            layer: attention_received(self._get(idx, "q"), self._get(idx, "k"), self.n_heads)
            for layer, idx in self.layers.items()
        }

    def keys(self) -> Tensor:
        """``[V, N, C]`` float32 keys of the read layer."""
        return self._get(self.read_layer, "k").float()
