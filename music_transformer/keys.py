"""Keys and scales: the Krumhansl-Schmuckler key finder and the pitches a key or a range allows.

The key finder correlates a passage's pitch-class durations with the Krumhansl-Kessler probe-tone
profiles of the 24 major and minor keys (Krumhansl 1990, "Cognitive Foundations of Musical Pitch") and
takes the best. music21 has the same algorithm, but importing music21 takes seconds, too long for a key
shown while the user draws; this is the few lines it needs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .events import NUM_PITCHES, Note

PITCH_CLASS_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
# Krumhansl-Kessler probe-tone ratings, tonic first.
MAJOR_PROFILE = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)
MINOR_PROFILE = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)
# The scales a key lock offers, as semitones above the tonic.
SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),  # natural minor
    "harmonic minor": (0, 2, 3, 5, 7, 8, 11),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "major pentatonic": (0, 2, 4, 7, 9),
    "minor pentatonic": (0, 3, 5, 7, 10),
    "blues": (0, 3, 5, 6, 7, 10),
}
PIANO_RANGE = (21, 108)  # A0 to C8, the 88 keys


@dataclass(frozen=True)
class Key:
    """A tonic (pitch class 0..11, 0 = C) and a scale name from `SCALES`."""

    tonic: int
    scale: str = "major"

    def __post_init__(self) -> None:
        if not 0 <= self.tonic < 12:
            raise ValueError(f"a tonic is a pitch class 0..11, not {self.tonic}")
        if self.scale not in SCALES:
            raise ValueError(f"unknown scale {self.scale!r}; choose from {', '.join(SCALES)}")

    @property
    def name(self) -> str:
        """E.g. "A minor", "Eb major"."""
        return f"{PITCH_CLASS_NAMES[self.tonic]} {self.scale}"

    def pitch_classes(self) -> frozenset[int]:
        """The pitch classes of the scale."""
        return frozenset((self.tonic + step) % 12 for step in SCALES[self.scale])


_LETTERS = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}


def parse_key(text: str) -> Key:
    """A key from its name: a tonic (C, F#, Bb, c#...) and a scale from `SCALES` ("D minor", "eb major")."""
    tonic, _, scale = text.strip().partition(" ")
    letter, accidentals = tonic[:1].lower(), tonic[1:]
    if letter not in _LETTERS or any(a not in "#b" for a in accidentals):
        raise ValueError(f"{text!r} is not a key: write a tonic and a scale, e.g. 'D minor' or 'Eb major'")
    pitch_class = (_LETTERS[letter] + accidentals.count("#") - accidentals.count("b")) % 12
    return Key(pitch_class, " ".join(scale.lower().split()) or "major")


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    scale = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum()) / scale if scale else 0.0


def key_scores(notes: Iterable[Note]) -> list[tuple[float, Key]]:
    """Every major and minor key with its correlation to the notes' pitch-class durations, best first."""
    durations = np.zeros(12)
    for note in notes:
        durations[note.pitch % 12] += max(note.end - note.start, 0.0)
    scores = []
    for tonic in range(12):
        for scale, profile in (("major", MAJOR_PROFILE), ("minor", MINOR_PROFILE)):
            scores.append((_correlation(durations, np.roll(np.asarray(profile), tonic)), Key(tonic, scale)))
    scores.sort(key=lambda item: -item[0])
    return scores


def detect_key(notes: Sequence[Note]) -> Key | None:
    """The likeliest key of a passage (Krumhansl-Schmuckler), or None when it has no notes."""
    if not any(note.end > note.start for note in notes):
        return None
    return key_scores(notes)[0][1]


def allowed_pitches(key: Key | None = None, lowest: int = 0, highest: int = NUM_PITCHES - 1) -> frozenset[int]:
    """The MIDI pitches in [lowest, highest] that belong to `key` (every pitch there without a key)."""
    if not 0 <= lowest <= highest < NUM_PITCHES:
        raise ValueError(f"a pitch range runs from low to high within 0..127, not {lowest}..{highest}")
    classes = key.pitch_classes() if key is not None else frozenset(range(12))
    return frozenset(pitch for pitch in range(lowest, highest + 1) if pitch % 12 in classes)


_SHARP_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_PITCH_NAME = re.compile(r"\s*([A-Ga-g])\s*([#b]?)\s*(-?\d+)\s*$")


def pitch_name(pitch: int) -> str:
    """A MIDI pitch's name: C4 is middle C (60), A0 the piano's lowest key (21)."""
    return f"{_SHARP_NAMES[pitch % 12]}{pitch // 12 - 1}"


def parse_pitch(text: str) -> int | None:
    """A pitch from a note name ("C4" is 60, "A#0", "Bb3") or a MIDI number; None if it is neither (or off
    MIDI's 0..127)."""
    text = text.strip()
    if text.isdigit():
        pitch = int(text)
    else:
        match = _PITCH_NAME.match(text)
        if match is None:
            return None
        letter, accidental, octave = match.groups()
        pitch_class = PITCH_CLASS_NAMES.index(letter.upper()) + {"#": 1, "b": -1, "": 0}[accidental]
        pitch = (int(octave) + 1) * 12 + pitch_class
    return pitch if 0 <= pitch < NUM_PITCHES else None


def parse_pitch_range(text: str) -> tuple[int, int]:
    """A range of pitches from "LOW:HIGH" (names or MIDI numbers, both kept: "C4:C8", "21:59"); ValueError
    saying what is wrong otherwise."""
    low_text, colon, high_text = text.partition(":")
    low, high = parse_pitch(low_text), parse_pitch(high_text)
    if not colon or low is None or high is None:
        raise ValueError(f"a pitch range is two notes with a colon between, e.g. C4:C8 or 21:59, not {text!r}")
    if low > high:
        raise ValueError(f"a pitch range runs from low to high: {text!r} starts above where it ends")
    return low, high
