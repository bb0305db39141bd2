"""The training objective (LaViDa's and LLaDA's SFT form), the answers' padding, the config keys and the base's record."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from shirg_eval.training.answers import (
    AnswerPadding,
    answer_stop_id,
    pad_answer_batch,
    pad_token_id,
    padded_lengths,
)
from shirg_eval.training.config import ConfigError, load_config
from shirg_eval.training.loss import Sequence, masked_diffusion_loss
from shirg_eval.training.objective import (
    Objective,
    TrainingRecord,
    base_record_differences,
    diffusion_loss,
    draw_masks,
    masked_loss,
    with_complements,
)

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs" / "train"


# ------------------------------------------------------------------------------------------ the loss, by hand
def fixed_batch():
    """Two answers (3 and 5 tokens) over a vocabulary of 4, with fixed logits and masks."""
    torch.manual_seed(0)
    logits = [torch.randn(3, 4), torch.randn(5, 4)]
    targets = [torch.tensor([0, 3, 1]), torch.tensor([2, 2, 0, 1, 3])]
    masks = [torch.tensor([True, False, True]), torch.tensor([False, True, True, True, False])]
    t = torch.tensor([0.5, 0.8])
    return logits, targets, masks, t


def nll(row: torch.Tensor, target: int) -> float:
    """-log softmax(row)[target], written out."""
    values = row.tolist()
    return -(values[target] - math.log(sum(math.exp(v) for v in values)))


def test_lavida_loss_is_the_plain_mean_over_masked_tokens():
    logits, targets, masks, t = fixed_batch()
    terms = [nll(lg[j], int(y[j])) for lg, y, m in zip(logits, targets, masks, strict=True) for j in range(len(m)) if m[j]]
    expected = sum(terms) / len(terms)  # 5 masked tokens, no 1/t, no per-answer normalisation
    assert len(terms) == 5
    assert float(masked_loss(logits, targets, masks, t, "lavida")) == pytest.approx(expected, rel=1e-6)


def test_llada_sft_loss_weights_by_one_over_t_and_answer_length():
    logits, targets, masks, t = fixed_batch()
    per_answer = []
    for i, (lg, y, m) in enumerate(zip(logits, targets, masks, strict=True)):
        total = sum(nll(lg[j], int(y[j])) for j in range(len(m)) if m[j])
        per_answer.append(total / float(t[i]) / len(m))
    expected = sum(per_answer) / 2
    assert float(masked_loss(logits, targets, masks, t, "llada_sft")) == pytest.approx(expected, rel=1e-6)
    assert expected != pytest.approx(float(masked_loss(logits, targets, masks, t, "lavida")), rel=1e-3)


# ------------------------------------------------------------------------------------------ masks
def test_random_masks_mask_at_least_one_token_and_complements_partition():
    gen = torch.Generator().manual_seed(3)
    lavida = Objective("lavida", "random", eps=1e-3)
    for _ in range(200):
        lengths = [1, 2, 7]
        masks, t = draw_masks(lengths, lavida, gen)
        assert all(bool(m.any()) for m in masks)
        assert ((t >= 1e-3) & (t <= 1)).all()
        seqs = [Sequence(torch.zeros(2, 1), torch.zeros(n, dtype=torch.long)) for n in lengths]
        rows, both, _ = with_complements(seqs, masks, t)
        for i, m in enumerate(masks):
            partners = [k for k in range(len(lengths), len(rows)) if rows[k] is seqs[i]]
            if m.all():  # the complement of a full mask is empty: dropped
                assert partners == []
            else:
                (k,) = partners
                assert torch.equal(both[k], ~m) and not bool((both[k] & m).any())
    # LLaDA's SFT form may mask nothing (a 1-token answer with a small t)
    sft = Objective("llada_sft", "random")
    empties = sum(not bool(draw_masks([1], sft, gen)[0][0].any()) for _ in range(200))
    assert empties > 0


def test_full_masks_have_no_complement():
    masks, t = draw_masks([3, 4], Objective("lavida", "full"))
    assert all(bool(m.all()) for m in masks) and torch.equal(t, torch.ones(2))
    seqs = [Sequence(torch.zeros(2, 1), torch.zeros(n, dtype=torch.long)) for n in (3, 4)]
    assert len(with_complements(seqs, masks, t)[0]) == 2


def test_objective_names_are_checked():
    with pytest.raises(ValueError, match="objective must be one of"):
        Objective("llada")
    with pytest.raises(ValueError, match="mask must be one of"):
        Objective("lavida", "half")


# ------------------------------------------------------------------------------------------ on a model
def tiny_sequences(tiny_model, tiny_tokenizer) -> list[Sequence]:
    from PIL import Image

    from shirg_eval.training.data import Sample
    from shirg_eval.training.loss import encode_sample
    from shirg_eval.visual.path import VisualPath

    path, stop = VisualPath(tiny_model, "lavida_384"), answer_stop_id(tiny_tokenizer)
    samples = [Sample("a", "a.png", "What is it?", "a red square"), Sample("b", "b.png", "And this?", "blue")]
    return [encode_sample(tiny_model, path, tiny_tokenizer, s, Image.new("RGB", (64, 48), (9 * i, 9, 9)), None,
                          32, stop) for i, s in enumerate(samples)]


def test_llada_sft_random_is_the_former_loss(tiny_model, tiny_tokenizer):
    seqs = tiny_sequences(tiny_model, tiny_tokenizer)
    mask_id = tiny_model.config.mask_token_id
    with torch.no_grad():
        ours, _ = diffusion_loss(tiny_model, seqs, mask_id, Objective("llada_sft", "random"),
                                 torch.Generator().manual_seed(5))
        former, _ = masked_diffusion_loss(tiny_model, seqs, mask_id, 1e-3, torch.Generator().manual_seed(5))
    assert float(ours) == float(former)


def test_lavida_loss_on_the_model_matches_the_formula(tiny_model, tiny_tokenizer):
    """The model's loss with complementary rows equals the mean CE of the masked tokens of both halves, each half's
    logits computed separately here."""
    seqs = tiny_sequences(tiny_model, tiny_tokenizer)
    mask_id = tiny_model.config.mask_token_id
    objective = Objective("lavida", "random")
    with torch.no_grad():
        loss, info = diffusion_loss(tiny_model, seqs, mask_id, objective, torch.Generator().manual_seed(7))
        masks, _ = draw_masks([s.answer_ids.shape[0] for s in seqs], objective, torch.Generator().manual_seed(7))
        terms = []
        for seq, mask in [*zip(seqs, masks, strict=True), *zip(seqs, [~m for m in masks], strict=True)]:
            if not mask.any():
                continue
            noisy = torch.where(mask, torch.full_like(seq.answer_ids, mask_id), seq.answer_ids)
            row = torch.cat([seq.prompt_embeds, tiny_model.embed_tokens(noisy)])[None]
            logits = tiny_model.logits(row)[0, seq.prompt_embeds.shape[0]:]
            ce = torch.nn.functional.cross_entropy(logits.float(), seq.answer_ids, reduction="none")
            terms += ce[mask].tolist()
    assert info["rows"] == 4 and info["masked_tokens"] == len(terms)
    assert float(loss) == pytest.approx(sum(terms) / len(terms), rel=1e-4)


# ------------------------------------------------------------------------------------------ padding
def test_eos_is_looked_up_in_the_tokenizer(tiny_tokenizer):
    eos = pad_token_id(tiny_tokenizer, "eos")
    assert eos == tiny_tokenizer.eos_token_id == tiny_tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert pad_token_id(tiny_tokenizer, "eot") == tiny_tokenizer.convert_tokens_to_ids("<|eot_id|>") != eos
    with pytest.raises(ValueError, match="pad_token must be one of"):
        pad_token_id(tiny_tokenizer, "pad")


def test_reference_tokenizer_ids_are_not_the_8b_ones():
    """The EOS id comes from the tokenizer: the reference model's is 1, the 8B's 126081."""
    from shirg_eval.model.tokenizer import load_tokenizer

    tok = load_tokenizer(REPO / "models" / "reference")
    assert pad_token_id(tok, "eos") == 1 and pad_token_id(tok, "eot") == 5


def test_padding_to_the_batch_as_lavida():
    pad = AnswerPadding(pad_id=9, to_batch=True, extra_pad=0)
    # rows: prompt 10 + answer 3, prompt 12 + answer 4 -> all rows 16 text tokens long
    assert padded_lengths([10, 12], [3, 4], pad) == [6, 4]
    assert padded_lengths([10, 12], [3, 4], pad, extra=5) == [11, 9]
    fixed = AnswerPadding(pad_id=9, to_batch=False, extra_pad=0, length=16)
    assert padded_lengths([10, 12], [3, 20], fixed) == [16, 20]  # never cut
    assert padded_lengths([10, 12], [3, 4], fixed, fixed=[16, 32]) == [16, 32]  # a record's canvas wins
    answers = [torch.tensor([4, 5, 7]), torch.tensor([6, 7])]
    out = pad_answer_batch(answers, [10, 10], pad, [None, None], room=[100, 100])
    assert [a.tolist() for a in out] == [[4, 5, 7], [6, 7, 9]]
    cut = pad_answer_batch(answers, [10, 10], AnswerPadding(9, extra_pad=0, length=8), [None, None], room=[5, 2])
    assert [a.tolist() for a in cut] == [[4, 5, 7, 9, 9], [6, 7]]


def test_extra_pad_draw_is_lavidas():
    pad = AnswerPadding(pad_id=0, extra_pad=4)
    gen = torch.Generator().manual_seed(0)
    draws = [pad.draw_extra(gen) for _ in range(2000)]
    assert set(draws) == {0, 1, 2, 3}  # max(0, k), k uniform in [-4, 4)
    assert draws.count(0) / len(draws) == pytest.approx(5 / 8, abs=0.04)
    assert AnswerPadding(pad_id=0, extra_pad=0).draw_extra(gen) == 0


def test_reference_answers_are_eot_then_eos(tiny_tokenizer):
    from shirg_eval.reference.qa import answer_ids

    ids = answer_ids(tiny_tokenizer, "7", 6).tolist()
    digit = tiny_tokenizer("7", add_special_tokens=False)["input_ids"]
    assert ids == digit + [answer_stop_id(tiny_tokenizer)] + [tiny_tokenizer.eos_token_id] * (5 - len(digit))


# ------------------------------------------------------------------------------------------ configuration
def test_lcs_configs_use_lavidas_objective():
    for name in ("lora_r32.yaml", "lora_r64.yaml"):
        cfg = load_config(CONFIGS / name)
        assert (cfg.objective, cfg.mask, cfg.mask_eps) == ("lavida", "random", 1e-3), name
        assert (cfg.data.pad_token, cfg.data.pad_to_batch, cfg.data.extra_pad, cfg.data.pad_answers_to) == (
            "eos", True, 128, 0), name


def test_reference_lora_config_matches_the_base_record():
    cfg = load_config(CONFIGS / "reference_lora.yaml")
    assert (cfg.mask, cfg.data.pad_token) == ("full", "eos")
    record = TrainingRecord.load(REPO / cfg.pretrained)
    assert record is not None and (record.mask, record.pad_token) == ("full", "eos")
    assert base_record_differences(record, cfg.objective, cfg.mask, cfg.data.pad_token, cfg.data.pad_to_batch) == []
    lavida = load_config(CONFIGS / "lora_r32.yaml")
    differs = base_record_differences(record, lavida.objective, lavida.mask, "eot", lavida.data.pad_to_batch)
    assert any(d.startswith("mask: config 'random', base trained with 'full'") for d in differs)
    assert any(d.startswith("data.pad_token: config 'eot'") for d in differs)
    assert base_record_differences(None, "lavida", "random", "eos", True) == []


@pytest.mark.parametrize(("override", "message"), [
    ({"objective": "llada"}, "objective must be one of lavida, llada_sft"),
    ({"mask": "none"}, "mask must be one of random, full"),
    ({"data.pad_token": "<|endoftext|>"}, "data.pad_token must be one of eos, eot"),
    ({"data.extra_pad": -1}, "data.extra_pad must be >= 0"),
    ({"data.pad_to_batch": "yes"}, "data.pad_to_batch must be true/false"),
    ({"probe.every": 5}, "probe.every is set but probe.json is not"),
    ({"probe.early_stop": 2}, "probe.early_stop needs probe.every"),
    ({"probe.docs": 0}, "probe.docs must be >= 1"),
    ({"probe.evry": 5}, "unknown config key 'probe.evry'"),
])
def test_config_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(CONFIGS / "tiny_cpu.yaml", override)


def test_probe_block_from_yaml_and_flags(tmp_path):
    from shirg_eval.training.config import parse_overrides

    path = tmp_path / "c.yaml"
    path.write_text((CONFIGS / "tiny_cpu.yaml").read_text() + "probe:\n  every: 10\n  json: v.json\n")
    cfg = load_config(path, parse_overrides(["--probe.docs", "8", "--probe.early_stop=3"]))
    assert (cfg.probe.every, cfg.probe.json, cfg.probe.docs, cfg.probe.early_stop) == (10, "v.json", 8, 3)
    assert json.loads(json.dumps(cfg.to_dict()))["probe"]["every"] == 10
