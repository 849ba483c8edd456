"""What the worker is asked to write (a Continue, Fill or Accompany, a duet's answer), and the settings it is read
from: the music it reads, the key and range it keeps to, how to sample."""

from __future__ import annotations

import queue
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from music_transformer import Note
from music_transformer.events import encode, is_note_off, split_at, to_ticks
from music_transformer.keys import Key, allowed_pitches, detect_key

from ..playback.scheduler import LiveFeed
from ..song import ANY_STYLE, GenerationSettings


def primer_until(notes: Sequence[Note], start: float) -> list[int]:
    """The tokens of the music before `start` seconds, ending exactly there: notes sounding across it are
    still sounding when the model takes over (the model may end them; the song keeps them as they are), and
    notes that end at `start` have ended, as in the file `music-transformer generate` reads."""
    primer, rest = split_at(encode(notes), to_ticks(start))
    closing = 0
    while closing < len(rest) and is_note_off(rest[closing]):  # the note-offs at `start` itself
        closing += 1
    return primer + rest[:closing]


def key_for(settings: GenerationSettings, context: Sequence[Note]) -> Key | None:
    """The key a continuation keeps to: none, the chosen one, or the one detected in the music it reads."""
    if settings.key_mode == "chosen":
        return Key(settings.key_tonic, settings.key_scale)
    if settings.key_mode == "motif":
        return detect_key(context)
    return None


def pitches_for(settings: GenerationSettings, context: Sequence[Note]) -> frozenset[int]:
    """The pitches a continuation may use: those of its key (if locked) within the pitch range."""
    return allowed_pitches(key_for(settings, context), settings.lowest, settings.highest)


def velocity_range(settings: GenerationSettings, context: Sequence[Note]) -> tuple[int, int] | None:
    """The velocities written notes keep to: the motif's range with dynamics matched to it, else any."""
    if settings.dynamics != "motif" or not context:
        return None
    velocities = [note.velocity for note in context]
    return min(velocities), max(velocities)


@dataclass
class GenerationRequest:
    """One press of Continue or Fill: the music it reads, where it writes and for how long, how to sample, how many.

    A continuation reads `motif` (the music before `start`) and writes from `start`; a fill (`after` given)
    reads `motif` as the music before the gap and `after` as the music from its end, and writes the gap
    [start, start + seconds); an accompaniment (`keep` given) writes in `write_range` over [start, start +
    seconds), hearing each kept note at its own time.
    """

    motif: list[Note]  # seconds from the song's start
    start: float  # seconds: the continuation begins here (the motif's end, the playhead, the gap's start)
    seconds: float
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seeds: list[int] = field(default_factory=lambda: [random.randrange(2**31)])
    live: LiveFeed | None = None  # the first variation streams here for playback
    repetition_penalty: float = 0.0  # a continuation's (generate()'s): what a repeated strike or loop costs
    style: str = ANY_STYLE  # the idiom to continue in (a model made before styles ignores it)
    after: list[Note] | None = None  # a fill: the music after the gap (seconds from the song's start)
    allowed_pitches: frozenset[int] | None = None  # the key lock and the pitch range (None: every pitch)
    grid: float | None = None  # seconds: written notes start and end on this grid
    velocities: tuple[int, int] | None = None  # written velocities stay within (low, high)
    held: list[Note] = field(
        default_factory=list
    )  # notes sounding across `start`, written again as the model ends them
    release_seconds: float = 0.0  # the last seconds start no note: the phrase ends at `seconds` (a bar line)
    keep: list[Note] | None = None  # Accompany: the notes kept as they are, fed to the model at their own times
    write_range: frozenset[int] | None = None  # Accompany: the pitches the new part is written in


@dataclass
class AnswerRequest:
    """One answer of the duet: the duet so far as tokens, how long to answer and how to sample.

    The worker streams it into `live` from its first note (the answer sounds at once, after the pause) and
    reports its notes, then Finished, to `replies`, the duet's own queue: the controller never sees them.
    `cancel` (the musician playing again) stops it; `started` is set when the worker begins it.
    """

    primer: list[int]
    seconds: float
    live: LiveFeed
    cancel: threading.Event
    replies: queue.Queue = field(default_factory=queue.Queue)
    temperature: float = 1.0
    top_p: float | None = 0.95
    seed: int | None = None
    style: str = ANY_STYLE  # the idiom to answer in (a model made before styles ignores it)
    allowed_pitches: frozenset[int] | None = None  # the key lock and the pitch range (None: every pitch)
    started: threading.Event = field(default_factory=threading.Event)
