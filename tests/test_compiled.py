"""compile=true: the cached step through torch.compile on the CPU gives the eager ids, without graph breaks, and
compiles once per shape bucket (not per document)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TEST_DEVICE, TEST_DTYPE, fixture_sets, load_golden_model
from safetensors.torch import load_file

from shirg_eval.model.compiled import COMPILE_STATS, RECOMPILE_LIMIT, bucket_length
from shirg_eval.model.sampler import GenerationConfig, generate, generate_batch

SETS = fixture_sets()


def test_bucket_length():
    assert [bucket_length(n, 128) for n in (1, 128, 129, 833)] == [128, 128, 256, 896]
    with pytest.raises(ValueError, match="compile_bucket"):
        bucket_length(5, 0)
    with pytest.raises(ValueError, match="prefix_cache=true"):
        GenerationConfig(compile=True, prefix_cache=False).resolved()


@pytest.mark.slow
@torch.no_grad()
def test_compiled_step_gives_the_eager_ids_and_compiles_per_bucket(tiny_model):
    """Prompts of 30..120 positions share one 128-slot bucket: one frame compiled for three documents (batch 1)
    and one more for the batch of three; no graph break; the ids are the eager ones, threshold decoding too."""
    torch._dynamo.reset()
    before = COMPILE_STATS.frames_compiled, COMPILE_STATS.graph_breaks
    prompts = [torch.randn(1, n, tiny_model.config.d_model, generator=torch.Generator().manual_seed(n))
               for n in (30, 77, 120)]
    for options in (dict(), dict(decoding="threshold", threshold=0.5), dict(kv_dtype="int8")):
        eager = GenerationConfig(gen_length=16, block_length=8, **options)
        compiled = GenerationConfig(gen_length=16, block_length=8, compile=True, **options)
        for prompt in prompts:
            ref = generate(tiny_model, prompt, eager)
            out = generate(tiny_model, prompt, compiled)
            assert out.ids.tolist() == ref.ids.tolist(), options
            assert out.n_forward == ref.n_forward
        batch = generate_batch(tiny_model, prompts, compiled)
        assert batch.ids.tolist() == [generate(tiny_model, p, eager).ids[0].tolist() for p in prompts]
    frames = COMPILE_STATS.frames_compiled - before[0]
    assert 0 < frames <= 4, COMPILE_STATS  # (batch 1, batch 3) x (auto, int8 storage): one frame each at most
    assert COMPILE_STATS.graph_breaks == before[1]
    assert COMPILE_STATS.compile_s > 0 and [1, 128, 16] in COMPILE_STATS.shapes
    assert COMPILE_STATS.recompiles <= len(COMPILE_STATS.shapes)  # at most one per shape bucket
    # a sweep meets more buckets than dynamo's default 8 shapes per function: the limit is raised
    assert torch._dynamo.config.recompile_limit >= RECOMPILE_LIMIT


@pytest.mark.slow
@pytest.mark.skipif(TEST_DEVICE != "cpu" or TEST_DTYPE != "float32", reason="exact ids: CPU float32")
@pytest.mark.parametrize("root", SETS, ids=[p.name for p in SETS])
@torch.no_grad()
def test_compiled_step_keeps_the_golden_ids(root):
    meta = json.loads((root / "meta.json").read_text())
    exp = load_file(str(root / "expected.safetensors"))
    model = load_golden_model(root)
    name = "gen3_prefix_L16_B8_ratio05_shift"
    call = meta["generate"][name]["call"]
    config = GenerationConfig(gen_length=call["max_new_tokens"], block_length=call["block_length"],
                              steps=call["steps"], step_ratio=call["step_ratio"], schedule=call["schedule"],
                              compile=True)
    step_logits: list[torch.Tensor] = []
    out = generate(model, exp["inputs_embeds"], config, mask_id=call["mask_id"], on_step_logits=step_logits.append)
    assert out.ids.tolist() == exp[f"{name}_output_ids"][:, -config.gen_length:].tolist()
    err = (torch.stack([s[0] for s in step_logits]) - exp[f"{name}_step_logits"]).abs().max().item()
    assert err <= 1e-4, err


@pytest.mark.slow
@torch.no_grad()
def test_harness_compile_true_at_batch_size_two(tiny_checkpoint, monkeypatch):
    """compile=true with --batch_size 2 through the lmms-eval model: batch 1 eager's answers; the records carry the
    compile counts (frames compiled > 0, no graph break) and compile time apart from latency."""
    from PIL import Image
    from test_batching import _requests

    from shirg_eval.harness import efficiency
    from shirg_eval.harness.lmms_model import MODEL_CLASSES

    monkeypatch.delenv("SHIRG_JOURNAL_DIR", raising=False)
    monkeypatch.delenv("SHIRG_PICTURE_DIR", raising=False)
    docs = [{"image": Image.effect_noise((96 + 20 * i, 64), 50).convert("RGB"), "question": q, "shirg_question": q,
             "shirg_uid": f"c{i}"} for i, q in enumerate(["What is the highest bar?", "Which year?", "Name?"])]
    answers = {}
    for args in (dict(batch_size="1"), dict(batch_size="2", compile=True)):
        lmm = MODEL_CLASSES["shirg_fixed"](pretrained=str(tiny_checkpoint), device="cpu", dtype="float32", **args)
        lmm.task_dict = {"t": {"test": docs}}
        answers[args["batch_size"]] = lmm.generate_until(_requests(docs))
    assert answers["2"] == answers["1"]
    records = [efficiency.lookup(f"c{i}") for i in range(3)]
    stats = records[-1].meta["compile_stats"]
    assert stats["frames_compiled"] > 0 and stats["graph_breaks"] == 0
    assert stats["recompiles"] <= len(stats["shapes"])
    assert records[0].meta["compile"] is True and any(r.meta["compile_ms"] > 0 for r in records)
