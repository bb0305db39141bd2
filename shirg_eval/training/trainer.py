"""DeepSpeed ZeRO + PEFT LoRA trainer for LaViDa with a SHIRG visual path.

One optimizer step = ``grad_accum`` micro-batches of ``micro_batch_size`` samples on every rank. The global
micro-batch counter ``m`` is the whole data position (epoch = m // per_epoch, index = m % per_epoch) and seeds
the per-batch masking RNG, so a resumed run sees exactly the batches and masks the killed run would have.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..model.config import CheckpointNotFoundError
from ..model.digest import weights_identity
from ..run_lock import RunLock
from .adapters import adapter_meta, apply_lora, count_parameters
from .answers import AnswerPadding, answer_stop_id, pad_answer_batch, pad_token_id
from .build_locks import check_stale_build_locks
from .checkpoint import STATE_FILE, find_latest, load_checkpoint, save_checkpoint
from .config import TrainConfig, fill_deepspeed_config, resolve_repo_path
from .data import ConversationDataset, ResumableOrder, SkipStats, load_training_data, micro_batches
from .distributed import all_reduce, barrier, setup_distributed, zero3_gathered
from .loss import encode_sample
from .objective import Objective, TrainingRecord, base_record_differences, diffusion_loss
from .probe import Probe, load_probe_samples
from .run_record import (
    METRICS_FILE,
    WRITER_LOCK,
    MetricsLog,
    check_resume_base,
    prepare_output_dir,
    start_record,
)
from .schedule import lr_lambda


class TrainingDivergedError(RuntimeError):
    """The loss became NaN/inf; nothing was saved for the failing step."""


# ------------------------------------------------------------------------------------------ model glue
class DiffusionLossModule(nn.Module):
    """What DeepSpeed wraps: micro-batch in, masked-diffusion loss out (so ZeRO hooks see every submodule)."""

    def __init__(self, peft_model: nn.Module, paths: dict[str, Any], tokenizer, cfg: TrainConfig, stop_id: int,
                 padding: AnswerPadding, objective: Objective):
        super().__init__()
        self.peft = peft_model
        self.paths = paths
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.stop_id = stop_id
        self.padding = padding
        self.objective = objective

    @property
    def lavida(self) -> nn.Module:
        return self.peft.get_base_model()

    def forward(self, items: list[tuple[Any, Any]], path_name: str,
                generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        model = self.lavida
        root_params = list(model.parameters(recurse=False))  # image_newline: owned by no submodule's forward
        with zero3_gathered(root_params):
            if not items:  # every image of this micro-batch was unreadable: a zero loss keeps ranks in step
                zero = sum(p.sum() * 0 for p in self.peft.parameters() if p.requires_grad)
                return zero, {"tokens": 0.0, "answer_tokens": 0.0, "masked_tokens": 0.0}
            path = self.paths[path_name]
            data = self.cfg.data
            seqs = [encode_sample(model, path, self.tokenizer, s, img, generator, data.max_answer_tokens,
                                  self.stop_id) for s, img in items]
            room = [model.config.tokenizer_model_max_length - q.prompt_embeds.shape[0] for q in seqs]
            padded = pad_answer_batch([q.answer_ids for q in seqs], [q.prompt_tokens for q in seqs], self.padding,
                                      [s.gen_length for s, _ in items], room, generator)
            seqs = [dataclasses.replace(q, answer_ids=ids) for q, ids in zip(seqs, padded, strict=True)]
            return diffusion_loss(model, seqs, model.config.mask_token_id, self.objective, generator)


def training_meta(cfg: TrainConfig, padding: AnswerPadding) -> dict[str, Any]:
    """How the adapter's answers were trained, for its metadata (``shirg_adapter.json``)."""
    return {"objective": cfg.objective, "mask": cfg.mask, "mask_eps": cfg.mask_eps, "pad_token": cfg.data.pad_token,
            "pad_token_id": padding.pad_id, "pad_to_batch": padding.to_batch, "extra_pad": padding.extra_pad,
            "pad_answers_to": padding.length}




def _seed_for(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "little") & (2**63 - 1)


def _resolve_ds_config(cfg: TrainConfig, world: int) -> dict[str, Any]:
    if not cfg.deepspeed:
        raw: dict[str, Any] = {"zero_optimization": {"stage": 0}, "bf16": {"enabled": "auto"},
                               "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
                               "train_batch_size": "auto", "gradient_clipping": "auto"}
    else:
        path = resolve_repo_path(cfg.deepspeed)
        if path is None:
            raise FileNotFoundError(f"DeepSpeed config {cfg.deepspeed} not found")
        raw = json.loads(path.read_text())
    ds = fill_deepspeed_config(raw, cfg, world)
    ds.pop("optimizer", None)  # we pass a torch AdamW ourselves: no fused-Adam JIT build
    ds.pop("scheduler", None)
    ds.setdefault("zero_allow_untested_optimizer", True)
    ds.setdefault("steps_per_print", 10**9)
    return ds


# ------------------------------------------------------------------------------------------ training
def _log(rank: int, msg: str) -> None:
    if rank == 0:
        print(f"[shirg-train] {msg}", flush=True)


def train(cfg: TrainConfig, return_model: bool = False) -> dict[str, Any]:
    """Run (or resume) a LoRA training; returns a summary (final step, skip counts, paths).

    ``return_model``: also return the trained PEFT model under ``"model"`` (tests compare it with the saved adapter).
    """
    out = Path(cfg.output_dir)
    launch_rank = int(os.environ.get("RANK", "0"))  # the launcher's; setup_distributed sets it without one
    # Before anything slow or any write: the inputs exist and the data parses (every rank reads them alike), so a
    # bad path or file is reported in seconds, before DeepSpeed starts and the model loads.
    cfg.check_paths()
    dataset = load_training_data(cfg.data)
    probe_docs = load_probe_samples(cfg.probe, dataset) if cfg.probe.every else None
    check_stale_build_locks()
    # One writer per run folder: global rank 0 holds the lock for the whole launch (one lock per run, not per
    # rank); if it is refused, it exits non-zero and the DeepSpeed launcher stops the other ranks. It is taken
    # before prepare_output_dir, so --overwrite never deletes the files of a run that is still writing.
    lock = RunLock(out / WRITER_LOCK, f"output_dir {out}",
                   "Wait for that run to end or stop it, or choose another --output_dir.")
    if launch_rank == 0:
        lock.acquire()
    try:
        return _train(cfg, out, dataset, launch_rank, return_model, probe_docs)
    finally:
        lock.release()


def _train(cfg: TrainConfig, out: Path, dataset: ConversationDataset, launch_rank: int,
           return_model: bool, probe_docs: ConversationDataset | None = None) -> dict[str, Any]:
    # Refuse to train over an earlier run silently (every rank refuses alike).
    overwrote = prepare_output_dir(cfg, out, launch_rank)

    import deepspeed
    from tqdm import tqdm

    from ..model.lavida import LavidaModel
    from ..model.tokenizer import load_tokenizer
    from ..visual.path import VisualPath

    rank, world, local_rank = setup_distributed()
    barrier()  # rank 0 has deleted what --overwrite names before anyone writes
    device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    dtype = cfg.resolved_dtype()
    random.seed(cfg.seed + rank)
    np.random.seed((cfg.seed + rank) % 2**32)
    torch.manual_seed(cfg.seed + rank)
    if overwrote:
        _log(rank, f"--overwrite: deleted the earlier run's {', '.join(overwrote)} in {out}")
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)

    # ---- model + LoRA
    try:
        model = LavidaModel.from_pretrained(cfg.pretrained, device=device, dtype=dtype)
    except CheckpointNotFoundError as err:
        raise err.with_flag("--pretrained") from err
    tokenizer = load_tokenizer(model.checkpoint_path)
    if cfg.gradient_checkpointing:
        # Non-reentrant: works with frozen inputs (only LoRA params need grads).
        for sub in (model.vision_tower, model.language_model):
            sub.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    targets = cfg.lora_targets()
    peft_model = apply_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, targets)
    peft_model.train()
    trainable, total = count_parameters(peft_model)
    _log(rank, f"trainable params: {trainable:,} / {total:,} ({100 * trainable / total:.4f}%) "
               f"[LoRA r={cfg.lora_r} on {targets}]")
    if rank == 0:
        weights_identity(model.checkpoint_path)  # hashed once (then cached) before the other ranks read it
    barrier()
    meta = adapter_meta(cfg.variant, model.checkpoint_path, cfg.pretrained, targets, cfg.lora_r, cfg.lora_alpha,
                        cfg.lora_lm)
    objective = Objective(cfg.objective, cfg.mask, cfg.mask_eps)
    padding = AnswerPadding(pad_token_id(tokenizer, cfg.data.pad_token), cfg.data.pad_to_batch, cfg.data.extra_pad,
                            cfg.data.pad_answers_to)
    meta["training"] = training_meta(cfg, padding)
    for differs in base_record_differences(TrainingRecord.load(model.checkpoint_path), cfg.objective, cfg.mask,
                                           cfg.data.pad_token, cfg.data.pad_to_batch):
        _log(rank, f"warning: {differs} ({model.checkpoint_path}/training_record.json): the adapter trains the base "
                   "on answers it was not trained on")

    paths = {cfg.variant: VisualPath(model, cfg.variant)}
    if cfg.mixed_resolution and cfg.variant != "lavida_384":
        paths["lavida_384"] = VisualPath(model, "lavida_384")
    module = DiffusionLossModule(peft_model, paths, tokenizer, cfg, answer_stop_id(tokenizer), padding, objective)
    probe = (Probe(cfg.probe, probe_docs, tokenizer, cfg.data.max_answer_tokens, module.stop_id)
             if probe_docs is not None else None)

    # ---- data and schedule
    stats: SkipStats = dataset.stats
    order = ResumableOrder(len(dataset), cfg.micro_batch_size, rank, world, cfg.seed)
    total_steps = cfg.epochs * order.per_epoch // cfg.grad_accum
    if cfg.max_steps > 0:
        total_steps = min(total_steps, cfg.max_steps)
    if total_steps < 1:
        raise ValueError(f"no optimizer step fits: {len(dataset)} samples, {order.per_epoch} micro-batches/epoch "
                         f"on {world} rank(s), grad_accum {cfg.grad_accum}, epochs {cfg.epochs}")
    total_micro = total_steps * cfg.grad_accum
    warmup = int(cfg.warmup_ratio * total_steps)
    _log(rank, f"data: {len(dataset)} records indexed (skipped at indexing: malformed {stats.malformed}, "
               f"missing_image {stats.missing_image}; images are decoded as records are read, and undecodable ones "
               f"are skipped and counted then); {order.per_epoch} micro-batches/epoch/rank; {total_steps} optimizer "
               f"steps, {warmup} warm-up")

    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.adam_betas), weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(total_steps, warmup, cfg.lr_scheduler))
    ds_config = _resolve_ds_config(cfg, world)
    engine, optimizer, _, scheduler = deepspeed.initialize(model=module, optimizer=optimizer,
                                                           lr_scheduler=scheduler, config=ds_config)
    zero_stage = engine.zero_optimization_stage()

    # ---- resume
    start_micro, step = 0, 0
    resume_from = None
    base = {"base_weights_sha256": meta["base_weights_sha256"], "base_revision": meta["base_revision"]}
    if cfg.resumes():
        resume_from = find_latest(out) if cfg.resume == "auto" else Path(cfg.resume)
        if resume_from is not None and not (resume_from / STATE_FILE).is_file():
            resume_from = find_latest(resume_from)  # an output dir: its newest complete checkpoint
            if resume_from is None:
                raise FileNotFoundError(f"resume: {cfg.resume} holds no complete checkpoint")
        if resume_from is None:
            _log(rank, f"resume: no complete checkpoint in {out}; starting from scratch")
        else:
            base["mismatch"] = check_resume_base(resume_from, model.checkpoint_path, cfg)
            state = load_checkpoint(engine, resume_from, rank)
            start_micro, step = int(state["micro_step"]), int(state["step"])
            stats.corrupt_ids.update(state.get("corrupt_ids", []))
            _log(rank, f"resumed from {resume_from}: step {step}, epoch {state['epoch']}, index {state['index']}")
    metrics = None
    if rank == 0:  # written once every check has passed: a refused launch leaves the folder as it was
        (out / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        # A resume (even one that found no checkpoint) drops logged steps past its start: none appears twice.
        metrics = MetricsLog(out / METRICS_FILE, step if cfg.resumes() else None,
                             out / "tensorboard" if cfg.tensorboard else None)
        metrics.write(start_record(cfg, resumed_from=str(resume_from) if resume_from else None, start_step=step,
                                   world_size=world, base=base, overwrote=overwrote))
    read = order.indices_read(start_micro)  # dataset indices this rank has decoded (replayed on resume)

    # ---- loop
    bar = tqdm(total=total_steps, initial=step, desc="lora", disable=rank != 0 or not cfg.progress,
               dynamic_ncols=True, file=sys.stdout)
    acc_loss, acc_tokens, acc_n = 0.0, 0.0, 0
    t_step = time.perf_counter()
    last_ckpt: str | None = str(resume_from) if resume_from else None
    try:
        for m, items in micro_batches(dataset, order, start_micro, total_micro, cfg.num_workers):
            read.update(order.indices(m))
            good = []
            for sample, image in items:
                if image is None:
                    if sample.uid not in stats.corrupt_ids:
                        print(f"[shirg-train] rank {rank}: skipping unreadable image {sample.image_path} "
                              f"(id {sample.uid})", flush=True)
                    stats.corrupt_ids.add(sample.uid)
                else:
                    good.append((sample, image))
            path_name = cfg.variant
            if len(paths) > 1 and random.Random(_seed_for(cfg.seed, "res", m)).random() < 0.5:
                path_name = "lavida_384"
            gen = torch.Generator().manual_seed(_seed_for(cfg.seed, m, rank))
            loss, info = engine(good, path_name, gen)
            loss_sum, tokens_sum, bad = all_reduce(
                [float(loss.detach()), info["tokens"], 0.0 if math.isfinite(float(loss.detach())) else 1.0], device)
            if bad or not math.isfinite(loss_sum):
                raise TrainingDivergedError(
                    f"non-finite loss at step {step + 1} (micro-batch {m}, loss {float(loss.detach())}); stopped "
                    f"without saving. Last good checkpoint: {last_ckpt or 'none'}")
            lr = scheduler.get_last_lr()[0]
            engine.backward(loss)
            engine.step()
            acc_loss += loss_sum / world
            acc_tokens += tokens_sum
            acc_n += 1
            if (m + 1) % cfg.grad_accum:
                continue
            step = (m + 1) // cfg.grad_accum
            grad_norm = engine.get_global_grad_norm()
            elapsed = time.perf_counter() - t_step
            epoch, index = order.position(m + 1)
            record = {"step": step, "loss": acc_loss / acc_n, "lr": lr,
                      "grad_norm": float(grad_norm) if grad_norm is not None else None,
                      "tokens_per_s": acc_tokens / max(elapsed, 1e-9), "epoch": epoch, "index": index}
            probed = stop_early = False
            if probe is not None and probe.due(step):  # every rank runs it: ZeRO-3 forwards need them all
                with zero3_gathered(list(model.parameters(recurse=False))):
                    result = probe.measure(peft_model, paths[cfg.variant], step)
                record.update(result.as_record())
                probed, stop_early = True, probe.should_stop(result)
            if rank == 0 and (step % cfg.logging_steps == 0 or step == total_steps or probed):
                metrics.write(record)
                shown = {"p_ans": f"{record['probe_p_answer']:.3f}",
                         "p_stop": f"{record['probe_p_stop']:.3f}"} if "probe_p_answer" in record else {}
                bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{lr:.2e}", tok_s=f"{record['tokens_per_s']:.0f}",
                                **shown)
            if probed:
                _log(rank, f"probe at step {step}: p(answer) {result.p_answer:.4f}, p(stop) {result.p_stop:.4f} "
                           f"at answer slot 0 over {result.docs} held-out documents")
            bar.update(1)
            acc_loss, acc_tokens, acc_n = 0.0, 0.0, 0
            if step % cfg.save_steps == 0 or step == total_steps or stop_early:
                trainer_state = {"step": step, "micro_step": m + 1, "epoch": epoch, "index": index,
                                 "total_steps": total_steps, "world_size": world, "zero_stage": zero_stage,
                                 "skipped": stats.as_dict(), "corrupt_ids": sorted(stats.corrupt_ids),
                                 "variant": cfg.variant, "seed": cfg.seed}
                ckpt = save_checkpoint(engine, peft_model, out, step, trainer_state, meta, rank)
                last_ckpt = str(ckpt)
                _log(rank, f"saved {ckpt}")
            if stop_early:
                _log(rank, f"early stop at step {step}: probe p(answer) has not beaten {probe.best:.4f} for "
                           f"{probe.stale} probes (probe.early_stop {cfg.probe.early_stop})")
                break
            t_step = time.perf_counter()
    finally:
        bar.close()

    # ---- summary (skip counts summed over ranks; index-time skips are the same on every rank)
    corrupt = sorted(stats.corrupt_ids)
    if dist.is_initialized() and world > 1:
        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, (corrupt, sorted(read)))
        corrupt = sorted({u for part, _ in gathered for u in part})
        read = {i for _, part in gathered for i in part}
    skipped = {"malformed": stats.malformed, "missing_image": stats.missing_image, "corrupt_image": len(corrupt)}
    summary = {"event": "end", "final_step": step, "total_steps": total_steps, "skipped": skipped,
               "records_indexed": len(dataset), "records_read": len(read),
               "trainable_params": trainable, "total_params": total, "output_dir": str(out),
               "last_checkpoint": last_ckpt}
    if rank == 0:
        metrics.write(summary)
        metrics.close()
    _log(rank, f"done: step {step}/{total_steps}; skipped records: malformed {stats.malformed}, missing_image "
               f"{stats.missing_image} (at indexing), corrupt_image {len(corrupt)} (found among the {len(read)} of "
               f"{len(dataset)} indexed records read so far); last checkpoint {last_ckpt}")
    if return_model:
        summary["model"] = peft_model
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """CLI: ``--config YAML`` then ``--key value`` overrides; ``--local_rank=N`` from the launcher is accepted."""
    from ..model.adapters import AdapterError
    from ..model.config import CheckpointError
    from ..run_lock import RunLockedError
    from .build_locks import StaleBuildLockError
    from .config import ConfigError, load_config, parse_overrides
    from .run_record import OutputDirError

    argv = list(sys.argv[1:] if argv is None else argv)
    config_path = None
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--local_rank") or arg.startswith("--local-rank"):
            value = arg.split("=", 1)[1] if "=" in arg else argv[(i := i + 1)]
            os.environ.setdefault("LOCAL_RANK", value)
        elif arg in ("-h", "--help"):
            print("usage: train/lora.py --config YAML [--key value ...] [--resume [PATH] | --overwrite]\n"
                  "every config key is a flag (README, 'Train the LoRA'); valid keys: "
                  + ", ".join(TrainConfig.valid_keys()))
            return {}
        elif arg == "--config" or arg.startswith("--config="):
            config_path = arg.split("=", 1)[1] if "=" in arg else argv[(i := i + 1)]
        else:
            rest.append(arg)
        i += 1
    try:
        cfg = load_config(config_path, parse_overrides(rest))
        return train(cfg)
    except (ConfigError, OutputDirError, CheckpointError, AdapterError, RunLockedError, StaleBuildLockError) as err:
        # Bad input, named with the fix: one line, no traceback, and once per machine under the DeepSpeed
        # launcher (every rank finds the same problem; the launcher stops the others when one exits non-zero).
        # Each node's first rank prints too, since a node-local path can be missing on one node only.
        rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
        if rank == 0 or local_rank == 0:
            print(f"error: {err}" if rank == 0 else f"error: [rank {rank}] {err}", file=sys.stderr)
        raise SystemExit(2) from err
