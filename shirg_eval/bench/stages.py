"""Building bench models at named dims and timing one answer stage by stage, on the evaluation's own path.

Stages (model time, closed by the pipeline's stage timers -- :class:`~shirg_eval.model.sampler.StageTimer`, CUDA
events on a GPU, ``perf_counter`` elsewhere -- inside ``ShirgPipeline`` / ``VisualPath``): ``vision`` (SigLIP over
every view), ``projector``, ``selection`` (the variant's selector, or LaViDa's pool + anyres assembly for
``lavida``, incl. the question embedding the selector scores against), ``embed`` (splice the visual block into the
prompt), ``prefill`` (prefix-cache fill; FastV's in-LM selection), ``denoise`` (all steps; per-step times kept).
``preprocess`` (PIL -> pixel views, tokenisation) runs on the CPU and is reported apart, never inside latency.
"""

from __future__ import annotations

import resource
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..model.config import LavidaConfig
from ..model.lavida import LavidaModel
from ..model.prompting import build_prompt_ids, question_embeds
from ..model.sampler import GenerationConfig
from ..model.tiny import TinyDims, build_tokenizer, lavida_config_dict, make_tiny_checkpoint
from ..model.tokenizer import load_tokenizer
from ..pipeline import Question, ShirgPipeline
from .cost_model import DIMS, BenchDims

MODEL_STAGES = ("vision", "projector", "selection", "embed", "prefill", "denoise")
DEFAULT_QUESTION = "What is the value of the red bar in the chart for the year 2019?"


def bench_config(dims: BenchDims, mask_id: int, eos_id: int) -> LavidaConfig:
    from transformers import SiglipVisionConfig

    tiny_like = TinyDims(dims.d_model, dims.n_heads, dims.n_layers, dims.mlp_hidden_size, dims.vocab_size,
                         dims.vision_hidden, dims.vision_intermediate, dims.vision_heads, dims.vision_layers)
    raw = lavida_config_dict(tiny_like, dims.vocab_size, {"mask": mask_id, "eos": eos_id}, dims.vision_hidden)
    vision = SiglipVisionConfig(hidden_size=dims.vision_hidden, intermediate_size=dims.vision_intermediate,
                                num_hidden_layers=dims.vision_layers, num_attention_heads=dims.vision_heads,
                                num_channels=3, image_size=384, patch_size=14, hidden_act="gelu_pytorch_tanh",
                                layer_norm_eps=1e-6, vision_use_head=False)
    return LavidaConfig.from_dict(raw, vision)


def build_bench_model(dims_name: str, device: str, pretrained: str | None = None, seed: int = 0,
                      random_init: bool = False) -> tuple[LavidaModel, Any, str]:
    """(model, tokenizer, description). ``pretrained`` wins over dims; ``real`` refuses to run on a CPU.

    ``tiny`` loads the tiny checkpoint unless ``random_init``; other dims (and ``random_init``) build random
    weights directly on the device in the dims' dtype, with no loader and no host copy.
    """
    if pretrained:
        model = LavidaModel.from_pretrained(pretrained, device=device)
        return model.eval(), load_tokenizer(getattr(model, "checkpoint_path", pretrained)), f"checkpoint {pretrained}"
    dims = DIMS[dims_name]
    if dims_name == "real" and not device.startswith("cuda"):
        raise SystemExit("--dims real builds LLaDA-8B + SigLIP so400m in bf16 (~17 GB of weights) and needs a CUDA "
                         "GPU; on a CPU use --dims small, or --model-only for the cost model at real dims")
    if dims_name == "tiny" and not random_init:
        # the tiny checkpoint itself (its init makes logits position- and image-dependent, like the tests')
        path = make_tiny_checkpoint(Path(tempfile.mkdtemp(prefix="shirg-bench-tiny-")) / "ckpt", seed=seed)
        model = LavidaModel.from_pretrained(path, device=device, dtype=torch.float32)
        return model.eval(), load_tokenizer(path), "tiny checkpoint (random init)"
    tokenizer = build_tokenizer(768)  # prompt ids < 768 fit any vocab; the LM vocab size is the dims'
    mask_id = tokenizer.convert_tokens_to_ids("<|mdm_mask|>")
    config = bench_config(dims, mask_id, tokenizer.eos_token_id)
    torch.manual_seed(seed)
    dtype = getattr(torch, dims.dtype)
    previous = torch.get_default_dtype()
    try:  # built directly on the device in its dtype: no 32 GB fp32 copy of the 8B model on the host
        torch.set_default_dtype(dtype)
        with torch.device(device):
            model = LavidaModel(config, attn_implementation="sdpa")  # what the loader picks
    finally:
        torch.set_default_dtype(previous)
    return model.eval(), tokenizer, f"{dims_name} dims, random init, {dims.dtype}"


def bench_image(width: int = 1000, height: int = 750, seed: int = 0) -> Image.Image:
    """A deterministic chart-like RGB image (anyres picks the 768x768 grid for 4:3)."""
    rng = np.random.default_rng(seed)
    pixels = np.full((height, width, 3), 245, dtype=np.uint8)
    for i in range(8):  # bars
        x0 = 60 + i * (width - 120) // 8
        top = int(rng.integers(height // 5, height - 80))
        pixels[top:height - 60, x0 + 8:x0 + (width - 120) // 8 - 8] = rng.integers(0, 255, 3, dtype=np.uint8)
    pixels[::25, :, :] = 200  # grid lines
    pixels = np.clip(pixels.astype(np.int16) + rng.integers(-6, 7, pixels.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


@dataclass
class StageTimes:
    preprocess_ms: float
    stages_ms: dict[str, float]  # MODEL_STAGES
    step_ms: list[float]
    n_tokens: int
    prompt_positions: int
    prefix_kv_bytes: int
    n_forward: int
    ids: list[int] = field(default_factory=list)
    compile_ms: float = 0.0  # compile=true: compiling a new shape (not in any stage)

    @property
    def latency_ms(self) -> float:
        return sum(self.stages_ms.values())


class VariantRunner:
    """One variant's answer through the evaluation's own path, :meth:`ShirgPipeline.answer_batch`, on a shared
    model; the stage times are the pipeline's own stage timers (``Answer.stages_ms``). Every variant is measurable,
    selectors with declared needs (tower attention, pre-projector features, FastV's in-LM prefill) included."""

    def __init__(self, model: LavidaModel, tokenizer, variant: str, question: str = DEFAULT_QUESTION, seed: int = 0,
                 **variant_params: Any):
        self.model, self.tokenizer, self.question, self.seed = model, tokenizer, question, seed
        self.pipeline = ShirgPipeline(model=model, tokenizer=tokenizer, variant=variant, seed=seed, **variant_params)
        self.path = self.pipeline.path

    @torch.no_grad()
    def run(self, image: Image.Image, config: GenerationConfig, batch_size: int = 1) -> StageTimes:
        """One batch of ``batch_size`` copies of the question (each its own seeded document): per-document stages
        summed over the batch, the batch's denoising once; figures of the first document."""
        questions = [Question(image, self.question, sample_key=f"bench/{i}") for i in range(batch_size)]
        answers = self.pipeline.answer_batch(questions, config)
        stages = {s: sum(a.stages_ms[s] for a in answers) for s in MODEL_STAGES if s != "denoise"}
        stages["denoise"] = answers[0].stages_ms["denoise"]
        first, out = answers[0], answers[0].generation
        return StageTimes(sum(a.timings_ms["preprocess_ms"] for a in answers), stages, [s * 1e3 for s in out.step_s],
                          first.visual.n_tokens, first.info["prompt_positions"], out.sample_cache_bytes[0]
                          if out.sample_cache_bytes else 0, first.info["n_forward"], first.ids[0].tolist(),
                          out.compile_s * 1e3)

    def prompt_embeds(self, image: Image.Image) -> torch.Tensor:
        """The LM's prompt embeddings for ``image`` and the question, as evaluation builds them."""
        views = self.path.prepare(image)
        generator = self.pipeline.generator_for("bench/0")
        visual = self.path.encode(views, question_embeds(self.model, self.tokenizer, self.question), generator)
        return self.model.embed_prompt(build_prompt_ids(self.tokenizer, self.question), visual.embeds)


# ---------------------------------------------------------------------------------------------- memory
class RssSampler:
    """Peak CPU RSS over a block, sampled by a thread every ``interval_s`` (tracemalloc misses torch's allocator)."""

    def __init__(self, interval_s: float = 0.002):
        import psutil

        self.process = psutil.Process()
        self.interval_s = interval_s
        self.peak = self.start = 0
        self._stop = threading.Event()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval_s)

    def __enter__(self) -> RssSampler:
        self.start = self.peak = self.process.memory_info().rss
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def delta_gb(self) -> float:
        return (self.peak - self.start) / 2**30


def _malloc_trim() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the delta is then a lower bound
        pass


def measure_peak_memory(fn: Callable[[], object], device: torch.device) -> dict[str, Any]:
    """Peak memory of one call of ``fn``: CUDA max_memory_allocated (reset first), or sampled CPU RSS delta."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        return {"kind": "cuda_max_memory_allocated", "peak_gb": peak / 2**30, "delta_gb": (peak - base) / 2**30}
    _malloc_trim()  # hand freed heap back to the OS, so this call's peak shows up as RSS growth
    with RssSampler() as rss:
        fn()
    return {"kind": "cpu_rss_sampled_2ms", "peak_gb": rss.peak / 2**30, "delta_gb": rss.delta_gb,
            "ru_maxrss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
