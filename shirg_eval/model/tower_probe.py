"""One SigLIP layer's attention and keys, without switching the tower to eager attention.

:class:`TowerProbe` registers forward hooks on the ``q_proj`` / ``k_proj`` of the requested encoder layers and
keeps their outputs (detached). The tower itself runs unchanged (SDPA or flash attention, no attention maps
returned). From the captured queries and keys, :func:`attention_received` computes what the reducers need: the mean
attention each token receives, ``mean over heads and queries of softmax(q k^T / sqrt(d))`` -- SigLIP has no [CLS]
token whose attention row the CLIP-based methods read, so the mean over all queries stands in for it. Queries are
processed in blocks so the ``[heads, N, N]`` map never exists at once (at 672 px, 16 x 2304 x 2304 floats would be
340 MB per view).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["TowerProbe", "attention_received", "encoder_layers"]

# Softmax elements per block: small enough to stay in cache on a CPU (per-head blocks of ~100 queries are ~2.5x
# faster there than one big batched block), large enough to keep a GPU busy.
_BLOCK_ELEMENTS = {"cpu": 1 << 18}
_DEFAULT_BLOCK_ELEMENTS = 1 << 26


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
    nk = keys.shape[1]
    q = (queries.detach().float() * d**-0.5).view(v, n, n_heads, d).transpose(1, 2).contiguous()  # [V, H, N, d]
    kt = keys.detach().float().view(v, nk, n_heads, d).permute(0, 2, 3, 1).contiguous()  # [V, H, d, N]
    budget = _BLOCK_ELEMENTS.get(q.device.type, _DEFAULT_BLOCK_ELEMENTS)
    received = q.new_zeros(v, n_heads, nk)
    if v * n_heads * n * nk <= budget:
        received += torch.softmax(q @ kt, dim=-1).sum(dim=2)
    else:
        rows = max(1, budget // nk)
        heads = max(1, min(n_heads, rows // n))  # whole heads per block when they fit, else query chunks
        step = n if heads > 1 else min(n, rows)
        for h in range(0, n_heads, heads):
            for start in range(0, n, step):
                block = q[:, h : h + heads, start : start + step] @ kt[:, h : h + heads]
                received[:, h : h + heads] += torch.softmax(block, dim=-1).sum(dim=2)
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
