"""``shirg-train-reference``: train the reference mini-LaViDa from scratch on the hard reading sets.

Two stages, each resumable, and deterministic for a seed on a given device (batches never depend on the number
of data workers):

1. ``dense``: the vision tower, with throw-away linear heads, learns to read every patch of random crops
   (:mod:`.dense`): thousands of labels per image instead of one answer.
2. ``qa``: projector, ``image_newline`` and LM learn to answer on LaViDa's release path (anyres 384 px tiles,
   2x2 pooling; ``--qa-variant``), tower frozen, with the masked-diffusion objective and EOS-padded answers.

Checkpoints: ``OUT/checkpoint-<stage>-<step>/`` (the model in LaViDa's layout, optimizer, trainer state),
written to a ``.tmp`` folder and renamed; ``OUT/latest`` names the newest complete one (the two newest are kept),
by the LoRA trainer's folder code (:mod:`shirg_eval.training.checkpoint`);
``OUT/final`` is the finished model. ``OUT/metrics.jsonl`` logs losses, with a start record per run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from tqdm import tqdm

from ..data.reading import COLOUR_NAMES
from ..model.lavida import LavidaModel
from ..model.loading import save_lavida
from ..model.tokenizer import load_tokenizer
from ..training.checkpoint import STATE_FILE, latest_pointer, publish_checkpoint, rotate_checkpoints
from ..training.loss import masked_diffusion_loss
from ..training.schedule import warmup_then_decay
from ..visual.path import VisualPath
from .batches import DenseBatches, QABatches, loader
from .dense import HEADS_FILE, ReadingHeads, dense_loss_from_batch
from .factory import POST_PROMPTS, make_reference_init
from .guided import guided_loss, guided_sequences
from .qa import GEN_LENGTHS, PromptIds, sample_sequences

KEEP_CHECKPOINTS = 2


class RunFolderError(SystemExit):
    """A run folder that would be overwritten or continued with other settings."""


@dataclass
class Recipe:
    """Every knob of the recipe; written to ``OUT/recipe.json`` and checked on ``--resume``."""

    seed: int = 0
    dense_steps: int = 700
    dense_batch: int = 256
    dense_lr: float = 2e-3
    dense_grids: tuple[int, ...] = (8, 12, 16, 20, 27)
    dense_curriculum: float = 0.3  # share of dense steps over which glyphs shrink to their final range
    dense_scales: tuple[float, ...] = (0.9, 1.5, 0.45, 1.0)  # view px per image px: start lo, hi -> end lo, hi
    qa_steps: int = 900
    qa_images: int = 16  # images per step
    qa_questions: int = 4  # questions per image (the release path encodes the image once for all of them)
    qa_lr: float = 1e-3
    qa_crop_steps: int = 0  # curriculum: the first QA steps answer about crops (pad path, ~200 visual tokens)
    qa_crop_images: int = 16  # crops per curriculum step
    qa_variant: str = "lavida"  # the visual path the LM learns on (LaViDa's release path)
    qa_gen_lengths: tuple[int, ...] = GEN_LENGTHS  # answer canvases: the answer, then EOS to this many slots
    qa_full_mask: bool = False  # mask every answer slot (cross-entropy) instead of LaViDa's random masking
    # Reading guidance (guided.py; release path only): dense losses that make reading the image learnable
    qa_reading_weight: float = 0.0
    qa_pointer_weight: float = 0.0
    qa_reading_colours: bool = False  # reading guidance also names the cue colour of region positions without a digit
    qa_cue_weight: float = 0.0  # the asked colour at the answer slot, region colours in the region (last layer's input)
    qa_carry_weight: float = 0.0  # digit positions name their digit at the last layer's input (what attention copies)
    # Optional wall-clock caps per stage (0 = none). With a cap the learning rate anneals by whichever of steps or
    # time runs out first and the stage ends at the cap: for a one-shot GPU lease; the card records the steps.
    dense_minutes: float = 0.0
    qa_minutes: float = 0.0
    warmup: int = 100
    weight_decay: float = 0.01
    checkpoint_every: int = 200
    log_every: int = 25

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()[:16]


class TimeBudget:
    """Share of a stage's wall-clock cap used so far (0 without a cap)."""

    def __init__(self, minutes: float):
        self.minutes, self.start = minutes, time.time()

    def share(self) -> float:
        return (time.time() - self.start) / (60 * self.minutes) if self.minutes else 0.0

    def over(self) -> bool:
        return self.share() >= 1.0


class Run:
    """One run folder: the model, checkpoints, the log, and the two stages."""

    def __init__(self, out: Path, recipe: Recipe, device: torch.device, workers: int, max_minutes: float | None):
        self.out, self.recipe, self.device, self.workers = out, recipe, device, workers
        self.deadline = time.time() + 60 * max_minutes if max_minutes else None
        self.tokenizer = load_tokenizer(out / "init")

    def log(self, record: dict[str, Any]) -> None:
        with (self.out / "metrics.jsonl").open("a") as fh:
            fh.write(json.dumps(record) + "\n")

    def latest(self) -> Path | None:
        ckpt = latest_pointer(self.out)
        return ckpt if ckpt is not None and (ckpt / STATE_FILE).is_file() else None

    def save(self, model: LavidaModel, stage: str, step: int, optimizer, heads: ReadingHeads | None,
             complete: bool = False) -> Path:
        name = f"checkpoint-{stage}-{step:06d}"
        tmp, final = self.out / f"{name}.tmp", self.out / name
        shutil.rmtree(tmp, ignore_errors=True)
        save_lavida(model, tmp)
        self.tokenizer.save_pretrained(tmp)
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        if heads is not None:
            save_file({k: v.detach().cpu() for k, v in heads.state_dict().items()}, str(tmp / HEADS_FILE))
        (tmp / STATE_FILE).write_text(json.dumps({"stage": stage, "step": step, "complete": complete,
                                                  "recipe": self.recipe.digest()}))
        publish_checkpoint(tmp, final)
        rotate_checkpoints(self.out, KEEP_CHECKPOINTS)  # stage-then-padded-step names sort by age
        return final

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.time() > self.deadline

    def _optimise(self, params, lr: float, total: int, start: int, resume_from: Path | None, budget: TimeBudget):
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=self.recipe.weight_decay)
        if resume_from is not None:
            optimizer.load_state_dict(torch.load(resume_from / "optimizer.pt", weights_only=True,
                                                 map_location=self.device))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: warmup_then_decay(s + start, total, self.recipe.warmup, "cosine",
                                                   progress_floor=budget.share(), peak_in_warmup=True))
        return optimizer, scheduler

    def _update(self, loss: torch.Tensor, params, optimizer, scheduler, stage: str, step: int) -> None:
        if not torch.isfinite(loss):
            raise RuntimeError(f"{stage} step {step}: loss is {float(loss)}; nothing saved after {self.latest()}. "
                               "Resume with a lower learning rate.")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()

    def _log_step(self, bar, stage: str, step: int, stats: dict[str, float], optimizer) -> None:
        if step % self.recipe.log_every == 0:
            self.log({"stage": stage, "step": step, "lr": optimizer.param_groups[0]["lr"], "time": time.time(),
                      **{k: round(float(v), 5) for k, v in stats.items()}})
            bar.set_postfix({k: f"{v:.3g}" for k, v in stats.items() if k.startswith(("loss", "digit_acc"))})

    def dense(self, model: LavidaModel, start: int, resume_from: Path | None) -> bool:
        """Run the tower stage from ``start``; False when the run's time ran out first."""
        r = self.recipe
        tower = model.vision_tower
        torch.manual_seed(r.seed + 1)
        heads = ReadingHeads(tower.config.hidden_size).to(self.device) if resume_from is None \
            else ReadingHeads.load(resume_from, tower.config.hidden_size, self.device)
        params = list(tower.parameters()) + list(heads.parameters())
        budget = TimeBudget(r.dense_minutes)
        optimizer, scheduler = self._optimise(params, r.dense_lr, r.dense_steps, start, resume_from, budget)
        tower.train()
        batches = DenseBatches(start, r.dense_steps, r.seed, r.dense_batch, r.dense_grids,
                               curriculum_steps=int(r.dense_curriculum * r.dense_steps), scales=r.dense_scales)
        bar = tqdm(loader(batches, self.workers), initial=start, total=r.dense_steps, desc="dense: tower reads")
        for batch in bar:
            loss, stats = dense_loss_from_batch(tower, heads, batch, self.device)
            self._update(loss, params, optimizer, scheduler, "dense", batch.step)
            self._log_step(bar, "dense", batch.step, stats, optimizer)
            step = batch.step + 1
            done = step == r.dense_steps or budget.over()
            if step % r.checkpoint_every == 0 or done or self.out_of_time():
                self.save(model, "dense", step, optimizer, heads, complete=done)
            if done or self.out_of_time():
                return done
        return True

    def qa(self, model: LavidaModel, start: int, resume_from: Path | None, heads_from: Path | None) -> bool:
        """Run the answering stage from ``start``; False when the run's time ran out first."""
        r = self.recipe
        guided = r.qa_reading_weight > 0 or r.qa_pointer_weight > 0 or r.qa_cue_weight > 0 or r.qa_carry_weight > 0
        heads = ReadingHeads.load(heads_from, model.vision_tower.config.hidden_size, self.device) \
            if heads_from is not None and (heads_from / HEADS_FILE).is_file() else None  # kept for --tower evaluation
        if guided:
            if r.qa_variant != "lavida":
                raise ValueError("reading guidance labels the release path's visual block: use --qa-variant lavida")
            digit_ids = torch.tensor([self.tokenizer.convert_tokens_to_ids(str(d)) for d in range(10)])
            colour_ids = torch.tensor([_word_token(self.tokenizer, c) for c in COLOUR_NAMES]) \
                if r.qa_reading_colours or r.qa_cue_weight > 0 else None
        model.vision_tower.requires_grad_(False)
        params = [p for n, p in model.named_parameters() if not n.startswith("vision_tower.")]
        budget = TimeBudget(r.qa_minutes)
        optimizer, scheduler = self._optimise(params, r.qa_lr, r.qa_steps, start, resume_from, budget)
        path = VisualPath(model, r.qa_variant)
        model.train()
        model.vision_tower.eval()
        batches = QABatches(start, r.qa_steps, r.seed, r.qa_images, r.qa_questions, model.image_processor,
                            path.resolution, POST_PROMPTS, r.qa_gen_lengths, r.qa_crop_steps, r.qa_crop_images)
        bar = tqdm(loader(batches, self.workers), initial=start, total=r.qa_steps, desc=f"qa: {r.qa_variant} path")
        prompt_ids = PromptIds(self.tokenizer)
        for batch in bar:
            generator = torch.Generator().manual_seed(r.seed * 1_000_003 + batch.step)
            if guided:
                guided_seqs = [seq for sample in batch.samples
                               for seq in guided_sequences(model, self.tokenizer, sample, prompt_ids, digit_ids,
                                                           colour_ids if r.qa_reading_colours else None)]
                loss, info = guided_loss(model, guided_seqs, model.config.mask_token_id,
                                         reading_weight=r.qa_reading_weight, pointer_weight=r.qa_pointer_weight,
                                         full_mask=r.qa_full_mask, generator=generator,
                                         cue_weight=r.qa_cue_weight, carry_weight=r.qa_carry_weight,
                                         colour_token_ids=colour_ids, digit_token_ids=digit_ids)
            else:
                sequences = [seq for sample in batch.samples
                             for seq in sample_sequences(model, self.tokenizer, path, sample, generator, prompt_ids)]
                loss, info = masked_diffusion_loss(model, sequences, model.config.mask_token_id, generator=generator,
                                                   full_mask=r.qa_full_mask)
            self._update(loss, params, optimizer, scheduler, "qa", batch.step)
            self._log_step(bar, "qa", batch.step, {"loss": loss.item(), **info}, optimizer)
            step = batch.step + 1
            done = step == r.qa_steps or budget.over()
            if step % r.checkpoint_every == 0 or done or self.out_of_time():
                self.save(model, "qa", step, optimizer, heads, complete=done)
            if done or self.out_of_time():
                return done
        return True


def _word_token(tokenizer, word: str) -> int:
    """The single token of `` word`` as it appears inside a question (the colour words of the reading sets)."""
    ids = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"colour reading needs {word!r} to be one token after a space; the tokenizer gives {ids}")
    return ids[0]


def _begun_stage(out: Path) -> str | None:
    """The stage of the run's newest checkpoint: ``dense``, ``qa``, or None before the first one (``dense`` too
    when stage 1 is complete and stage 2 has not begun yet: its knobs may still change)."""
    ckpt = latest_pointer(out)
    state_file = ckpt / STATE_FILE if ckpt is not None else None
    return json.loads(state_file.read_text())["stage"] if state_file is not None and state_file.is_file() else None


def _frozen_knobs(stage: str | None) -> set[str]:
    """Knobs a resumed run may no longer change: those of every stage that has begun (and the shared ones)."""
    names = {f.name for f in dataclasses.fields(Recipe)}
    if stage is None:
        return set()
    later = {n for n in names if n.startswith("qa_")} if stage == "dense" else set()
    return names - later


def _prepare_folder(out: Path, recipe: Recipe, resume: bool, overwrite: bool) -> list[str]:
    """Check (and write) the run folder's recipe; returns the knobs this resume changes (stages not yet begun)."""
    if out.exists() and any(out.iterdir()) and not (resume or overwrite):
        raise RunFolderError(f"{out} already holds a training run; pass --resume to continue it, or --overwrite "
                             "to delete it and start again")
    if overwrite and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    recipe_file = out / "recipe.json"
    mine = json.loads(json.dumps(dataclasses.asdict(recipe)))
    changed = []
    if recipe_file.is_file():
        defaults = json.loads(json.dumps(dataclasses.asdict(Recipe())))
        theirs = json.loads(recipe_file.read_text())  # a knob newer than the run's recipe had its default there
        changed = sorted(k for k in mine if theirs.get(k, defaults[k]) != mine[k])
        frozen_knobs = _frozen_knobs(_begun_stage(out)) | ({"seed"} if (out / "init").is_dir() else set())
        frozen = sorted(set(changed) & frozen_knobs)  # the init is drawn from the seed before any checkpoint
        if frozen:
            raise RunFolderError(f"{recipe_file}: this command changes {frozen}, knobs of a stage the run has "
                                 "already begun; resume with the run's own settings or pass --overwrite to start "
                                 "again (knobs of stages not yet begun may change on --resume)")
    recipe_file.write_text(json.dumps(mine, indent=2) + "\n")
    return changed


def train(out: str | Path, recipe: Recipe, *, resume: bool = False, overwrite: bool = False,
          device: str | None = None, workers: int = 0, max_minutes: float | None = None) -> Path:
    """Run (or continue) the recipe in ``out``; returns ``out/final`` (or the newest checkpoint if out of time)."""
    out = Path(out)
    changed = _prepare_folder(out, recipe, resume, overwrite)
    if not (out / "init" / "config.json").is_file():
        make_reference_init(out / "init", seed=recipe.seed)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda":  # fp32 weights, TF32 matmuls: the small matrices here gain speed, not precision trouble
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    run = Run(out, recipe, dev, workers, max_minutes)
    latest = run.latest()
    run.log({"event": "start", "time": time.time(), "recipe": recipe.digest(), "device": str(dev),
             "resumed_from": latest.name if latest else None, "recipe_changed": changed, "argv": sys.argv[1:]})
    model = LavidaModel.from_pretrained(latest or out / "init", device=dev, dtype=torch.float32)
    state = json.loads((latest / STATE_FILE).read_text()) if latest else {"stage": "dense", "step": 0}
    started = time.time()
    if state["stage"] == "dense" and not state.get("complete"):
        if not run.dense(model, state["step"], latest if state["step"] else None):
            return run.latest()
    heads_from = run.latest()  # the dense heads ride in every checkpoint from the end of stage 1 on
    if state["stage"] == "dense":
        state, latest = {"stage": "qa", "step": 0}, None
    if not state.get("complete"):
        if not run.qa(model, state["step"], latest if state["step"] else None, heads_from):
            return run.latest()
    final = out / "final"
    save_lavida(model, final)
    run.tokenizer.save_pretrained(final)
    run.log({"event": "done", "time": time.time(), "seconds": time.time() - started, "final": str(final)})
    return final
