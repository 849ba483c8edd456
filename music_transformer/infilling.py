"""Fill-in-the-middle: the music of a gap between two passages, in the gap's exact length.

The model reads what comes after the gap, then what comes before (`events.fim_context`), and writes the
gap's contents through the same loop as a continuation (`continuation.stream`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence

from . import events
from .continuation import stream
from .events import NOTE_OFF_OFFSET, Note, encode, is_note_off, shift_ticks
from .model import MusicTransformer
from .performance import Performance, forbidden_note_ons
from .sampling import DEFAULT_MAX_NOTE_SECONDS, Cancel, Sampling


def infill(model: MusicTransformer, before: Sequence[Note], after: Sequence[Note], start: float, end: float, *,
           style: str = "any", temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
           seed: int | None = None, cancel: Cancel = None, max_tokens: int | None = None,
           max_note_seconds: float | None = DEFAULT_MAX_NOTE_SECONDS, window: int | None = None,
           cpu_threads: int | None = 1, allowed_pitches: Iterable[int] | None = None) -> Iterator[int]:
    """Fills the gap [`start`, `end`) seconds between `before` and `after`, yielding each token as it is sampled.

    The tokens run from `start` (decode them with `continuation_notes(tokens, start, before)`): the new notes all
    begin in the gap and end by `end`, and the stream stops exactly there. Notes of `before` that sound
    across `start` stay as they are: their note-offs come in the stream when they are due, and new
    notes never restrike them while they sound. `before` is the music that starts before `start` and
    `after` what starts at `end` or later (on the 10 ms grid); notes that start inside the gap are the
    ones being replaced and are not read.

    The model reads the whole context in one window: what follows the gap (up to a third of the room),
    then as much as fits of what precedes it, leaving room for the gap's own tokens (about 48 a second).
    Needs a model trained to fill gaps (`events.has_styles`); the sampling arguments (`allowed_pitches`
    too) are those of `generate`, checked when it is called.
    """
    config = model.config
    if not events.has_styles(config.vocab_size):
        raise ValueError("this model cannot fill gaps (it was made before infilling); use the bundled model")
    for name, value in (("start", start), ("end", end)):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"the gap's {name} must be a time of 0 seconds or more, not {value!r}")
    first, last = events.to_ticks(start), events.to_ticks(end)
    if last <= first:
        raise ValueError(f"the gap must end after it starts (from {start:.3f} s to {end:.3f} s)")
    sampling = Sampling.checked(model, temperature, top_k, top_p, [seed], window, max_tokens,
                                (last - first) / 100, max_note_seconds, cpu_threads, style)
    forbidden = forbidden_note_ons(allowed_pitches)
    before_tokens = encode([note for note in before if events.to_ticks(note.start) < first])
    suffix = encode([Note(note.pitch, note.velocity, note.start - end, note.end - end)
                     for note in after if events.to_ticks(note.start) >= last])
    prefix, rest = events.split_at(before_tokens, first)
    due: dict[int, int | None] = {}  # the notes of `before` sounding on: pitch -> tick of their note-off
    now = 0
    for token in rest:
        now += shift_ticks(token)
        if is_note_off(token):
            due[token - NOTE_OFF_OFFSET] = now if now < last - first else None
    room = max(0, sampling.window - len(events.fim_context(style, last - first, [], [])))
    room -= min(room // 2, max(64, 48 * (last - first) // 100))  # kept for the gap's own tokens
    suffix = suffix[:room // 3]
    prefix = prefix[max(0, len(prefix) - (room - len(suffix))):]
    performance = Performance(config.vocab_size, forbidden)
    for token in prefix:
        performance.update(token)
    performance.hand_over(due)
    context = events.fim_context(style, last - first, suffix, prefix)
    return (token for _, token in stream(model, context, [performance], sampling, cancel))
