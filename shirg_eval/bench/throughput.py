"""Answers per second at several batch sizes, eager vs compiled step, and threshold vs fixed decoding.

``python -m shirg_eval.bench.throughput --pretrained models/reference`` (or ``--dims tiny|small|real``) answers the
same documents (the reading sets' test items) through :meth:`ShirgPipeline.answer_batch` in every *cell* --
(batch size, eager or ``compile=true``) -- with every cell warmed up first (compiling its shapes) and the timed
rounds interleaved (:mod:`.interleave`), so the ratios (answers/s at batch N over batch 1, compiled step over
eager step) are taken within a round. Each cell's answers are compared with batch 1 eager's; documents whose
answers differ are listed (near-ties under another summation order).

``--decoding-docs N`` also runs threshold decoding against fixed steps on N test documents per reading set:
accuracy of each, the paired difference (percentile bootstrap over documents), and forward passes per answer.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch

from ..data.reading import KINDS, make_item, reading_task
from ..model.compiled import COMPILE_STATS
from ..model.sampler import GenerationConfig, synced_perf_counter
from ..pipeline import Question, ShirgPipeline
from .interleave import paired_ratio, run_interleaved, spread


@dataclass
class CellRun:
    wall_s: float
    answers: list[str]
    step_ms: float  # median denoising step of the run's batches
    n_forward: float  # mean per answer


def reading_questions(n: int, kinds: tuple[str, ...] = KINDS, split: str = "test") -> tuple[list[Question],
                                                                                              list[str]]:
    """The first ``n`` items of each reading set as pipeline questions, and their gold answers."""
    questions, gold = [], []
    for kind in kinds:
        for i in range(n):
            item = make_item(kind, i, split=split)
            questions.append(Question(item.image, reading_task(kind).prompt(item.question), f"{kind}/{i}",
                                      item.question))
            gold.append(item.answer)
    return questions, gold


def answer_all(pipe: ShirgPipeline, questions: list[Question], config: GenerationConfig, batch: int) -> CellRun:
    device = pipe.model.device
    start = synced_perf_counter(device)
    answers, steps, forwards, compile_s = [], [], [], 0.0
    for lo in range(0, len(questions), batch):
        out = pipe.answer_batch(questions[lo:lo + batch], config)
        answers += [a.text.strip() for a in out]
        steps += out[0].generation.step_s
        forwards += [a.info["n_forward"] for a in out]
        compile_s += out[0].generation.compile_s  # a new shape's compilation is not throughput
    wall = synced_perf_counter(device) - start - compile_s
    return CellRun(wall, answers, statistics.median(steps) * 1e3, statistics.mean(forwards))


def measure_throughput(pipe: ShirgPipeline, questions: list[Question], batch_sizes: list[int], gen_length: int,
                       compile_sizes: list[int], rounds: int, seed: int = 0) -> dict[str, Any]:
    """Every (batch size, eager) cell and a compiled one for each of ``compile_sizes``, interleaved."""
    cells = {}
    for batch in batch_sizes:
        for compiled in ([False, True] if batch in compile_sizes else [False]):
            config = GenerationConfig(gen_length=gen_length, compile=compiled)
            cells[f"b{batch}{'|compiled' if compiled else ''}"] = (
                lambda c=config, b=batch: answer_all(pipe, questions, c, b))
    started = time.perf_counter()
    raw = run_interleaved(cells, rounds=rounds, warmup=1, seed=seed)
    reference = raw["b1"][0].answers
    out: dict[str, Any] = {"documents": len(questions), "rounds": rounds, "gen_length": gen_length,
                           "wall_s": time.perf_counter() - started, "cells": {}, "ratios": {}}
    for key, runs in raw.items():
        differing = [questions[i].sample_key for i, (a, b) in enumerate(zip(runs[0].answers, reference, strict=True))
                     if a != b]
        out["cells"][key] = {"answers_per_s": spread([len(questions) / r.wall_s for r in runs]),
                             "step_ms": spread([r.step_ms for r in runs]), "n_forward": runs[0].n_forward,
                             "answers_differing_from_b1_eager": differing}
    for key in raw:  # batch N over batch 1 in the same mode; compiled batch 1 over eager batch 1
        base = "b1|compiled" if key.endswith("|compiled") and key != "b1|compiled" else "b1"
        if key != base:
            out["ratios"][f"{key} / {base} answers per s"] = _ratio([1 / r.wall_s for r in raw[key]],
                                                                    [1 / r.wall_s for r in raw[base]])
    if compile_sizes:
        for batch in compile_sizes:
            out["ratios"][f"b{batch} compiled / eager step"] = _ratio(
                [r.step_ms for r in raw[f"b{batch}|compiled"]], [r.step_ms for r in raw[f"b{batch}"]])
        out["compile_stats"] = COMPILE_STATS.as_dict()
    return out


def weight_read_floor(model, copy_mb: int = 1024) -> dict[str, float]:
    """The cached step's floor at batch 1: the LM's weight bytes over the measured device copy bandwidth (a
    ``copy_mb`` MiB tensor copied 5 times; bandwidth counts its read and its write)."""
    lm_bytes = sum(p.numel() * p.element_size() for p in model.language_model.parameters())
    device = model.device
    src = torch.empty(copy_mb * 2**20 // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    start = synced_perf_counter(device)
    for _ in range(5):
        dst.copy_(src)
    seconds = (synced_perf_counter(device) - start) / 5
    bandwidth = 2 * src.numel() * 4 / seconds
    return {"lm_weight_bytes": lm_bytes, "copy_bandwidth_gb_s": bandwidth / 1e9, "floor_ms": lm_bytes / bandwidth * 1e3}


def _ratio(num: list[float], den: list[float]) -> dict[str, Any]:
    stats = paired_ratio(num, den)
    return {k: stats[k] for k in ("median", "min", "max", "n", "noisy")}


def compare_decoding(pipe: ShirgPipeline, n: int, threshold: float, batch: int, n_boot: int = 2000
                     ) -> dict[str, Any]:
    """Threshold vs fixed decoding on ``n`` test documents per reading set (greedy, the tasks' gen lengths)."""
    from ..metrics.bootstrap import paired_bootstrap

    out: dict[str, Any] = {"threshold": threshold, "documents_per_set": n, "sets": {}}
    for kind in KINDS:
        questions, gold = reading_questions(n, (kind,))
        scores, forwards = {}, {}
        gen_length = reading_task(kind).max_new_tokens
        for mode, config in (("fixed", GenerationConfig(gen_length=gen_length)),
                             ("threshold", GenerationConfig(gen_length=gen_length, decoding="threshold",
                                                            threshold=threshold))):
            answers, fwd = [], []
            for lo in range(0, len(questions), batch):
                done = pipe.answer_batch(questions[lo:lo + batch], config)
                answers += [a.text.strip() for a in done]
                fwd += [a.info["n_forward"] for a in done]
            scores[mode] = {q.sample_key: float(a == g) for q, a, g in zip(questions, answers, gold, strict=True)}
            forwards[mode] = statistics.mean(fwd)
        delta = paired_bootstrap(scores["fixed"], scores["threshold"], n_boot=n_boot, names=("fixed", "threshold"))
        out["sets"][kind] = {
            "accuracy_fixed": 100 * statistics.mean(scores["fixed"].values()),
            "accuracy_threshold": 100 * statistics.mean(scores["threshold"].values()),
            "delta_points": {"estimate": 100 * delta.estimate, "low": 100 * delta.low, "high": 100 * delta.high},
            "forwards_fixed": forwards["fixed"], "forwards_threshold": forwards["threshold"],
            "scores_differing": sum(scores["fixed"][k] != scores["threshold"][k] for k in scores["fixed"]),
        }
    return out


def agreement(model, tokenizer, variants: list[str], n: int, batch: int) -> dict[str, Any]:
    """Per variant, on ``n`` test documents per reading set (the tasks' gen lengths, greedy): the answers at batch
    ``batch`` eager and at batch ``batch`` compiled against batch 1 eager; differing documents listed by key, and
    each mode's accuracy."""
    out: dict[str, Any] = {"documents_per_set": n, "batch": batch, "variants": {}}
    for variant in variants:
        pipe = ShirgPipeline(model=model, tokenizer=tokenizer, variant=variant)
        row: dict[str, Any] = {}
        for kind in KINDS:
            questions, gold = reading_questions(n, (kind,))
            answers = {}
            for mode, size, compiled in (("b1", 1, False), (f"b{batch}", batch, False),
                                         (f"b{batch}|compiled", batch, True)):
                config = GenerationConfig(gen_length=reading_task(kind).max_new_tokens, compile=compiled)
                answers[mode] = [a.text.strip() for lo in range(0, len(questions), size)
                                 for a in pipe.answer_batch(questions[lo:lo + size], config)]
            for mode, got in answers.items():
                row.setdefault(mode, {"accuracy": {}, "differing": []})
                row[mode]["accuracy"][kind] = 100 * statistics.mean(a == g for a, g in zip(got, gold, strict=True))
                row[mode]["differing"] += [q.sample_key for q, a, b in zip(questions, got, answers["b1"], strict=True)
                                           if a != b]
        out["variants"][variant] = row
        print(f"{variant:>14}: " + "; ".join(f"{m} acc {r['accuracy']} differing {r['differing'] or 'none'}"
                                             for m, r in row.items()), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shirg_eval.bench.throughput", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pretrained", help="a checkpoint (e.g. models/reference); else --dims")
    parser.add_argument("--dims", default="tiny", help="random-init dims when no --pretrained: tiny, small, real")
    parser.add_argument("--variant", default="lavida")
    parser.add_argument("--batch-sizes", default="1,4,8,16")
    parser.add_argument("--docs", type=int, default=8, help="test documents per reading set answered in every cell")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gen-length", type=int, default=16)
    parser.add_argument("--compile", action="store_true", help="also time batch sizes with compile=true")
    parser.add_argument("--compile-batch-sizes", default=None,
                        help="with --compile: which batch sizes get a compiled cell (default: all)")
    parser.add_argument("--decoding-docs", type=int, default=0,
                        help="also compare threshold with fixed decoding on this many documents per set")
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--copy-mb", type=int, default=256, help="tensor size for the copy-bandwidth probe (MiB)")
    parser.add_argument("--agreement-docs", type=int, default=0,
                        help="instead: batch-N eager / compiled answers vs batch 1 eager on this many documents per "
                             "set, for every variant in --agreement-variants (N = the largest --batch-sizes)")
    parser.add_argument("--agreement-variants", default="all")
    parser.add_argument("--device", default=None)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    from .stages import build_bench_model

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, tokenizer, desc = build_bench_model(args.dims, device, args.pretrained)
    pipe = ShirgPipeline(model=model, tokenizer=tokenizer, variant=args.variant)
    sizes = [int(b) for b in args.batch_sizes.split(",") if b]
    if 1 not in sizes:
        sizes.insert(0, 1)  # ratios are against batch 1, measured in the same rounds
    report: dict[str, Any] = {"model": desc, "device": str(model.device), "variant": args.variant,
                              "torch_threads": torch.get_num_threads(), "torch": torch.__version__}
    if args.agreement_docs:
        from ..visual.variants import VARIANTS

        names = list(VARIANTS) if args.agreement_variants == "all" else args.agreement_variants.split(",")
        report["agreement"] = agreement(model, tokenizer, names, args.agreement_docs, max(sizes))
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(report, fh, indent=1)
        return 0
    questions, _ = reading_questions(args.docs)
    compile_sizes = [] if not args.compile else (
        [int(b) for b in args.compile_batch_sizes.split(",") if b] if args.compile_batch_sizes else sizes)
    if not set(compile_sizes) <= set(sizes):
        parser.error(f"--compile-batch-sizes {compile_sizes} must be among --batch-sizes {sizes}")
    report["throughput"] = measure_throughput(pipe, questions, sizes, args.gen_length, compile_sizes, args.rounds)
    floor = report["floor"] = weight_read_floor(model, args.copy_mb)
    for key, cell in report["throughput"]["cells"].items():
        if key.startswith("b1"):  # batch 1: the step against the weight-read floor
            cell["step_over_floor"] = cell["step_ms"]["median"] / floor["floor_ms"]
    print(f"weight-read floor {floor['floor_ms']:.3f} ms ({floor['lm_weight_bytes'] / 1e9:.3f} GB of LM weights at "
          f"{floor['copy_bandwidth_gb_s']:.1f} GB/s copy bandwidth)")
    for key, cell in report["throughput"]["cells"].items():
        print(f"{key:>14}: {cell['answers_per_s']['median']:8.2f} answers/s [{cell['answers_per_s']['min']:.2f}, "
              f"{cell['answers_per_s']['max']:.2f}]  step {cell['step_ms']['median']:7.2f} ms  "
              f"differing from b1 eager: {cell['answers_differing_from_b1_eager'] or 'none'}", flush=True)
    for name, r in report["throughput"]["ratios"].items():
        print(f"{name:>34}: {r['median']:.3f} [{r['min']:.3f}, {r['max']:.3f}]{' NOISY' if r['noisy'] else ''}")
    if args.decoding_docs:
        report["decoding"] = compare_decoding(pipe, args.decoding_docs, args.threshold, max(sizes))
        for kind, r in report["decoding"]["sets"].items():
            d = r["delta_points"]
            print(f"{kind}: fixed {r['accuracy_fixed']:.1f}% ({r['forwards_fixed']:.1f} forwards), threshold "
                  f"{args.threshold}: {r['accuracy_threshold']:.1f}% ({r['forwards_threshold']:.1f} forwards), "
                  f"delta {d['estimate']:+.1f} [{d['low']:+.1f}, {d['high']:+.1f}] points", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
