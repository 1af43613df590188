"""Seeded random generators: every random draw of a call comes from its own generator.

The global torch RNG is never touched, so calls on several threads stay reproducible.
"""
from __future__ import annotations

import torch


def make_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A private RNG on `device`: seeded with `seed`, or from OS entropy when None."""
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(int(seed))
    return generator
