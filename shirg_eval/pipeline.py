"""One object from (checkpoint, variant) to answers with timings: what the harness, demo and bench call.

image -> :class:`VisualPath` (views, SigLIP, projector, selection) -> prompt embeddings -> masked-diffusion
decoding -> text. Timings are model time from preprocessed pixels to text; PIL preprocessing is reported apart.
"""

from __future__ import annotations

import hashlib
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .model.lavida import LavidaModel, VisualSequence
from .model.loading import DEFAULT_PRETRAINED
from .model.prompting import build_prompt_ids, decode_answer
from .model.sampler import GenerationConfig, GenerationOutput, generate, synced_perf_counter
from .model.tiny import load_tokenizer
from .selection.presets import VisualPath


@dataclass
class Answer:
    text: str
    ids: torch.Tensor
    visual: VisualSequence
    timings_ms: dict[str, float]  # preprocess, vision (encode+project+select), prefill, denoise, latency
    peak_mem_gb: float
    peak_mem_kind: str
    generation: GenerationOutput
    info: dict[str, Any] = field(default_factory=dict)


def cpu_peak_rss_gb() -> float:
    # ru_maxrss is in KiB on Linux: the process's high-water mark, not this sample's alone.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


class ShirgPipeline:
    def __init__(self, pretrained: str = DEFAULT_PRETRAINED, variant: str = "shirg_fixed", *, lora: str | None = None,
                 device: str | None = None, dtype: str | torch.dtype | None = None, seed: int = 0,
                 attn_implementation: str | None = None, model: LavidaModel | None = None, tokenizer=None,
                 allow_base_mismatch: bool = False, **variant_params: Any):
        if model is None:
            model = LavidaModel.from_pretrained(pretrained, device=device, dtype=dtype,
                                                attn_implementation=attn_implementation)
        self.model = model
        self.lora_info: dict[str, Any] | None = None
        if lora:
            from .training.adapters import load_adapter

            self.model, self.lora_info = load_adapter(self.model, lora, variant=variant,
                                                      allow_base_mismatch=allow_base_mismatch)
        path = getattr(self.model, "checkpoint_path", pretrained)
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(path)
        self.pretrained = str(pretrained)
        self.path = VisualPath(self.model, variant, **variant_params)
        self.seed = seed
        self.generator = torch.Generator(device=self.model.device).manual_seed(seed)

    @property
    def variant(self) -> str:
        return self.path.name

    def question_embeds(self, question: str) -> torch.Tensor | None:
        """The question's LM input embeddings, for text-relevance scoring (None for an empty question)."""
        ids = self.tokenizer(question, add_special_tokens=False)["input_ids"] if question else []
        if not ids:
            return None
        return self.model.embed_tokens(torch.tensor(ids, device=self.model.device))

    def reseed(self, sample_key: str) -> None:
        """Seed the per-sample RNG from (seed, sample key): answers do not depend on order or sharding."""
        digest = hashlib.sha256(f"{self.seed}:{sample_key}".encode()).digest()
        self.generator.manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))

    @torch.no_grad()
    def answer(self, image, question: str, config: GenerationConfig | None = None,
               sample_key: str | None = None, *, query: str | None = None) -> Answer:
        """Answer ``question`` (the whole prompt the LM reads) about ``image``.

        ``query`` is the text whose embeddings condition the selectors' relevance (default: ``question``); the
        harness passes the document's question alone so that task instructions do not steer selection.
        """
        config = config or GenerationConfig()
        model, device = self.model, self.model.device
        if sample_key is not None:
            self.reseed(sample_key)
        t0 = time.perf_counter()
        views = self.path.prepare(image)
        prompt_ids = build_prompt_ids(self.tokenizer, question)
        t_pre = time.perf_counter()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = synced_perf_counter(device)
        visual = self.path.encode(views, self.question_embeds(question if query is None else query), self.generator)
        prompt = model.embed_prompt(prompt_ids, visual.embeds)
        t_vis = synced_perf_counter(device)
        lm_prefill = self.path.lm_prefill(prompt_ids, visual)  # FastV: selection inside the LM prefill
        out = generate(model, prompt, config, generator=self.generator, prefill=lm_prefill)
        if lm_prefill is not None:
            visual = lm_prefill.apply(visual)  # what the LM kept, and the prefill cost FastV added
        text = decode_answer(self.tokenizer, out.ids, model.config.mask_token_id)
        end = synced_perf_counter(device)
        if device.type == "cuda":
            peak, kind = torch.cuda.max_memory_allocated(device) / 2**30, "cuda_max_allocated"
        else:
            peak, kind = cpu_peak_rss_gb(), "cpu_peak_rss"
        timings = {
            "preprocess_ms": (t_pre - t0) * 1e3,
            "vision_ms": (t_vis - start) * 1e3,
            "prefill_ms": out.prefill_s * 1e3,
            "denoise_ms": out.denoise_s * 1e3,
            "latency_ms": (end - start) * 1e3,
        }
        info = {"prompt_positions": int(prompt.shape[1]), "prefix_kv_mb": out.prefix_cache_bytes / 2**20}
        return Answer(text, out.ids, visual, timings, peak, kind, out, info)

    def describe(self) -> dict[str, Any]:
        """What actually runs: recorded beside every result row."""
        import transformers

        import shirg_eval

        checkpoint = getattr(self.model, "checkpoint_path", None)
        config_sha = None
        if checkpoint and (Path(checkpoint) / "config.json").is_file():
            config_sha = hashlib.sha256((Path(checkpoint) / "config.json").read_bytes()).hexdigest()
        return {
            **self.path.describe(),
            "pretrained": self.pretrained,
            "checkpoint_path": checkpoint,  # resolved: a hub id's snapshot folder names its revision
            "config_sha256": config_sha,
            "lora": self.lora_info,
            "seed": self.seed,
            "device": str(self.model.device),
            "dtype": str(self.model.dtype).replace("torch.", ""),
            "attn_implementation": getattr(self.model.language_model.config, "_attn_implementation", None),
            "versions": {"shirg_eval": shirg_eval.__version__, "torch": torch.__version__,
                         "transformers": transformers.__version__},
        }
