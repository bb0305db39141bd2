"""A decoding-aware validation probe: what the sampler's first step would do on held-out documents.

Every ``probe.every`` optimizer steps, for each of ``probe.docs`` held-out conversations (``probe.json``, checked
disjoint from the training data), the answer canvas is fully masked and forwarded once through the Prefix-DLM cache,
as the sampler's first step does, and the full softmax at answer slot 0 gives

* ``p_answer``: the probability of the right answer's first token (the digit, for the reading sets; a caption's
  first token for LCS-558K), and
* ``p_stop``: the probability of the stop tokens (``<|eot_id|>`` and EOS) there: an adapter that teaches the answer
  slot to stop shows here long before decoded accuracy drops.

The means go to ``metrics.jsonl`` and the progress bar; ``probe.early_stop`` stops training when ``p_answer`` has
not improved for that many probes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..model.kv_cache import fill_prefix
from ..model.prompting import stop_ids
from .config import ConfigError, DataConfig, ProbeConfig
from .data import ConversationDataset, Sample, load_training_data
from .loss import encode_sample


@torch.no_grad()
def first_slot_logits(model, prompt_embeds: torch.Tensor, gen_length: int) -> torch.Tensor:
    """The logits at answer slot 0 of a fully masked ``gen_length`` canvas after ``prompt_embeds`` ``[1, Lp, D]``,
    through the Prefix-DLM cache (the prompt does not attend to the answer): the sampler's first step."""
    cache, _ = fill_prefix(model, prompt_embeds)
    canvas = torch.full((1, gen_length), model.config.mask_token_id, dtype=torch.long, device=prompt_embeds.device)
    length = prompt_embeds.shape[1]
    positions = torch.arange(length, length + gen_length, device=prompt_embeds.device)[None]
    logits = model.logits(model.embed_tokens(canvas).to(prompt_embeds.dtype), cache=cache, position_ids=positions)
    return logits[0, 0].float()


@dataclass(frozen=True)
class ProbeResult:
    step: int
    p_answer: float  # mean over documents, full softmax at slot 0
    p_stop: float
    docs: int

    def as_record(self) -> dict[str, float]:
        return {"probe_p_answer": self.p_answer, "probe_p_stop": self.p_stop, "probe_docs": self.docs}


def load_probe_samples(probe: ProbeConfig, train: ConversationDataset) -> ConversationDataset:
    """The probe's conversations (the first ``probe.docs``); a ConfigError if any shares an id or an image file
    with the training data (a probe on training documents measures memory, not reading)."""
    held_out = load_training_data(DataConfig(json=probe.json, image_folder=probe.image_folder))
    held_out.samples = held_out.samples[: probe.docs]
    ids = {s.uid for s in train.samples}
    images = {Path(s.image_path).resolve() for s in train.samples}
    shared = [s.uid for s in held_out.samples if s.uid in ids or Path(s.image_path).resolve() in images]
    if shared:
        raise ConfigError(f"probe.json shares {len(shared)} of its {len(held_out.samples)} documents with data.json "
                          f"(ids or image files, e.g. {shared[:3]}): the probe must be held out")
    return held_out


class Probe:
    """Runs the probe when due and keeps the early-stopping count."""

    def __init__(self, cfg: ProbeConfig, documents: ConversationDataset, tokenizer, max_answer_tokens: int,
                 stop_id: int):
        self.cfg, self.tokenizer, self.max_answer_tokens, self.stop_id = cfg, tokenizer, max_answer_tokens, stop_id
        self.documents = [documents[i] for i in range(len(documents))]  # decoded once: a few dozen images
        unreadable = [s.uid for s, image in self.documents if image is None]
        if unreadable:
            raise ConfigError(f"probe.json: images that do not decode: {unreadable[:3]}")
        self.stops = stop_ids(tokenizer)
        self.best, self.stale = float("-inf"), 0

    def due(self, step: int) -> bool:
        return self.cfg.every > 0 and step % self.cfg.every == 0

    @torch.no_grad()
    def measure(self, peft_model: torch.nn.Module, path: Any, step: int) -> ProbeResult:
        """The probe on the model as it is now (LoRA dropout off while it runs)."""
        model = peft_model.get_base_model()
        was_training = peft_model.training
        peft_model.eval()
        try:
            p_answer, p_stop = [], []
            for i, (sample, image) in enumerate(self.documents):
                probs = self.slot_probabilities(model, path, sample, image, torch.Generator().manual_seed(i))
                p_answer.append(float(probs[0]))
                p_stop.append(float(probs[1]))
        finally:
            peft_model.train(was_training)
        n = len(self.documents)
        return ProbeResult(step, sum(p_answer) / n, sum(p_stop) / n, n)

    def slot_probabilities(self, model, path: Any, sample: Sample, image: Any,
                           generator: torch.Generator) -> tuple[float, float]:
        """(p(the answer's first token), p(a stop token)) at slot 0 of the sample's canvas."""
        seq = encode_sample(model, path, self.tokenizer, sample, image, generator, self.max_answer_tokens,
                            self.stop_id)
        gen_length = sample.gen_length or self.cfg.gen_length
        probs = first_slot_logits(model, seq.prompt_embeds[None], gen_length).softmax(-1)
        return float(probs[int(seq.answer_ids[0])]), float(probs[self.stops].sum())

    def should_stop(self, result: ProbeResult) -> bool:
        """Early stopping: True once ``p_answer`` has not beaten its best for ``early_stop`` probes in a row."""
        if result.p_answer > self.best:
            self.best, self.stale = result.p_answer, 0
        else:
            self.stale += 1
        return 0 < self.cfg.early_stop <= self.stale
