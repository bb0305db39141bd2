"""Batched decoding (generate_batch): padded prompts of different lengths give each prompt its batch-of-one answer.

On the golden fixtures (CPU float32) the batched answers are the goldens' ids exactly and the step logits stay
within today's tolerance; on the tiny model every batch member equals its own batch-1 decode, for every decoding
mode, storage dtype and temperature (per-sample generators), and a batch costs one forward per step.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TEST_DEVICE, TEST_DTYPE, fixture_sets, load_golden_model, tensor_error, tolerance_for
from safetensors.torch import load_file

from shirg_eval.model.sampler import GenerationConfig, generate, generate_batch

SETS = fixture_sets()
TOL = tolerance_for(TEST_DEVICE, TEST_DTYPE)


@pytest.fixture(scope="module", params=SETS, ids=[p.name for p in SETS])
def golden(request):
    root = request.param
    meta = json.loads((root / "meta.json").read_text())
    exp = load_file(str(root / "expected.safetensors"))
    model = load_golden_model(root)
    return meta, exp, model


def _config(call: dict, **overrides) -> GenerationConfig:
    return GenerationConfig(
        gen_length=call["max_new_tokens"], block_length=call["block_length"], steps=call.get("steps"),
        step_ratio=call.get("step_ratio"), schedule=call.get("schedule"), prefix_cache=call.get("prefix_lm", True),
        **overrides)


def _members(meta: dict, exp: dict, model, name: str) -> list[tuple[torch.Tensor, list[int] | None]]:
    """(prompt, golden ids or None) for a batch: the golden prompt, then prompts of other lengths."""
    prompt = exp["inputs_embeds"].to(model.device, model.dtype)
    gen = meta["generate"][name]["call"]["max_new_tokens"]
    members = [(prompt, exp[f"{name}_output_ids"][0, -gen:].tolist())]
    same_call = meta["generate"][name]["call"]
    for extra, info in (meta.get("extra_images") or {}).items():  # other images: their own goldens, same call
        if {k: v for k, v in info["generate_call"].items() if k != "verbose"} == \
                {k: v for k, v in same_call.items() if k != "verbose"}:
            members.append((exp[f"{extra}_inputs_embeds"].to(model.device, model.dtype), info["gen_output_ids"][0]))
    for cut in (37, 5):  # shorter prompts (no golden: checked against their own batch-1 decode)
        members.append((prompt[:, :-cut], None))
    return members


@pytest.mark.skipif(TEST_DEVICE != "cpu" or TEST_DTYPE != "float32", reason="exact ids: CPU float32")
@torch.no_grad()
@pytest.mark.parametrize("batch", [1, 2, 3])
def test_golden_ids_in_batches_of_different_lengths(golden, batch, record_property):
    meta, exp, model = golden
    for name, case in meta["generate"].items():
        call = case["call"]
        members = _members(meta, exp, model, name)[:batch]
        members = members[1:] + members[:1]  # the golden prompt last: its row is not the first
        step_logits: list[torch.Tensor] = []
        out = generate_batch(model, [p for p, _ in members], _config(call), mask_id=call["mask_id"],
                             on_step_logits=step_logits.append)
        assert out.n_steps == case["n_forward"] - int(call["prefix_lm"]), name  # one forward per step
        for row, (prompt, ids) in enumerate(members):
            if ids is None:
                ids = generate(model, prompt, _config(call), mask_id=call["mask_id"]).ids[0].tolist()
            assert out.ids[row].tolist() == ids, (name, batch, row)
        err = tensor_error(torch.stack([s[-1] for s in step_logits]), exp[f"{name}_step_logits"])
        record_property(f"step_logits_{name}_b{batch}", f"{err:.2e}")
        assert err <= TOL.logits, (name, batch, err)


def _tiny_prompts(model, lengths=(30, 55, 41)) -> list[torch.Tensor]:
    return [torch.randn(1, n, model.config.d_model, generator=torch.Generator().manual_seed(n)) for n in lengths]


@torch.no_grad()
@pytest.mark.parametrize("options", [
    dict(), dict(kv_dtype="int8"), dict(kv_dtype="bf16"), dict(prefix_cache=False),
    dict(decoding="threshold", threshold=0.3), dict(temperature=0.8), dict(remasking="random"),
    dict(decoding="threshold", threshold=0.3, temperature=0.8, gen_length=24),  # blocks finish at different steps
])
def test_each_answer_is_its_batch_of_one(tiny_model, options):
    prompts = _tiny_prompts(tiny_model)
    config = GenerationConfig(**{"gen_length": 16, "block_length": 8, **options})

    def gens():
        return [torch.Generator().manual_seed(100 + i) for i in range(len(prompts))]

    alone = [generate(tiny_model, p, config, generator=g) for p, g in zip(prompts, gens(), strict=True)]
    together = generate_batch(tiny_model, prompts, config, generators=gens())
    for i, single in enumerate(alone):
        assert together.ids[i].tolist() == single.ids[0].tolist(), (options, i)
    assert together.sample_n_forward == [s.n_forward for s in alone]
    # another composition: the first prompt beside a different neighbour answers the same
    other = generate_batch(tiny_model, [prompts[0], prompts[2]], config, generators=[gens()[0], gens()[2]])
    assert other.ids[0].tolist() == alone[0].ids[0].tolist()


@torch.no_grad()
def test_a_batch_costs_one_forward_per_step(tiny_model):
    calls: list[int] = []
    handle = tiny_model.language_model.register_forward_pre_hook(
        lambda _m, args, kwargs: calls.append(int(kwargs["inputs_embeds"].shape[0])), with_kwargs=True)
    try:
        out = generate_batch(tiny_model, _tiny_prompts(tiny_model), GenerationConfig(gen_length=16, block_length=8))
    finally:
        handle.remove()
    prefills, steps = calls[:3], calls[3:]
    assert prefills == [1, 1, 1]  # each prompt's prefill alone (exactly its batch-of-one prefix)
    assert steps == [3] * 16 and out.n_steps == 16 and out.n_forward == 19


def test_batch_arguments_are_checked(tiny_model):
    with pytest.raises(ValueError, match="at least one prompt"):
        generate_batch(tiny_model, [])
    with pytest.raises(ValueError, match="generators"):
        generate_batch(tiny_model, _tiny_prompts(tiny_model), generators=[None])
    with pytest.raises(ValueError, match="generate_batch"):
        generate(tiny_model, torch.zeros(2, 5, tiny_model.config.d_model))


def _requests(docs, max_new_tokens: int = 8):
    from lmms_eval.api.instance import Instance

    return [Instance("generate_until", (d["question"] + "\nAnswer briefly.", {"max_new_tokens": max_new_tokens,
                                                                               "until": []},
                                       lambda doc: [doc["image"]], i, "t", "test"), 0,
                     {"task": "t", "doc_id": i, "repeats": 1}) for i, d in enumerate(docs)]


@pytest.mark.slow
@torch.no_grad()
def test_every_variant_answers_the_same_in_batches(tiny_checkpoint, monkeypatch):
    """generate_until at --batch_size 3 (5 documents of different image shapes and questions: batches of 3 and 2,
    reordered longest first by lmms-eval's Collator) returns batch 1's answers, in request order, for every
    variant; the records say the batch size and forward passes, and latency is the batch's wall time."""
    from PIL import Image

    from shirg_eval.harness import efficiency
    from shirg_eval.harness.lmms_model import MODEL_CLASSES

    monkeypatch.delenv("SHIRG_JOURNAL_DIR", raising=False)
    monkeypatch.delenv("SHIRG_PICTURE_DIR", raising=False)
    sizes = [(96, 64), (64, 96), (120, 80), (80, 80), (200, 60)]
    questions = ["What is the highest bar?", "Which year?", "Total revenue in Europe in 2020, in millions?",
                 "Name?", "What does the second row say?"]
    docs = [{"image": Image.effect_noise(s, 40 + 10 * i).convert("RGB"), "question": q, "shirg_question": q,
             "shirg_uid": f"b{i}"} for i, (s, q) in enumerate(zip(sizes, questions, strict=True))]
    for variant, cls in MODEL_CLASSES.items():
        answers = {}
        for batch in ("1", "3"):
            lmm = cls(pretrained=str(tiny_checkpoint), device="cpu", dtype="float32", batch_size=batch,
)
            lmm.task_dict = {"t": {"test": docs}}
            answers[batch] = lmm.generate_until(_requests(docs))
            records = [efficiency.lookup(f"b{i}") for i in range(len(docs))]
            assert sorted(r.batch_size for r in records) == ([1] * 5 if batch == "1" else [2, 2, 3, 3, 3])
            assert all(r.n_forward == 9 for r in records), variant  # 1 prefill + 8 steps, every answer
            assert all(r.amortized_latency_ms == pytest.approx(r.latency_ms / r.batch_size) for r in records)
            assert lmm.run_meta["batch_size"] == int(batch)
        assert answers["3"] == answers["1"], variant
