"""One object from (checkpoint, variant) to answers with timings: what the harness, demo and bench call.

image -> :class:`VisualPath` (views, SigLIP, projector, selection) -> prompt embeddings -> masked-diffusion
decoding -> text. Timings are model time from preprocessed pixels to text; PIL preprocessing is reported apart.

:meth:`ShirgPipeline.answer_batch` answers several documents with one batched decode: the visual side and each
prefill run per document, the denoising steps once for the batch. In a batch, ``latency_ms`` is the batch's wall
time (what each of its answers waited) and ``amortized_latency_ms`` that time over the batch size (the throughput
figure); ``preprocess_ms``, ``vision_ms`` and ``prefill_ms`` stay the document's own.
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
from .model.prompting import build_prompt_ids, decode_answer, question_embeds
from .model.sampler import GenerationConfig, GenerationOutput, StageTimer, generate_batch, synced_perf_counter
from .model.tokenizer import load_tokenizer
from .visual.path import VisualPath


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
    # model stages (ms): selection (incl. the query embedding), vision, projector, embed, prefill (this document's),
    # denoise (the batch's): what shirg-bench reports
    stages_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class Question:
    """One document to answer: ``question`` is the whole prompt the LM reads, ``query`` what conditions selection
    (default: ``question``), ``sample_key`` seeds the document's own RNG (None: the pipeline's running generator)."""

    image: Any
    question: str
    sample_key: str | None = None
    query: str | None = None


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
            from .model.adapters import load_adapter

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
        return question_embeds(self.model, self.tokenizer, question)

    def reseed(self, sample_key: str) -> None:
        """Seed the per-sample RNG from (seed, sample key): answers do not depend on order or sharding."""
        digest = hashlib.sha256(f"{self.seed}:{sample_key}".encode()).digest()
        self.generator.manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))

    def generator_for(self, sample_key: str | None) -> torch.Generator:
        """The document's generator: seeded from (seed, key) -- so answers do not depend on order, sharding or
        batch -- or, without a key, the pipeline's running one."""
        if sample_key is None:
            return self.generator
        digest = hashlib.sha256(f"{self.seed}:{sample_key}".encode()).digest()
        return torch.Generator(device=self.model.device).manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))

    @torch.no_grad()
    def answer(self, image, question: str, config: GenerationConfig | None = None,
               sample_key: str | None = None, *, query: str | None = None) -> Answer:
        """Answer ``question`` (the whole prompt the LM reads) about ``image``.

        ``query`` is the text whose embeddings condition the selectors' relevance (default: ``question``); the
        harness passes the document's question alone so that task instructions do not steer selection.
        """
        return self.answer_batch([Question(image, question, sample_key, query)], config)[0]

    @torch.no_grad()
    def answer_batch(self, questions: list[Question], config: GenerationConfig | None = None) -> list[Answer]:
        """Answer every document with one batched decode (see the module docstring for what the timings mean)."""
        config = config or GenerationConfig()
        if len(questions) > 1 and any(q.sample_key is None for q in questions):
            # Without a key per document its random draws (sampling, random_k) would depend on its batch-mates.
            raise ValueError("answer_batch with several questions needs a sample_key on each (e.g. the document id), "
                             "so that each answer's random draws are its own")
        model, device = self.model, self.model.device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        prepared, pre_ms = [], []
        for q in questions:  # PIL preprocessing first: reported apart, never inside the batch's latency
            t0 = time.perf_counter()
            prepared.append((self.path.prepare(q.image), build_prompt_ids(self.tokenizer, q.question)))
            pre_ms.append((time.perf_counter() - t0) * 1e3)
        generators, visuals, prompts, prefills, vision_ms, timers = [], [], [], [], [], []
        start = synced_perf_counter(device)
        for q, (views, prompt_ids) in zip(questions, prepared, strict=True):
            if q.sample_key is not None and len(questions) == 1:
                self.reseed(q.sample_key)  # batch of one: the pipeline's own generator, as before batching
            generator = self.generator if len(questions) == 1 else self.generator_for(q.sample_key)
            t_start = synced_perf_counter(device)
            timer = StageTimer(device)
            query = q.question if q.query is None else q.query
            text_embeds = self.question_embeds(query)
            timer.mark("selection")  # the query embedding the selector scores against
            visual = self.path.encode(views, text_embeds, generator, timer)
            prompts.append(model.embed_prompt(prompt_ids, visual.embeds))
            timer.mark("embed")
            vision_ms.append((synced_perf_counter(device) - t_start) * 1e3)
            timers.append(timer)
            prefills.append(self.path.lm_prefill(prompt_ids, visual))  # FastV: selection inside the LM prefill
            generators.append(generator)
            visuals.append(visual)
        out = generate_batch(model, prompts, config, generators=generators, prefills=prefills)
        texts = [decode_answer(self.tokenizer, out.ids[i:i + 1], model.config.mask_token_id)
                 for i in range(len(questions))]
        end = synced_perf_counter(device)
        if device.type == "cuda":
            peak, kind = torch.cuda.max_memory_allocated(device) / 2**30, "cuda_max_allocated"
        else:
            peak, kind = cpu_peak_rss_gb(), "cpu_peak_rss"
        latency_ms = (end - start - out.compile_s) * 1e3  # compile=true: compiling a new shape is not latency
        answers = []
        for i, (visual, prefill) in enumerate(zip(visuals, prefills, strict=True)):
            if prefill is not None:
                visual = prefill.apply(visual)  # what the LM kept, and the prefill cost FastV added
            timings = {
                "preprocess_ms": pre_ms[i],
                "vision_ms": vision_ms[i],
                "prefill_ms": out.sample_prefill_s[i] * 1e3,
                "denoise_ms": out.denoise_s * 1e3,
                "latency_ms": latency_ms,
                "amortized_latency_ms": latency_ms / len(questions),
                "compile_ms": out.compile_s * 1e3,
            }
            info = {"prompt_positions": int(prompts[i].shape[1]),
                    "prefix_kv_mb": (out.sample_cache_bytes[i] if out.sample_cache_bytes else 0) / 2**20,
                    "n_forward": out.sample_n_forward[i], "batch_size": len(questions)}
            stages = {name: 0.0 for name in ("vision", "projector", "selection", "embed")} | timers[i].ms()
            stages |= {"prefill": timings["prefill_ms"], "denoise": timings["denoise_ms"]}
            answers.append(Answer(texts[i], out.ids[i:i + 1], visual, timings, peak, kind, out, info, stages))
        return answers

    def selected_visual(self, image, question: str = "") -> VisualSequence:
        """What the LM receives for ``image``: the visual path's output, or for an in-LM selector (FastV, which keeps
        every token on the visual side) what its prefill kept, from one answer of a single token."""
        if self.path.in_lm:
            return self.answer(image, question, GenerationConfig(gen_length=1)).visual
        with torch.no_grad():
            return self.path(image, self.question_embeds(question), self.generator)

    def selection_picture(self, image, question: str = ""):
        """The view the selector saw, kept patches highlighted, regions outlined, token count in the title."""
        from .visual.viz import picture_of

        return picture_of(self.selected_visual(image, question), self.path, self.model.config.vision_grid)

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
