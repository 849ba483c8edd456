"""What the generation worker reports: one small dataclass per kind of message, all through one queue."""

from __future__ import annotations

from dataclasses import dataclass

from music_transformer import Note


@dataclass
class Variation:
    """One finished (or cancelled) continuation, in seconds, with the seed that repeats it."""

    number: int
    seed: int
    notes: list[Note]
    start: float
    complete: bool = True


@dataclass(frozen=True)
class NotesWritten:
    """Notes of a variation, as they are written (seconds from the song's start)."""

    variation: int
    notes: list[Note]


@dataclass(frozen=True)
class Progress:
    """How far a variation is written (0..1); variation -1: those behind the heard one (the first), written
    together once it is done."""

    variation: int
    fraction: float


@dataclass(frozen=True)
class Finished:
    """Generation has ended: written to the end, cancelled, or stopped by a failure (said in a Notice)."""

    cancelled: bool = False
    failed: bool = False


@dataclass(frozen=True)
class ModelLoaded:
    """A model is ready: where it came from, a description for the panel, its device, how long it took."""

    source: str
    description: str
    device: str
    seconds: float
    styles: tuple[str, ...] = ()  # the styles it knows (none for models made before styles)


@dataclass(frozen=True)
class LoadFailed:
    """A model could not be loaded (the one loaded before stays)."""

    source: str
    text: str


@dataclass(frozen=True)
class DeviceChanged:
    """The model moved to another device (out of GPU memory: to the CPU)."""

    device: str


@dataclass(frozen=True)
class Notice:
    """Something the musician should read: why generation stopped, where the model runs now."""

    text: str


WorkerMessage = NotesWritten | Progress | Variation | Finished | ModelLoaded | LoadFailed | DeviceChanged | Notice
