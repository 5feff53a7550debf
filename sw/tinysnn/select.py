"""Model selection by tinySNN's reward: ``R = accuracy - mu * (memory / FP32 memory)``.

A candidate is a mapping with at least ``name``, ``accuracy`` (0..1) and ``memory_bits``;
``fp32_memory_bits`` is the memory of the same network in FP32.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence
from ttsnn.sw.cli_util import UserError

__all__ = ["reward", "select", "pareto_front"]


def reward(accuracy: float, memory_bits: float, fp32_memory_bits: float, mu: float) -> float:
    if mu < 0:
        raise UserError(f"mu must be >= 0, got {mu}")
    if fp32_memory_bits <= 0:
        raise UserError(f"the FP32 memory must be > 0, got {fp32_memory_bits}")
    return float(accuracy) - float(mu) * float(memory_bits) / float(fp32_memory_bits)


def _check(candidates: Sequence[Mapping[str, Any]]) -> None:
    if not candidates:
        raise UserError("no candidates to select from")
    for i, c in enumerate(candidates):
        for key in ("name", "accuracy", "memory_bits", "fp32_memory_bits"):
            if key not in c:
                raise UserError(f"candidate {i} lacks {key!r} (has {sorted(c)})")


def select(candidates: Sequence[Mapping[str, Any]], mus: Iterable[float]) -> list[dict[str, Any]]:
    """For every ``mu``: the candidate with the highest reward (ties: the smaller memory, then the
    first listed), with its reward."""
    _check(candidates)
    out = []
    for mu in mus:
        scored = [(reward(c["accuracy"], c["memory_bits"], c["fp32_memory_bits"], mu), -c["memory_bits"], -i)
                  for i, c in enumerate(candidates)]
        best = max(scored)
        c = candidates[-best[2]]
        out.append({"mu": float(mu), "name": c["name"], "reward": best[0], "accuracy": c["accuracy"],
                    "memory_bits": c["memory_bits"], "memory_ratio": c["memory_bits"] / c["fp32_memory_bits"]})
    return out


def pareto_front(candidates: Sequence[Mapping[str, Any]]) -> list[int]:
    """Indices of the candidates no other one beats on both accuracy (higher) and memory
    (lower) while being at least as good on the other; sorted by memory."""
    _check(candidates)
    front = []
    for i, c in enumerate(candidates):
        dominated = any(
            (o["accuracy"] >= c["accuracy"] and o["memory_bits"] <= c["memory_bits"]
             and (o["accuracy"] > c["accuracy"] or o["memory_bits"] < c["memory_bits"]))
            for j, o in enumerate(candidates) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (candidates[i]["memory_bits"], -candidates[i]["accuracy"]))
