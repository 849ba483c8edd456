"""`music-transformer bench`: the model core's benchmarks (see `music_transformer.bench`)."""

from __future__ import annotations

from ..bench import main

__all__ = ["main"]
