"""What one denoising step commits: LaViDa's fixed count per step, or Fast-dLLM's confidence threshold.

Both take the step's logits for a batch of canvases ``[B, gen, vocab]`` and write the committed ids into the
canvas in place. Random draws (Gumbel noise at ``temperature > 0``, random remasking) come from each sample's own
generator, drawn in the shape a batch of one draws, so an answer does not depend on which samples share a batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def uniform_per_sample(shape: tuple[int, ...], generators: Sequence[torch.Generator | None], device: torch.device,
                       active: Sequence[bool] | None = None) -> torch.Tensor:
    """``[B, *shape[1:]]`` float64 uniforms, row ``i`` from ``generators[i]`` (each drawn as a batch of one).

    Rows not ``active`` (a sample whose block is done while others decode) draw nothing, so its generator stays
    where a batch of one would have left it; their values (0.5) are never committed."""
    row = (1, *shape[1:])
    active = [True] * len(generators) if active is None else active
    return torch.cat([torch.rand(row, dtype=torch.float64, device=device, generator=g) if on else
                      torch.full(row, 0.5, dtype=torch.float64, device=device)
                      for g, on in zip(generators, active, strict=True)])


def predictions(logits: torch.Tensor, masked: torch.Tensor, block_end: int, temperature: float, remasking: str,
                generators: Sequence[torch.Generator | None], active: Sequence[bool] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted ids, confidence) per position; confidence is -inf outside the current block's masked slots."""
    logits64 = logits.to(torch.float64)
    if temperature > 0:
        # Gumbel-max in LLaDA's form: exp(logits) / (-log u)^T, in float64.
        u = uniform_per_sample(tuple(logits64.shape), generators, logits.device, active)
        x0 = torch.argmax(logits64.exp() / (-torch.log(u)) ** temperature, dim=-1)
    else:
        x0 = torch.argmax(logits, dim=-1)
    if remasking == "low_confidence":
        confidence = torch.gather(torch.softmax(logits64, dim=-1), -1, x0[..., None])[..., 0]
    else:
        confidence = uniform_per_sample(tuple(x0.shape), generators, x0.device)
    confidence[:, block_end:] = -math.inf
    confidence = torch.where(masked, confidence, torch.full_like(confidence, -math.inf))
    return x0, confidence


def commit_fixed(canvas: torch.Tensor, logits: torch.Tensor, masked: torch.Tensor, block_end: int, k: int,
                 temperature: float, remasking: str, generators: Sequence[torch.Generator | None]) -> None:
    """Commit each sample's ``k`` most confident predictions among masked positions before ``block_end``."""
    x0, confidence = predictions(logits, masked, block_end, temperature, remasking, generators)
    if k <= 0:
        return
    chosen = torch.topk(confidence, k=k, dim=-1).indices
    canvas.scatter_(1, chosen, x0.gather(1, chosen))


def commit_threshold(canvas: torch.Tensor, logits: torch.Tensor, masked: torch.Tensor, block_end: int,
                     threshold: float, active: Sequence[bool], temperature: float,
                     generators: Sequence[torch.Generator | None]) -> None:
    """Fast-dLLM's parallel decoding: commit every masked position of the block whose confidence exceeds
    ``threshold``, and at least the most confident one, in each ``active`` sample."""
    x0, confidence = predictions(logits, masked, block_end, temperature, "low_confidence", generators, active)
    chosen = confidence > threshold
    best = torch.topk(confidence, k=1, dim=-1).indices  # topk, as the fixed rule, so that ties fall alike
    chosen.scatter_(1, best, True)
    chosen &= torch.tensor(list(active), device=chosen.device)[:, None]
    canvas.copy_(torch.where(chosen, x0, canvas))
