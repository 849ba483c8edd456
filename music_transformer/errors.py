"""The library's exceptions; their messages are meant for musicians, not for programmers."""


class ContinuoError(Exception):
    """Base of every error the model library raises on purpose."""


class MidiFileError(ContinuoError):
    """A MIDI file that cannot be read or written; the message names the file and the problem."""


class CheckpointError(ContinuoError):
    """A model checkpoint that is missing, damaged or from an incompatible version."""


class GenerationError(ContinuoError):
    """A model that loads but cannot write music: its scores are not numbers, or it writes event after event
    with no time passing (a damaged checkpoint, or a sampler gone wrong)."""


class DataError(ContinuoError):
    """A data source that cannot be used: a missing folder, no music in it, an unknown corpus part."""
