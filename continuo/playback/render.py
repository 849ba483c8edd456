"""Audio export: the song rendered through FluidSynth into a WAV file, faster than real time, with progress.

The synth renders in floating point; the whole piece is then brought to its level (by default its loudest
peak at -1 dBFS, or a fixed gain) and written as 16-bit samples, so a quiet piece is not exported quiet.
"""

from __future__ import annotations

import ctypes
import math
import os
import threading
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from music_transformer import Note
from music_transformer.files import atomic_write

from ..backends.base import SinkError
from ..backends.fluidsynth import SAMPLE_RATE, new_synth
from .scheduler import NOTE_ON, note_events

BLOCK = 1024  # frames rendered between progress reports and cancel checks
TAIL_SECONDS = 2.0  # room for the last notes' release and reverb
SILENCE = 4 / 32768  # the level under which the tail counts as silent (4 steps of 16-bit audio)
PEAK_DB = -1.0  # where normalising puts the loudest peak: room for a lossy encoder's overshoot
MIN_GAIN_DB, MAX_GAIN_DB = -24.0, 24.0
FULL_SCALE = 32767


@dataclass(frozen=True)
class Rendered:
    """What an export wrote: its length, its loudest peak (dBFS) and how many samples were clipped."""

    seconds: float
    peak_db: float
    clipped: int = 0


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
    normalize: bool = True,
    gain_db: float = 0.0,
) -> Rendered:
    """Renders notes (seconds) to a 16-bit stereo 44.1 kHz WAV file, atomically (0666 less the umask).

    `normalize` puts the loudest peak at PEAK_DB; `gain_db` is added (with `normalize` off, to the synth's own
    level; samples past full scale are then clipped, and counted). Raises SinkError when FluidSynth or a
    soundfont is missing, RenderCancelled when `cancel` is set, ValueError for a gain outside -24..24 dB.
    """
    if not (isinstance(gain_db, (int, float)) and math.isfinite(gain_db) and MIN_GAIN_DB <= gain_db <= MAX_GAIN_DB):
        raise ValueError(f"the gain must be {MIN_GAIN_DB:g} to {MAX_GAIN_DB:g} dB, not {gain_db!r}")
    fluidsynth, synth, _ = new_synth(soundfont, program, gain=0.6)
    try:
        audio = _render(synth, _writer(fluidsynth, synth), note_events(notes), progress, cancel, tail)
    finally:
        synth.delete()
    peak = float(np.abs(audio).max()) if len(audio) else 0.0
    gain = 10 ** (gain_db / 20) * (10 ** (PEAK_DB / 20) / peak if normalize and peak > 0 else 1.0)
    scaled = audio * (gain * FULL_SCALE)
    clipped = int(np.count_nonzero(np.abs(scaled) > FULL_SCALE))
    data = np.clip(np.rint(scaled), -FULL_SCALE, FULL_SCALE).astype("<i2").tobytes()

    def write(handle) -> None:
        with wave.open(handle, "wb") as out:
            out.setnchannels(2)
            out.setsampwidth(2)
            out.setframerate(SAMPLE_RATE)
            out.writeframes(data)

    atomic_write(Path(path), write)
    level = min(peak * gain, 1.0)
    return Rendered(len(audio) / SAMPLE_RATE, 20 * math.log10(level) if level > 0 else -math.inf, clipped)


def _writer(fluidsynth, synth) -> Callable[[int], np.ndarray]:
    """frames -> float32 stereo samples (frames x 2) from the synth: FluidSynth's floating-point output where the
    library offers it (no rounding before the level is set), else its 16-bit output."""
    library = getattr(fluidsynth, "_fl", None)
    write_float = getattr(library, "fluid_synth_write_float", None)
    if write_float is None:
        return lambda frames: np.asarray(synth.get_samples(frames), np.float32).reshape(-1, 2) / 32768.0
    write_float.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                            ctypes.c_void_p, ctypes.c_int, ctypes.c_int]  # fmt: skip
    write_float.restype = ctypes.c_int
    handle = ctypes.c_void_p(ctypes.cast(synth.synth, ctypes.c_void_p).value)

    def render(frames: int) -> np.ndarray:
        block = np.zeros((frames, 2), np.float32)  # left and right interleaved: offsets 0 and 1, stride 2
        address = block.ctypes.data
        write_float(handle, frames, address, 0, 2, address, 1, 2)
        return block

    return render


def _render(synth, write: Callable[[int], np.ndarray], events, progress, cancel, tail: float) -> np.ndarray:
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
                blocks.append(write(at - frame))
                frame = at
            _, kind, pitch, velocity, channel = events[index]
            if kind == NOTE_ON:
                synth.noteon(channel, pitch, max(1, velocity))
            else:
                synth.noteoff(channel, pitch)
            index += 1
        if block_end > frame:
            blocks.append(write(block_end - frame))
            frame = block_end
        if progress is not None:
            progress(min(1.0, frame / max(1, total_frames)))
    audio = np.concatenate(blocks) if blocks else np.zeros((0, 2), np.float32)
    # Trim the tail's silence after the last sound, keeping a short fade room.
    loud = np.flatnonzero(np.abs(audio).max(axis=1) > SILENCE) if len(audio) else np.array([])
    last = int(loud[-1]) + SAMPLE_RATE // 10 if len(loud) else int(end * SAMPLE_RATE)
    return audio[: max(min(len(audio), last), int(end * SAMPLE_RATE))]


__all__ = ["render_wav", "Rendered", "RenderCancelled", "SinkError", "PEAK_DB"]
