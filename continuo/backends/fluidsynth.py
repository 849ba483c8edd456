"""The built-in synth: FluidSynth playing a General MIDI soundfont to the computer's audio output, and the
soundfont it plays (found in the usual folders, or chosen). `new_synth` also serves the audio export, which
renders offline. No Qt in here.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import mido

from . import servers
from .base import CLIENT_NAME, Sink, SinkError
from .servers import PLATFORM_DRIVERS, SERVER_NAMES

INSTALL_SOUNDFONT = (
    "install a General MIDI soundfont (Debian/Ubuntu: sudo apt install fluid-soundfont-gm, "
    "Fedora: sudo dnf install fluid-soundfont-gm, macOS: brew install fluid-synth and a .sf2) "
    "or choose a .sf2 file in Playback ▸ SoundFont"
)
INSTALL_FLUIDSYNTH = (
    "install FluidSynth (Debian/Ubuntu: sudo apt install libfluidsynth3, Fedora: sudo dnf install "
    "fluidsynth-libs, macOS: brew install fluid-synth)"
)

SOUNDFONT_FOLDERS = [
    "~/.local/share/soundfonts",
    "~/.local/share/sounds/sf2",
    "~/.sounds",
    "~/Library/Audio/Sounds/Banks",
    "/usr/share/soundfonts",
    "/usr/share/sounds/sf2",
    "/usr/share/sounds/sf3",
    "/usr/local/share/soundfonts",
    "/usr/local/share/sounds/sf2",
    "/opt/homebrew/share/soundfonts",
    "/opt/homebrew/share/fluid-synth",
    "C:/soundfonts",
    "C:/ProgramData/soundfonts",
]
# The General MIDI banks that distributions ship, best-sounding first; any other .sf2 after them.
PREFERRED_SOUNDFONTS = [
    "FluidR3_GM.sf2",
    "FluidR3_GM.sf3",
    "default-GM.sf2",
    "GeneralUser GS.sf2",
    "MuseScore_General.sf3",
    "TimGM6mb.sf2",
]


def find_soundfont(folders: Iterable[str] | None = None) -> Path | None:
    """A General MIDI soundfont: $CONTINUO_SOUNDFONT, else the best one in the usual folders, else None."""
    chosen = os.environ.get("CONTINUO_SOUNDFONT")
    if chosen and Path(chosen).is_file():
        return Path(chosen)
    found: list[Path] = []
    for folder in folders if folders is not None else SOUNDFONT_FOLDERS:
        base = Path(folder).expanduser()
        if base.is_dir():
            found.extend(sorted(p for p in base.iterdir() if p.suffix.lower() in (".sf2", ".sf3") and p.is_file()))
    rank = {name.lower(): index for index, name in enumerate(PREFERRED_SOUNDFONTS)}
    found.sort(key=lambda path: rank.get(path.name.lower(), len(rank)))
    return found[0] if found else None


def load_fluidsynth():
    """The pyfluidsynth module; SinkError saying how to install FluidSynth when its library is missing."""
    try:
        # pyfluidsynth raises ImportError (or OSError) when libfluidsynth is not installed; with CI set in the
        # environment it prints where it found the library, which would land in `continuo --export`'s one line
        with contextlib.redirect_stdout(io.StringIO()):
            import fluidsynth
    except (ImportError, OSError) as error:
        raise SinkError(
            f"The built-in synth needs the FluidSynth library ({error}): {INSTALL_FLUIDSYNTH}",
            "the built-in synth needs FluidSynth, which is not installed",
        ) from None
    return fluidsynth


SAMPLE_RATE = 44100
# Audio drivers to try, in order; "jack" only when a server is up (it would otherwise try to start one).
AUDIO_DRIVERS = ["pipewire", "pulseaudio", "jack", "alsa", "coreaudio", "dsound", "wasapi"]


def _here(driver: str) -> bool:
    return sys.platform == PLATFORM_DRIVERS.get(driver, sys.platform)


def _listed(drivers: Sequence[str]) -> str:
    names = [SERVER_NAMES.get(driver, driver) for driver in drivers]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def new_synth(soundfont: str | os.PathLike | None, program: int, gain: float = 0.5):
    """A FluidSynth synth with the soundfont loaded and `program` on channel 0: (module, synth, path)."""
    fluidsynth = load_fluidsynth()
    path = Path(soundfont) if soundfont else find_soundfont()
    if path is None:
        raise SinkError(
            f"No General MIDI soundfont was found: {INSTALL_SOUNDFONT}", "the built-in synth has no soundfont"
        )
    if not path.is_file():
        raise SinkError(f"The soundfont {path} is not there: {INSTALL_SOUNDFONT}")
    synth = fluidsynth.Synth(gain=gain, samplerate=float(SAMPLE_RATE))
    font = synth.sfload(str(path))
    if font < 0:
        synth.delete()
        raise SinkError(f"{path.name} is not a soundfont FluidSynth can read; choose another .sf2 file")
    for channel in range(16):
        if channel != 9:  # channel 10 keeps the drum kit
            synth.program_select(channel, font, 0, int(program))
    return fluidsynth, synth, path


class FluidSynthSink(Sink):
    """The built-in synth: FluidSynth playing a General MIDI soundfont to the computer's audio output."""

    def __init__(self, soundfont: str | os.PathLike | None = None, program: int = 0, driver: str | None = None) -> None:
        super().__init__()
        self.program = int(program)
        self._fluidsynth, self.synth, self.soundfont = new_synth(soundfont, self.program)
        self.name = f"built-in synth ({self.soundfont.name})"
        self.driver = None
        if driver != "none":  # "none": no audio device (rendering, tests that only count voices)
            self.driver = self._start_audio(driver)

    def _start_audio(self, driver: str | None) -> str:
        os.environ.setdefault("JACK_NO_START_SERVER", "1")
        drivers = [driver] if driver else [d for d in AUDIO_DRIVERS if servers.server_present(d)]
        self.synth.setting("audio.jack.autoconnect", 1)  # straight to the speakers, as a musician expects
        self.synth.setting("audio.jack.id", CLIENT_NAME)
        for name in drivers:
            # Only the audio driver: Synth.start() would also open a MIDI driver (the ALSA sequencer) we never use.
            self.synth.setting("audio.driver", name)
            handle = self._fluidsynth.new_fluid_audio_driver(self.synth.settings, self.synth.synth)
            if handle:
                self.synth.audio_driver = handle  # Synth.delete() releases it
                return name
        self.synth.delete()
        if drivers:
            what = f"tried {_listed(drivers)}: none opened"
        else:
            looked = [d for d in AUDIO_DRIVERS if d in SERVER_NAMES and (d not in PLATFORM_DRIVERS or _here(d))]
            what = f"looked for {_listed(looked)}: none is running"
        raise SinkError(
            f"The built-in synth found no audio output ({what}): start PipeWire, PulseAudio or JACK, or choose a "
            "MIDI port in Playback ▸ Output",
            f"the built-in synth found no audio output ({what})",
        )

    def set_program(self, program: int) -> None:
        """Changes the instrument (a General MIDI program, 0..127) on every melodic channel."""
        self.program = int(program)
        for channel in range(16):
            if channel != 9:
                self.send(mido.Message("program_change", channel=channel, program=self.program))

    def _send(self, message: mido.Message) -> None:
        synth = self.synth
        if message.type == "note_on":
            synth.noteon(message.channel, message.note, message.velocity)
        elif message.type == "note_off":
            synth.noteoff(message.channel, message.note)
        elif message.type == "control_change":
            synth.cc(message.channel, message.control, message.value)
        elif message.type == "program_change":
            synth.program_change(message.channel, message.program)
        elif message.type == "pitchwheel":
            synth.pitch_bend(message.channel, message.pitch)

    def _close(self) -> None:
        self.synth.delete()
