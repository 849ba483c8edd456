"""Audio export: the song rendered through FluidSynth into a WAV file, faster than real time, with progress."""

from __future__ import annotations

import os
import threading
import wave
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from music_transformer import Note
from music_transformer.midi import atomic_write

from .scheduler import NOTE_ON, note_events
from .sinks import SAMPLE_RATE, SinkError, _new_synth

BLOCK = 1024  # frames rendered between progress reports and cancel checks
TAIL_SECONDS = 2.0  # room for the last notes' release and reverb
SILENCE = 4  # 16-bit sample level under which the tail counts as silent


class RenderCancelled(Exception):  # noqa: N818 - a cancellation, not an error
    """The export was cancelled; nothing was written."""


def render_wav(
    notes: Sequence[Note],
    path: str | os.PathLike,
    soundfont: str | os.PathLike | None = None,
    program: int = 0,
    progress: Callable[[float], None] | None = None,
    cancel: threading.Event | None = None,
    tail: float = TAIL_SECONDS,
) -> float:
    """Renders notes (seconds) to a 16-bit stereo 44.1 kHz WAV file, atomically; returns its length in seconds.

    Raises SinkError when FluidSynth or a soundfont is missing, RenderCancelled when `cancel` is set.
    """
    _, synth, _ = _new_synth(soundfont, program, gain=0.6)
    try:
        audio = _render(synth, note_events(notes), progress, cancel, tail)
    finally:
        synth.delete()
    data = audio.astype("<i2").tobytes()

    def write(handle) -> None:
        with wave.open(handle, "wb") as out:
            out.setnchannels(2)
            out.setsampwidth(2)
            out.setframerate(SAMPLE_RATE)
            out.writeframes(data)

    atomic_write(Path(path), write)
    return len(audio) / SAMPLE_RATE


def _render(synth, events, progress, cancel, tail: float) -> np.ndarray:
    end = max((event[0] for event in events), default=0.0)
    total_frames = int((end + tail) * SAMPLE_RATE)
    blocks: list[np.ndarray] = []
    frame = 0
    index = 0
    while frame < total_frames:
        if cancel is not None and cancel.is_set():
            raise RenderCancelled("the export was cancelled")
        block_end = frame + BLOCK
        # Events that fall inside this block start it, so timing is exact to one block (23 ms) at worst;
        # split the block at each event instead, so that every note starts on its own sample.
        while index < len(events) and events[index][0] * SAMPLE_RATE < block_end:
            at = int(round(events[index][0] * SAMPLE_RATE))
            if at > frame:
                blocks.append(np.asarray(synth.get_samples(at - frame)).reshape(-1, 2))
                frame = at
            _, kind, pitch, velocity, channel = events[index]
            if kind == NOTE_ON:
                synth.noteon(channel, pitch, max(1, velocity))
            else:
                synth.noteoff(channel, pitch)
            index += 1
        if block_end > frame:
            blocks.append(np.asarray(synth.get_samples(block_end - frame)).reshape(-1, 2))
            frame = block_end
        if progress is not None:
            progress(min(1.0, frame / max(1, total_frames)))
    audio = np.concatenate(blocks) if blocks else np.zeros((0, 2), np.int16)
    # Trim the tail's silence after the last sound, keeping a short fade room.
    loud = np.flatnonzero(np.abs(audio).max(axis=1) > SILENCE) if len(audio) else np.array([])
    last = int(loud[-1]) + SAMPLE_RATE // 10 if len(loud) else int(end * SAMPLE_RATE)
    return audio[: max(min(len(audio), last), int(end * SAMPLE_RATE))]


__all__ = ["render_wav", "RenderCancelled", "SinkError"]
