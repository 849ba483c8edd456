"""What the studio accepts, in one place: session files, autosave journal lines and the view are checked against
these numbers where they are read (session.py, autosave.py, the roll's state and the transport), and anything
past them is refused in words, never half-read. Where a limit is the model library's, it is that one.

The bounds are far past anything a musician makes, and near enough that the largest accepted song is read in
seconds, drawn without overflow and exported as MIDI.
"""

from __future__ import annotations

from collections.abc import Callable

from music_transformer.limits import (
    MAX_BPM,
    MAX_MIDI_NOTES,
    MAX_PIECE_SECONDS,
    MAX_PITCH,
    MAX_REPETITION_PENALTY,
    MAX_TEMPERATURE,
    MAX_TOP_K,
    MAX_TOP_P,
    MAX_VARIATIONS,
    MAX_VELOCITY,
    MIN_BPM,
    MIN_PITCH,
    MIN_REPETITION_PENALTY,
    MIN_TEMPERATURE,
    MIN_TOP_K,
    MIN_TOP_P,
    MIN_VELOCITY,
)

# --- the song ---------------------------------------------------------------------------------------------
MIN_TEMPO, MAX_TEMPO = MIN_BPM, MAX_BPM
# A note ends within the longest piece the library reads or writes (two hours) at the song's own tempo
# (`beat_limit`): at most 48,000 beats, at the fastest tempo. Every edit is held to it (Song.check_diff) and the
# session reader checks the same, so any song the studio keeps is one it can draw, save, read back, export and
# continue. The playhead, the loop and the view stay within MAX_BEATS.
MAX_BEATS = MAX_PIECE_SECONDS * MAX_TEMPO / 60.0
MIN_NOTE_BEATS = 1e-3  # the shortest note (notes.MIN_LENGTH)
MAX_NOTES = 2 * MAX_MIDI_NOTES  # the longest MIDI file read, and as much again written after it
MAX_NOTE_ID = 2**53  # ids count up by one a note; past this a JSON number no longer holds them exactly
MAX_NUMERATOR = 32  # beats in a bar


def beat_limit(tempo: float) -> float:
    """The last beat a song at `tempo` (BPM) may reach: the longest piece the library reads, writes and continues
    (two hours) at that tempo, so that every song the studio keeps exports and continues. At the fastest tempo
    it is MAX_BEATS; at the slowest, 2,400 beats."""
    return min(MAX_BEATS, MAX_PIECE_SECONDS * tempo / 60.0)


def past_the_end(end_beat: float, tempo: float, seconds: float | None = None, last_beat: float | None = None) -> str:
    """Why a song that would reach `end_beat` at `tempo` is refused, in words; for a song whose tempo changes,
    `seconds` is how long it would last and `last_beat` its limit through its tempo map."""
    if seconds is None or last_beat is None:
        seconds, last_beat, at = end_beat * 60.0 / tempo, beat_limit(tempo), f"at {tempo:g} BPM"
    else:
        at = "at its tempi"
    return (
        f"The song would end at beat {end_beat:,.0f}, {seconds / 3600:,.1f} hours {at}; Continuo keeps songs "
        f"of up to {MAX_PIECE_SECONDS / 3600:g} hours (beat {last_beat:,.0f} {at})"
    )


def map_beat_limit(beats_at: Callable[[float], float]) -> float:
    """The last beat of a song whose tempo map gives the beat at a time (`TempoMap.beats`): two hours in."""
    return min(MAX_BEATS, beats_at(MAX_PIECE_SECONDS))


DENOMINATORS = (1, 2, 4, 8, 16, 32)  # the note value of the beat
# A tempo map: a performance mapped beat by beat has a change a beat (a few thousand); these are far past that.
MAX_TEMPO_CHANGES = 100_000
MAX_METRE_CHANGES = 10_000

# --- the generation settings ------------------------------------------------------------------------------
# The sampling bounds are the model library's (imported above), the ones generate() enforces (the repetition
# penalty's among them).
# Sessions saved before the bounds were shared hold a top-k of up to 1,000; past MAX_TOP_K (the vocabulary)
# it kept every event, so such a top-k reads as off.
MAX_SESSION_TOP_K = 1000

# --- files ------------------------------------------------------------------------------------------------
MAX_SESSION_BYTES = 100 * 1024 * 1024  # a session or snapshot: 200,000 notes are 10 MB, eight full variations 50 more
MAX_JOURNAL_BYTES = MAX_SESSION_BYTES  # an autosave journal: the edits of a few seconds, or one big import
# A journal holds the edits since the last snapshot (a few seconds: a take at 1,000 messages a second writes
# 3,000 lines); a restore reads at most this many lines of it (about a second), and keeps the journal aside for
# the rest.
MAX_JOURNAL_LINES = 100_000
MAX_SETTINGS_BYTES = 1024 * 1024  # settings.json: a few preferences and ten recent files
MAX_TEXT_CHARS = 4096  # a model's name or path, a document's path

__all__ = [
    "MAX_BEATS", "MAX_JOURNAL_BYTES", "MAX_JOURNAL_LINES", "MAX_NOTES", "MAX_NOTE_ID", "MAX_NUMERATOR",
    "MAX_PIECE_SECONDS", "MAX_PITCH", "MAX_REPETITION_PENALTY", "MAX_SESSION_BYTES", "MAX_SESSION_TOP_K",
    "MAX_SETTINGS_BYTES", "MAX_TEMPERATURE", "MAX_TEMPO", "MAX_TEXT_CHARS", "MAX_TOP_K", "MAX_TOP_P", "MAX_VARIATIONS",
    "MAX_VELOCITY", "MIN_NOTE_BEATS", "MIN_PITCH", "MIN_REPETITION_PENALTY", "MIN_TEMPERATURE", "MIN_TEMPO",
    "MIN_TOP_K", "MIN_TOP_P", "MIN_VELOCITY", "DENOMINATORS", "MAX_METRE_CHANGES", "MAX_TEMPO_CHANGES", "beat_limit",
    "map_beat_limit", "past_the_end",
]  # fmt: skip
