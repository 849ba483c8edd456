"""The headless render: `continuo --export OUT.mid FILE` and `continuo --export OUT.wav FILE` write a session or
MIDI file as a MIDI file or a recording, without a window (as `mscore -o` does).

The file is read with the studio's own reader and checks (document.read_file), the MIDI file is written as
File ▸ Export MIDI writes it (its tempo map, metres, key, program and track names), the WAV through the
built-in FluidSynth render with the soundfont, instrument and level the studio last used. Every problem is one
line (`ExportError`); what is written is written whole or not at all, and an existing file at OUT is only
replaced by a complete one.
"""

from __future__ import annotations

import os
from pathlib import Path

from music_transformer import MidiFileError

from .backends.base import SinkError
from .midi_files import MIDI_SUFFIXES, export_midi
from .settings import Preferences

AUDIO_SUFFIX = ".wav"


class ExportError(Exception):
    """An export that cannot be made; the message is one line that says why."""


def export_file(source: str | os.PathLike, out: str | os.PathLike, preferences: Preferences | None = None) -> str:
    """Writes `source` (a session or MIDI file) to `out` (.mid or .wav); returns what was written, in one line.

    Raises ExportError when the source cannot be read, has no notes, or `out` cannot be written.
    """
    from .document import read_file  # the studio's reader: its checks, the tempo map kept
    from .song import Song

    source, out = Path(source), Path(out)
    suffix = out.suffix.lower()
    if suffix not in (*MIDI_SUFFIXES, AUDIO_SUFFIX):
        raise ExportError(f"{out.name}: --export writes a MIDI file (.mid) or a WAV file (.wav)")
    if out.exists() and source.exists() and out.resolve() == source.resolve():
        raise ExportError(f"{out.name} is the file being exported; write to another file")
    if out.is_dir():
        raise ExportError(f"{out.name}: is a folder; name the file to write")
    read = read_file(source)
    if read.error:
        raise ExportError(read.error)
    song = Song()
    song.load(read.notes, read.meta)
    if suffix != AUDIO_SUFFIX:
        try:
            count = export_midi(song, out, title=source.stem)
        except MidiFileError as error:
            raise ExportError(str(error)) from None
        return f"Wrote {out}: {count} notes, {_timing(song)}"
    return _export_audio(song, out, preferences or Preferences())


def _timing(song) -> str:
    tempo_map = song.tempo_map
    metres = ", ".join(dict.fromkeys(f"{n}/{d}" for _, n, d in tempo_map.metres))
    tempi = len(tempo_map.tempi)
    return f"{metres}, " + (f"{song.tempo:g} BPM" if tempi == 1 else f"{tempi} tempi from {song.tempo:g} BPM")


def _export_audio(song, out: Path, preferences: Preferences) -> str:
    from .playback.render import MAX_GAIN_DB, RenderCancelled, render_wav

    notes = song.performance_notes()
    if not notes:
        raise ExportError(f"{out.name}: nothing to export (the song has no notes)")
    normalize = preferences.get("audio_normalize", True) is not False
    gain = preferences.get("audio_gain_db", 0.0)
    if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not abs(gain) <= MAX_GAIN_DB:
        gain = 0.0
    program = preferences.get("program", 0)
    program = program if isinstance(program, int) and not isinstance(program, bool) and 0 <= program < 128 else 0
    try:
        rendered = render_wav(notes, out, preferences.get("soundfont"), program, normalize=normalize, gain_db=gain)
    except SinkError as error:
        raise ExportError(str(error).splitlines()[0]) from None
    except RenderCancelled:  # pragma: no cover - nothing cancels a headless render
        raise ExportError(f"{out.name}: the render was cancelled") from None
    except OSError as error:
        raise ExportError(f"{out.name}: cannot be written ({error.strerror or error})") from None
    except MemoryError:
        raise ExportError(f"{out.name}: too long to render in the memory left") from None
    return f"Wrote {out}: {rendered.seconds:.1f} s of audio, peak {rendered.peak_db:.1f} dBFS"
