"""How a continuation is written, and the variations kept to pick from: `GenerationSettings` (the Continue
panel edits them, the song and its session file keep them) and `VariationSet`, the variations one Continue or
Fill wrote. Both check what they read from a file against the studio's limits (limits.py), whose sampling
bounds are the model library's: the ones `generate()` enforces and the panel and the command line read.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

from music_transformer.events import STYLES
from music_transformer.keys import PIANO_RANGE, SCALES
from music_transformer.limits import DEFAULT_REPETITION_PENALTY, check_seed

from .limits import (
    MAX_BEATS,
    MAX_NOTE_ID,
    MAX_NOTES,
    MAX_REPETITION_PENALTY,
    MAX_SESSION_TOP_K,
    MAX_TEMPERATURE,
    MAX_TOP_K,
    MAX_TOP_P,
    MAX_VARIATIONS,
    MIN_NOTE_BEATS,
    MIN_REPETITION_PENALTY,
    MIN_TEMPERATURE,
    MIN_TOP_K,
    MIN_TOP_P,
)

MAX_LENGTH = 10_000  # bars or seconds (the panel offers far less)
ANY_STYLE = STYLES[0]  # "any": no idiom named, the model tells from the music
KEY_MODES = ("off", "motif", "chosen")  # no key lock; the key detected in the music before; a key chosen
DYNAMICS = ("model", "motif")  # velocities as the model writes them; kept within the motif's range


@dataclass(frozen=True)
class GenerationSettings:
    """How the continuation is sampled; the generation panel edits these, the session file keeps them."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 0.95
    # How long a continuation is, in `length_unit`: bars (each as long as the metre where it falls) or seconds.
    # Kept in the musician's unit, so that a song of another metre or tempo (a file opened) leaves it as it was.
    length: float = 4.0
    seed: int | None = None
    variations: int = 1  # continuations written per Continue, to audition and pick one
    length_unit: str = "bars"  # "bars" or "seconds"
    # "most_likely" (beam search) left the panel: it looped or sat on a few pitches; an older session's reads as off
    repetition_penalty: float = DEFAULT_REPETITION_PENALTY  # what a repeated strike or loop costs (0: off)
    style: str = ANY_STYLE  # the idiom to continue in (music_transformer.events.STYLES); "any": the model tells
    key_mode: str = "off"  # KEY_MODES: with a lock, no note outside the key's scale is written
    key_tonic: int = 0  # the chosen key's tonic, a pitch class (0 = C)
    key_scale: str = "major"  # the chosen key's scale (music_transformer.keys.SCALES)
    lowest: int = PIANO_RANGE[0]  # the lowest and highest pitch written (default the piano's 88 keys)
    highest: int = PIANO_RANGE[1]
    snap: bool = False  # written notes start and end on the roll's grid
    dynamics: str = "model"  # DYNAMICS
    keep_existing: bool = False  # Fill and Continue from Playhead keep the notes in their way (only add)
    end_at_bar: bool = True  # a continuation ends at a bar line, its last beat releasing what sounds

    def to_dict(self) -> dict:
        """Plain values for JSON."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, beats_per_bar: float = 4.0, tempo: float = 120.0) -> GenerationSettings:
        """Settings from JSON values; unknown keys are ignored, missing ones take their defaults.

        Settings saved before the length was kept in its unit hold `length_beats`: it is read in the bars
        (`beats_per_bar` long) or at the `tempo` of the song they were saved with."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        beats = data.get("length_beats")
        if "length" not in data and isinstance(beats, (int, float)) and not isinstance(beats, bool):
            bars = data.get("length_unit", "bars") == "bars"
            values["length"] = round(beats / beats_per_bar if bars else beats * 60.0 / tempo, 6)
        settings = cls(**values)
        if not (MIN_TEMPERATURE <= float(settings.temperature) <= MAX_TEMPERATURE):
            raise ValueError(
                f"temperature {settings.temperature} is outside {MIN_TEMPERATURE:g}..{MAX_TEMPERATURE:g} "
                "(0: the likeliest event every step)"
            )
        if not (MIN_TOP_K <= int(settings.top_k) <= MAX_SESSION_TOP_K):
            raise ValueError(f"top-k {settings.top_k} is outside {MIN_TOP_K}..{MAX_TOP_K} (0: off)")
        if not (MIN_TOP_P < float(settings.top_p) <= MAX_TOP_P):
            raise ValueError(f"top-p {settings.top_p} must be above {MIN_TOP_P:g} and at most {MAX_TOP_P:g}")
        penalty = settings.repetition_penalty
        if (
            isinstance(penalty, bool)
            or not isinstance(penalty, (int, float))
            or not (MIN_REPETITION_PENALTY <= penalty <= MAX_REPETITION_PENALTY)
        ):
            raise ValueError(
                f"the repetition penalty {penalty!r} is outside {MIN_REPETITION_PENALTY:g}..{MAX_REPETITION_PENALTY:g}"
            )
        length = settings.length
        if isinstance(length, bool) or not isinstance(length, (int, float)) or not 0.0 < length <= MAX_LENGTH:
            raise ValueError(f"length {length!r} {settings.length_unit} is out of range")
        if settings.seed is not None:
            check_seed(settings.seed)  # the library's own check: every seed kept is one generate() takes
        if not (isinstance(settings.variations, int) and 1 <= settings.variations <= MAX_VARIATIONS):
            raise ValueError(f"{settings.variations} variations: choose 1 to {MAX_VARIATIONS}")
        if settings.length_unit not in ("bars", "seconds"):
            raise ValueError(f"unknown length unit {settings.length_unit!r}")
        if settings.style not in STYLES:
            raise ValueError(f"unknown style {settings.style!r}")
        if settings.key_mode not in KEY_MODES:
            raise ValueError(f"unknown key lock {settings.key_mode!r}")
        if not (isinstance(settings.key_tonic, int) and 0 <= settings.key_tonic < 12):
            raise ValueError(f"key tonic {settings.key_tonic!r} is not a pitch class 0..11")
        if settings.key_scale not in SCALES:
            raise ValueError(f"unknown scale {settings.key_scale!r}")
        pitches = (settings.lowest, settings.highest)
        if not (all(isinstance(p, int) for p in pitches) and 0 <= settings.lowest <= settings.highest <= 127):
            raise ValueError(f"pitch range {settings.lowest!r}..{settings.highest!r} is not within 0..127")
        if not all(isinstance(value, bool) for value in (settings.snap, settings.keep_existing, settings.end_at_bar)):
            raise ValueError("snap, keep_existing and end_at_bar are true or false")
        if settings.dynamics not in DYNAMICS:
            raise ValueError(f"unknown dynamics {settings.dynamics!r}")
        if int(settings.top_k) > MAX_TOP_K:  # an older session's top-k past the vocabulary: it kept every event
            settings = dataclasses.replace(settings, top_k=0)  # 0: off, the same in effect
        return settings


MAX_VARIATION_NOTES = 200_000  # notes in one variation of a session file


class VariationNote(NamedTuple):
    """A note of a variation kept aside: pitch, velocity, start and length in beats."""

    pitch: int
    velocity: int
    start: float
    length: float


@dataclass(frozen=True)
class WrittenVariation:
    """One variation as written: its seed and its notes (in beats)."""

    number: int
    seed: int
    notes: tuple[VariationNote, ...]
    complete: bool = True  # False: cut short (cancelled)

    def to_dict(self) -> dict:
        """Plain values for JSON."""
        notes = [[pitch, velocity, round(start, 9), round(length, 9)] for pitch, velocity, start, length in self.notes]
        return {"number": self.number, "seed": self.seed, "complete": self.complete, "notes": notes}

    @classmethod
    def from_dict(cls, data: dict) -> WrittenVariation:
        """A variation from JSON values, checked."""
        number, seed = data["number"], data["seed"]
        if isinstance(number, bool) or not (isinstance(number, int) and 0 <= number < MAX_VARIATIONS):
            raise ValueError(f"a variation is numbered {str(number)[:20]}, not 0 to {MAX_VARIATIONS - 1}")
        check_seed(seed, f"the seed of variation {number + 1}")
        rows = data["notes"]
        if not isinstance(rows, list) or len(rows) > MAX_VARIATION_NOTES:
            raise ValueError(f"variation {number + 1} holds too many notes")
        notes = []
        for pitch, velocity, start, length in rows:
            pitch, velocity, start, length = int(pitch), int(velocity), float(start), float(length)
            # within the song's limits: a note a pick puts in the song is one its session reads back
            if not (
                0 <= pitch <= 127
                and 1 <= velocity <= 127
                and 0 <= start <= MAX_BEATS
                and MIN_NOTE_BEATS <= length <= MAX_BEATS
                and start + length <= MAX_BEATS + 1e-6
            ):
                raise ValueError(f"a note of variation {number + 1} has pitch {pitch}, starts at {start:g} beats")
            notes.append(VariationNote(pitch, velocity, start, length))
        return cls(number, seed, tuple(notes), bool(data.get("complete", True)))


@dataclass(frozen=True)
class VariationSet:
    """The variations written by one Continue or Fill, to audition and pick from until the continuation they
    were written for is accepted or discarded. Kept in the session; outside the undo history."""

    kind: str  # "continue", "fill" or "accompany"
    start: float  # beats: where they begin (a pick is heard from here)
    count: int  # how many were asked for
    settings: GenerationSettings
    variations: tuple[WrittenVariation, ...] = ()
    chosen: int = 0
    owned: frozenset[int] = (
        frozenset()
    )  # ids of the notes the set put in the song; live while one is a continuation note

    def variation(self, number: int) -> WrittenVariation | None:
        """The variation with this number, if it was written."""
        return next((variation for variation in self.variations if variation.number == number), None)

    def to_dict(self) -> dict:
        """Plain values for JSON."""
        return {
            "kind": self.kind,
            "start": self.start,
            "count": self.count,
            "settings": self.settings.to_dict(),
            "chosen": self.chosen,
            "owned": sorted(self.owned),
            "variations": [variation.to_dict() for variation in self.variations],
        }

    @classmethod
    def from_dict(cls, data: dict) -> VariationSet:
        """A set from JSON values, checked (ValueError, KeyError or TypeError names what is wrong)."""
        kind, count, chosen = data["kind"], data["count"], data.get("chosen", 0)
        if kind not in ("continue", "fill", "accompany"):
            raise ValueError(f"variations of an unknown kind {kind!r}")
        if not (isinstance(count, int) and 1 <= count <= MAX_VARIATIONS):
            raise ValueError(f"{str(count)[:20]} variations")
        if isinstance(chosen, bool) or not (isinstance(chosen, int) and 0 <= chosen < MAX_VARIATIONS):
            raise ValueError(f"variation {str(chosen)[:20]} is chosen, not 0 to {MAX_VARIATIONS - 1}")
        start = float(data["start"])
        if not 0 <= start <= MAX_BEATS:
            raise ValueError(f"variations start at {start:g} beats")
        variations = tuple(WrittenVariation.from_dict(dict(item)) for item in data["variations"])
        if len(variations) > count or len({variation.number for variation in variations}) != len(variations):
            raise ValueError("the variations are repeated")
        owned_ids = data.get("owned", [])
        if not isinstance(owned_ids, list) or len(owned_ids) > MAX_NOTES:
            raise ValueError("the variations' notes are not a list of note ids")
        for note_id in owned_ids:
            if isinstance(note_id, bool) or not (isinstance(note_id, int) and 1 <= note_id <= MAX_NOTE_ID):
                raise ValueError(f"a variation's note id is {str(note_id)[:20]}, not 1 to {MAX_NOTE_ID:,}")
        owned = frozenset(owned_ids)
        settings = GenerationSettings.from_dict(dict(data["settings"]))
        return cls(kind, start, count, settings, variations, chosen, owned)
