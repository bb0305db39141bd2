"""The lmms-eval model: one thin class around :class:`ShirgPipeline`; each variant name is a subclass.

Registered through the ``lmms_eval.models`` entry point (see ``registration.py``), so
``lmms_eval --model shirg_fixed --tasks chartqa_200`` works without forking lmms-eval.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from lmms_eval.utils import Collator
from tqdm import tqdm

from ..model.compiled import COMPILE_STATS
from ..model.sampler import GenerationConfig
from ..pipeline import Answer, Question, ShirgPipeline
from ..query import selection_query
from . import efficiency
from .identity import run_meta
from .journal import AnswerJournal
from .model_args import parse_model_args
from .side_efficiency import SIDE_DIR_ENV, SideEfficiencyLog


@dataclass
class _Pending:
    """A request that still needs the model: where its answer goes and what identifies it."""

    index: int
    context: str
    gen_kwargs: dict[str, Any]
    doc: Any
    doc_to_visual: Any
    doc_id: Any
    task: str
    split: str
    uid: Any
    query: str
    query_source: str
    journal_key: str | None
    started: float


class ShirgLavidaLMM(lmms):
    """LaViDa with a visual-token variant; ``variant`` is set by the subclasses below."""

    is_simple = True
    variant = "lavida"

    def __init__(self, **raw_args: Any) -> None:
        super().__init__()
        self.args = parse_model_args(self.variant, raw_args)
        self._setup_distributed()
        journal_dir = self.args.journal or os.environ.get("SHIRG_JOURNAL_DIR")
        # One writer per output folder and rank, refused before the model loads (minutes, and GPU memory).
        self._writer_lock = AnswerJournal.writer_lock(journal_dir, self.rank) if journal_dir else None
        try:
            self.pipeline = ShirgPipeline(
                self.args.pretrained, self.variant, lora=self.args.lora,
                allow_base_mismatch=self.args.allow_base_mismatch, device=self._device_name(),
                dtype=self.args.dtype, seed=self.args.seed, attn_implementation=self.args.attn_implementation,
                **self.args.variant_params(),
            )
        except (ValueError, OSError) as err:
            raise ValueError(f"--model {self.variant}: {err}") from err
        # What ran and what it computed (its identity keys the leaderboard row), beside every result row.
        self.meta = run_meta(self.variant, self.args, self.pipeline.describe())
        self.run_meta = self.meta.to_json()
        self._warm_tasks: set[str] = set()  # tasks whose first (warm-up) sample has run in this process
        self.picture_dir = os.environ.get("SHIRG_PICTURE_DIR")
        self._pictures_left = self.args.pictures if self.rank == 0 else 0
        self.journal = (AnswerJournal(journal_dir, self._journal_description(), rank=self.rank)
                        if journal_dir else None)
        # lmms-eval's own tasks (no shirg_uid): efficiency goes to a side file keyed by (task, doc_id)
        side_dir = os.environ.get(SIDE_DIR_ENV)
        self.side_log = SideEfficiencyLog(side_dir, self.rank) if side_dir else None

    def _journal_description(self) -> dict[str, Any]:
        meta = {k: v for k, v in self.run_meta.items() if k not in ("device", "versions")}
        meta["config_sha256"] = self.run_meta.get("config_sha256")
        meta["rank"] = self.rank  # each data-parallel rank journals its own shard
        return meta

    # --------------------------------------------------------------- distributed (accelerate launch)
    def _setup_distributed(self) -> None:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1:
            from accelerate import Accelerator

            self.accelerator = Accelerator()
            self._rank = self.accelerator.process_index
            self._world_size = self.accelerator.num_processes
        else:
            self._rank, self._world_size = 0, 1

    def _device_name(self) -> str | None:
        if self.args.device:
            return self.args.device
        if self._world_size > 1 and torch.cuda.is_available():
            return f"cuda:{self.accelerator.local_process_index}"
        return None

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def world_size(self) -> int:
        return self._world_size

    # --------------------------------------------------------------- requests
    def _generation_config(self, gen_kwargs: dict[str, Any]) -> GenerationConfig:
        gen_length = self.args.gen_length or int(gen_kwargs.get("max_new_tokens", 32))
        block = self.args.block_length or min(128, gen_length)
        temperature = float(gen_kwargs.get("temperature", 0.0) or 0.0)
        return GenerationConfig(gen_length=gen_length, block_length=block, steps=self.args.steps,
                                temperature=temperature, prefix_cache=self.args.prefix_cache,
                                kv_dtype=self.args.kv_dtype, decoding=self.args.decoding,
                                threshold=self.args.threshold, compile=self.args.compile,
                                compile_bucket=self.args.compile_bucket)

    def _image_of(self, doc_to_visual, doc) -> Any:
        visuals = [v for v in (doc_to_visual(doc) or []) if v is not None]
        if len(visuals) > 1:
            raise ValueError(f"{self.variant}: a request carries {len(visuals)} images; LaViDa takes one per prompt")
        return visuals[0] if visuals else None

    def generate_until(self, requests: list[Instance]) -> list[str]:
        """Answers in request order. Requests are grouped by ``gen_kwargs`` (one decoding config per batch) with
        lmms-eval's :class:`Collator` and decoded ``batch_size`` at a time (longest prompt first when batching)."""
        outputs: list[str] = [""] * len(requests)
        failures: list[str] = []
        pending: list[_Pending] = []
        for index, request in enumerate(requests):
            started = time.perf_counter()
            context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
            doc = self.task_dict[task][split][doc_id]
            uid = doc.get("shirg_uid") if isinstance(doc, dict) else None
            query, query_source = selection_query(doc, context, task)
            key = None
            if self.journal is not None:
                key = AnswerJournal.sample_key(task, split, str(uid or doc_id),
                                               {**dict(gen_kwargs), "ctx": context, "query": query})
                done = self.journal.get(key)
                if done is not None:
                    text, record = done
                    if uid is not None and record is not None:
                        efficiency.record(uid, record)
                    elif record is not None and self.side_log is not None:
                        self.side_log.add(task, split, doc_id, record)
                    outputs[index] = text
                    continue
            pending.append(_Pending(index, context, dict(gen_kwargs), doc, doc_to_visual, doc_id, task, split, uid,
                                    query, query_source, key, started))
        # Longest prompt first packs batches with little padding; at batch 1 the request order is kept.
        longest_first = self.args.batch_size > 1
        collator = Collator(pending, sort_fn=lambda p: -len(p.context) if longest_first else 0,
                            group_fn=lambda p: p.gen_kwargs, grouping=True)
        progress = tqdm(total=len(pending), disable=self.rank != 0, desc=f"{self.variant}")
        for batch in collator.get_batched(n=self.args.batch_size):
            self._answer_batch(list(batch), outputs, failures)
            progress.update(len(batch))
        progress.close()
        if failures and not self.args.allow_failures:
            shown = "\n  ".join(failures[:5]) + (f"\n  ... (+{len(failures) - 5} more)" if len(failures) > 5 else "")
            raise RuntimeError(
                f"--model {self.variant}: {len(failures)} of {len(requests)} samples failed (finished ones are "
                f"journaled; rerun resumes). Pass allow_failures=true in --model_args to score the rest and count "
                f"these as failed:\n  {shown}"
            )
        return outputs

    def _answer_batch(self, batch: list[_Pending], outputs: list[str], failures: list[str]) -> None:
        """Decode one batch; if it fails, each of its documents alone, so a failure names its document."""
        try:
            config = self._generation_config(batch[0].gen_kwargs)
            questions = [Question(self._image_of(p.doc_to_visual, p.doc), p.context, f"{p.task}/{p.uid or p.doc_id}",
                                  p.query) for p in batch]
            answers = self.pipeline.answer_batch(questions, config)
        except Exception as err:
            if len(batch) > 1:
                for p in batch:
                    self._answer_batch([p], outputs, failures)
                return
            # Never score a broken sample as a wrong answer: record it, finish the others (they are
            # journaled), then fail the run unless allow_failures=true.
            p = batch[0]
            message = f"{p.task}/{p.split} doc {p.doc_id} (shirg_uid={p.uid}): {type(err).__name__}: {err}"
            failures.append(message)
            failure = efficiency.EfficiencyRecord.failure(message, dict(self.run_meta))
            if p.uid is not None:
                efficiency.record(p.uid, failure)
            elif self.side_log is not None:  # lmms-eval's own tasks: the side file keyed by (task, doc_id)
                self.side_log.add(p.task, p.split, p.doc_id, failure)
            outputs[p.index] = ""
            return
        warmup = any(p.task not in self._warm_tasks for p in batch)  # the task's first batch pays one-off costs
        for p, answer in zip(batch, answers, strict=True):
            outputs[p.index] = self._finish(p, answer, warmup)

    def _finish(self, p: _Pending, answer: Answer, warmup: bool) -> str:
        text = answer.text
        for stop in p.gen_kwargs.get("until", []) or []:
            if stop and stop in text:
                text = text.split(stop)[0]
        record = self._record(p.doc, answer, p.task, warmup)
        record.meta["selection_query"] = p.query_source
        self._save_picture(answer, f"{p.task}_{p.uid or p.doc_id}")
        # Wall time of the whole request inside the harness (doc fetch, decode, model, bookkeeping; in a batch,
        # until its batch finished): against preprocess + latency it gives the harness overhead.
        record.meta["request_ms"] = (time.perf_counter() - p.started) * 1e3
        record.meta["preprocess_ms"] = answer.timings_ms["preprocess_ms"]
        if self.journal is not None:
            self.journal.add(p.journal_key, text.strip(), record)
        if p.uid is None and self.side_log is not None:
            self.side_log.add(p.task, p.split, p.doc_id, record)
        return text.strip()

    def _record(self, doc: dict, answer, task: str, warmup: bool | None = None) -> efficiency.EfficiencyRecord:
        uid = doc.get("shirg_uid") if isinstance(doc, dict) else None
        # The first batch of each task is the warm-up: its timing includes one-off costs (allocator growth,
        # kernel selection for that task's prompt/answer lengths). Token counts stay exact either way.
        warmup = task not in self._warm_tasks if warmup is None else warmup
        self._warm_tasks.add(task)
        t = answer.timings_ms
        meta = {**self.run_meta, "image_size": list(answer.visual.views.image_size) if answer.visual.views else None,
                "prefix_kv_mb": answer.info.get("prefix_kv_mb"), "selection": answer.visual.info}
        if self.run_meta.get("compile"):
            # The process's counts so far (the last sample holds the run's totals); compile time is not latency.
            meta["compile_stats"] = COMPILE_STATS.as_dict()
            meta["compile_ms"] = t.get("compile_ms", 0.0)
        record = efficiency.EfficiencyRecord(
            latency_ms=t["latency_ms"], prefill_ms=t["prefill_ms"], denoise_ms=t["denoise_ms"],
            peak_mem_gb=answer.peak_mem_gb, peak_mem_kind=answer.peak_mem_kind,
            visual_tokens=answer.visual.n_tokens, n_forward=answer.info.get("n_forward"),
            batch_size=answer.info.get("batch_size", 1), amortized_latency_ms=t.get("amortized_latency_ms"),
            warmup=warmup, meta=meta,
        )
        if uid is not None:
            efficiency.record(uid, record)
        return record

    def _save_picture(self, answer, name: str) -> None:
        """The first few samples' selection overlays, for the leaderboard's gallery."""
        if not self.picture_dir or self._pictures_left <= 0 or answer.visual.views is None:
            return
        from ..visual.viz import picture_of

        self._pictures_left -= 1
        out = Path(self.picture_dir) / f"selection_{self.variant}_{name}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        picture_of(answer.visual, self.pipeline.path, self.pipeline.model.config.vision_grid).save(out)

    def loglikelihood(self, requests):
        raise NotImplementedError(f"{self.variant}: loglikelihood is not defined for masked-diffusion decoding here")

    def generate_until_multi_round(self, requests):
        raise NotImplementedError(f"{self.variant}: multi-round generation is not supported")


# One class per variant (visual/variants.py's VARIANTS; tests/test_harness.py checks that they agree), declared so
# that a search for a variant's name finds its lmms-eval model.


class LavidaLMM(ShirgLavidaLMM):
    variant = "lavida"


class Lavida384LMM(ShirgLavidaLMM):
    variant = "lavida_384"


class Lavida672LMM(ShirgLavidaLMM):
    variant = "lavida_672"


class ShirgFixedLMM(ShirgLavidaLMM):
    variant = "shirg_fixed"


class ShirgOriginalLMM(ShirgLavidaLMM):
    variant = "shirg_original"


class PoolKLMM(ShirgLavidaLMM):
    variant = "pool_k"


class RandomKLMM(ShirgLavidaLMM):
    variant = "random_k"


class VisionZipLMM(ShirgLavidaLMM):
    variant = "visionzip"


class DivPruneLMM(ShirgLavidaLMM):
    variant = "divprune"


class DartLMM(ShirgLavidaLMM):
    variant = "dart"


class HiredLMM(ShirgLavidaLMM):
    variant = "hired"


class PruMergeLMM(ShirgLavidaLMM):
    variant = "prumerge"


class PruMergePlusLMM(ShirgLavidaLMM):
    variant = "prumerge_plus"


class ToMeLMM(ShirgLavidaLMM):
    variant = "tome"


class FastVLMM(ShirgLavidaLMM):
    variant = "fastv"


MODEL_CLASSES: dict[str, type[ShirgLavidaLMM]] = {
    cls.variant: cls for cls in (
        LavidaLMM, Lavida384LMM, Lavida672LMM, ShirgFixedLMM, ShirgOriginalLMM, PoolKLMM, RandomKLMM, VisionZipLMM,
        DivPruneLMM, DartLMM, HiredLMM, PruMergeLMM, PruMergePlusLMM, ToMeLMM, FastVLMM,
    )
}
