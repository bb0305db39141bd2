"""Each attention-based reducer's scores against an independent computation on the tiny random tower.

The scores a selector reads (``SelectionContext.attention_at``, recorded while the selector runs through
``VisualPath``) must equal the mean attention each token *receives* -- mean over heads and queries of
``softmax(q k^T / sqrt(d))`` -- at the layer it reads. The reference here never touches ``TowerProbe``: the read
layer is found as the encoder layer whose output is the feature map LaViDa uses, and the attention is recomputed
from that layer's own weights (``layer_norm1`` -> ``q_proj`` / ``k_proj``) on its input hidden state.
"""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image
from torch import Tensor

from shirg_eval.model.tower_probe import encoder_layers
from shirg_eval.selection.context import SelectionContext
from shirg_eval.visual.inputs import anyres_order
from shirg_eval.visual.path import VisualPath

ATTENTION_REDUCERS = ("visionzip", "hired", "prumerge", "prumerge_plus")


@pytest.fixture(scope="module")
def page() -> Image.Image:
    image = Image.new("RGB", (700, 520), "white")
    for i, h in enumerate([120, 330, 210, 420, 60]):
        image.paste((50 * i, 200 - 30 * i, 90), (40 + 130 * i, 500 - h, 110 + 130 * i, 500))
    image.paste((230, 20, 20), (500, 30, 560, 70))
    return image


def received_attention(hidden: Tensor, layer: torch.nn.Module) -> Tensor:
    """``[V, N]``: mean over heads and queries of softmax(q k^T / sqrt(d)), from the layer's own weights."""
    attn = layer.self_attn
    x = layer.layer_norm1(hidden)
    q, k = attn.q_proj(x), attn.k_proj(x)
    v, n, c = q.shape
    heads = int(attn.num_heads)
    d = c // heads
    q = q.view(v, n, heads, d).permute(0, 2, 1, 3)
    k = k.view(v, n, heads, d).permute(0, 2, 1, 3)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)  # [V, H, N(query), N(key)]
    return weights.mean(dim=(1, 2))


def reference_scores(model, pixels: Tensor) -> tuple[dict[str, Tensor], int]:
    """Received attention at layer 0 and at the feature layer, and the feature layer's index."""
    tower = model.vision_tower
    layers = encoder_layers(tower)
    native = pixels.shape[-1] == model.config.vision.image_size
    with torch.no_grad():
        out = tower(pixel_values=pixels, interpolate_pos_encoding=not native, output_hidden_states=True)
        features = model.encode_views(pixels)
        # hidden_states[i] is layer i's input; the feature layer is the one whose output is the feature map.
        matches = [i for i in range(len(layers)) if torch.allclose(out.hidden_states[i + 1], features, atol=1e-6)]
        assert matches, "no encoder layer outputs the feature map"
        read = matches[-1]
        first = received_attention(out.hidden_states[0], layers[0])
        last = received_attention(out.hidden_states[read], layers[read])
    return {"first": first, "read": last}, read


def record_reads(monkeypatch) -> list[tuple[int, Tensor]]:
    reads: list[tuple[int, Tensor]] = []
    original = SelectionContext.attention_at

    def spy(self, layer: int, who: str) -> Tensor:
        value = original(self, layer, who)
        reads.append((layer, value.detach().clone()))
        return value

    monkeypatch.setattr(SelectionContext, "attention_at", spy)
    return reads


@pytest.mark.parametrize("anyres", [False, True])
@pytest.mark.parametrize("variant", ATTENTION_REDUCERS)
def test_selector_scores_equal_independent_received_attention(tiny_model, page, monkeypatch, variant, anyres):
    path = VisualPath(tiny_model, variant, k=150, anyres=anyres)
    views = path.prepare(page)
    pixels = views.pixel_values
    ref, read = reference_scores(tiny_model, pixels)
    n_layers = len(encoder_layers(tiny_model.vision_tower))
    assert read == n_layers - 1  # LaViDa reads the last kept layer (layer -2 of the full tower)
    side = pixels.shape[-1] // tiny_model.config.vision.patch_size

    def arrange(x: Tensor) -> Tensor:  # [V, side^2] -> [1, V * side^2] in LaViDa's order
        flat = x.reshape(1, -1)
        return flat if not anyres else flat[:, anyres_order(side, views.grid_wh)]

    reads = record_reads(monkeypatch)
    with torch.no_grad():
        seq = path(page)
    assert reads, f"{variant} read no attention"
    expected_layers = {-1} | ({0} if variant == "hired" and anyres else set())
    assert {layer for layer, _ in reads} == expected_layers
    for layer, got in reads:
        want = arrange(ref["read"] if layer == -1 else ref["first"])
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(got.sum(-1), torch.full((1,), float(pixels.shape[0])), atol=1e-4, rtol=0)
    if variant == "hired" and not anyres:  # one view: HiRED keeps exactly the top-k of these scores
        top = torch.topk(arrange(ref["read"])[0], 150).indices.sort().values
        assert torch.equal(seq.kept_indices, top)
