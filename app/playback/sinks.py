"""Output sinks: where the studio's MIDI goes. One small base class with one `_send` hook, as mido's ports.

    sink = MidiPortSink(virtual=True)            # the studio's own port, for a DAW or a hardware synth
    sink = MidiPortSink("FLUID Synth:midi_00")   # or connect to another program's input port
    sink = FluidSynthSink()                      # the built-in synth (FluidSynth and a GM soundfont)
    sink = RecorderSink()                        # keeps every message with the time it was sent (tests)
    sink = TapSink(lambda: player_sinks)         # into shared outputs, resetting only its own notes (thru, clicks)
    sink.send(mido.Message("note_on", note=60, velocity=90))
    sink.reset()                                 # every sounding note off (stop, cancel, a lost port, quit)
    sink.close()

`send` may be called from any thread (the playback scheduler, the GUI auditioning a key, a MIDI keyboard
thru): a lock keeps messages whole and in order. The base class remembers which notes sound, so that
`reset` turns exactly those off before the all-notes-off controller, for synths that ignore it.
`RtMidiPort` opens an rtmidi port for the MIDI output here and for the MIDI input (app/midi_input/ports.py).
No Qt in here: the scheduler, the benchmarks and a script can use the sinks without a window.
"""

from __future__ import annotations

import glob
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import mido

ALL_NOTES_OFF = 123
ALL_SOUND_OFF = 120
CLIENT_NAME = "Continuo"
VIRTUAL_PORT_NAME = "Continuo out"

INSTALL_SOUNDFONT = (
    "install a General MIDI soundfont (Debian/Ubuntu: sudo apt install fluid-soundfont-gm, "
    "Fedora: sudo dnf install fluid-soundfont-gm, macOS: brew install fluid-synth and a .sf2) "
    "or choose a .sf2 file in Playback ▸ SoundFont"
)
INSTALL_FLUIDSYNTH = (
    "install FluidSynth (Debian/Ubuntu: sudo apt install libfluidsynth3, Fedora: sudo dnf install "
    "fluidsynth-libs, macOS: brew install fluid-synth)"
)
MIDI_HELP = (
    "start a JACK server (jackd or PipeWire's JACK), or load the ALSA sequencer (sudo modprobe snd-seq), "
    "then choose the output again"
)


class SinkError(Exception):
    """A sink that cannot be opened or has gone away; the message names it and says what to do.

    `summary` is the same in one short line (what is wrong, naming what was tried), for the status bar's output
    indicator; it is the message itself when none is given.
    """

    def __init__(self, message: str, summary: str | None = None) -> None:
        super().__init__(message)
        self.summary = summary or message


class Sink:
    """The interface every output shares: `send`, `reset`, `close`; backends implement `_send`."""

    name = "sink"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._sounding: Counter[tuple[int, int]] = Counter()  # (channel, pitch) -> note-ons not yet off
        self.closed = False

    def send(self, message: mido.Message) -> None:
        """Sends one message now; raises SinkError if the output has gone away."""
        with self._lock:
            if self.closed:
                raise SinkError(f"{self.name} is closed")
            self._track(message)
            self._send(message)

    def note_on(self, pitch: int, velocity: int, channel: int = 0) -> None:
        """Starts a note (velocity 0 is a note-off, as in MIDI)."""
        self.send(mido.Message("note_on", channel=channel, note=pitch, velocity=velocity))

    def note_off(self, pitch: int, channel: int = 0) -> None:
        """Ends a note."""
        self.send(mido.Message("note_off", channel=channel, note=pitch, velocity=0))

    def sounding(self) -> list[tuple[int, int]]:
        """(channel, pitch) of the notes that are on."""
        with self._lock:
            return [key for key, count in self._sounding.items() if count > 0]

    def reset(self) -> None:
        """Every sounding note off, then all-notes-off on every channel; never raises."""
        with self._lock:
            if self.closed:
                return
            try:
                self._end_sounding_notes()
                for channel in range(16):
                    self._send(mido.Message("control_change", channel=channel, control=ALL_NOTES_OFF, value=0))
            except Exception:  # noqa: BLE001 - a port that went away has nothing left to silence
                pass
            self._sounding.clear()

    def close(self) -> None:
        """Turns every note off and releases the output; closing twice is harmless."""
        with self._lock:
            if self.closed:
                return
            self.reset()
            self.closed = True
            try:
                self._close()
            except Exception:  # noqa: BLE001 - closing must not fail a quit
                pass

    def check(self) -> None:
        """Raises SinkError if the output has gone away (the scheduler asks now and then)."""

    def _end_sounding_notes(self) -> None:
        """A note-off for each note this sink turned on."""
        for channel, pitch in sorted(self._sounding):
            self._send(mido.Message("note_off", channel=channel, note=pitch, velocity=0))

    def _track(self, message: mido.Message) -> None:
        if message.type == "note_on" and message.velocity > 0:
            self._sounding[(message.channel, message.note)] += 1
        elif message.type in ("note_on", "note_off"):
            key = (message.channel, message.note)
            if self._sounding.get(key, 0) > 1:
                self._sounding[key] -= 1
            else:
                self._sounding.pop(key, None)
        elif message.type == "control_change" and message.control in (ALL_NOTES_OFF, ALL_SOUND_OFF):
            for key in [key for key in self._sounding if key[0] == message.channel]:
                del self._sounding[key]

    def _send(self, message: mido.Message) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        pass

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}{' closed' if self.closed else ''}>"


class RecorderSink(Sink):
    """Keeps every message with the `time.perf_counter()` it was sent at: tests and benchmarks listen here."""

    name = "recorder"

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[tuple[float, mido.Message]] = []
        self._arrived = threading.Condition(self._lock)

    def _send(self, message: mido.Message) -> None:
        self.messages.append((time.perf_counter(), message))
        self._arrived.notify_all()

    def notes(self) -> list[tuple[float, str, int, int]]:
        """(time, 'on' or 'off', pitch, velocity) of every note message so far."""
        with self._lock:
            return [
                (at, "on" if m.type == "note_on" and m.velocity > 0 else "off", m.note, m.velocity)
                for at, m in self.messages
                if m.type in ("note_on", "note_off")
            ]

    def wait_for(self, condition: Callable[[list[tuple[float, mido.Message]]], bool], timeout: float) -> bool:
        """Waits until `condition(messages)` holds (True) or the timeout passes (False)."""
        with self._lock:
            return self._arrived.wait_for(lambda: condition(self.messages), timeout)

    def clear(self) -> None:
        """Forgets the messages recorded so far."""
        with self._lock:
            self.messages.clear()


# --- MIDI ports through python-rtmidi ---------------------------------------------------------------


def _rtmidi():
    import rtmidi  # python-rtmidi; imported late so that a broken install only costs the MIDI output

    return rtmidi


def midi_apis() -> list[int]:
    """The rtmidi APIs to try, best first: $CONTINUO_MIDI_API (jack, alsa, coremidi, winmm) or the platform's."""
    rtmidi = _rtmidi()
    names = {
        "jack": rtmidi.API_UNIX_JACK,
        "alsa": rtmidi.API_LINUX_ALSA,
        "coremidi": rtmidi.API_MACOSX_CORE,
        "winmm": rtmidi.API_WINDOWS_MM,
    }
    chosen = os.environ.get("CONTINUO_MIDI_API", "").strip().lower()
    if chosen:
        return [names.get(chosen, rtmidi.API_UNSPECIFIED)]
    # JACK first: on Linux it is what the studio shares with DAWs and what `make test` runs; ALSA next.
    compiled = rtmidi.get_compiled_api()
    order = [rtmidi.API_UNIX_JACK, rtmidi.API_LINUX_ALSA, rtmidi.API_MACOSX_CORE, rtmidi.API_WINDOWS_MM]
    return [api for api in order if api in compiled]


def open_rtmidi_client(direction: str, client_name: str = CLIENT_NAME, **options):
    """An rtmidi client ("in": MidiIn, "out": MidiOut) on the first MIDI system that works; SinkError when none does."""
    os.environ.setdefault("JACK_NO_START_SERVER", "1")  # never start a JACK server behind the user's back
    rtmidi = _rtmidi()
    factory = rtmidi.MidiIn if direction == "in" else rtmidi.MidiOut
    reasons = []
    for api in midi_apis():
        if api == rtmidi.API_UNIX_JACK and not jack_server_running():
            reasons.append("no JACK server is running")
            continue
        if api == rtmidi.API_LINUX_ALSA and not os.path.exists("/dev/snd/seq"):
            reasons.append("the ALSA sequencer is not loaded")  # rtmidi would only print ALSA's complaint
            continue
        try:
            return factory(api, name=client_name, **options)
        except Exception as error:  # noqa: BLE001 - rtmidi raises its own SystemError subclasses
            reasons.append(f"{rtmidi.get_api_display_name(api)}: {str(error).splitlines()[0]}")
    why = "; ".join(reasons) or "none compiled in"
    raise SinkError(f"No MIDI system is available ({why}): {MIDI_HELP}", f"no MIDI system is available ({why})")


def jack_server_running() -> bool:
    """Whether a JACK server answers, without starting one (rtmidi's JACK client would hang or spawn)."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    server = os.environ.get("JACK_DEFAULT_SERVER", "default")
    folders = [os.environ.get("JACK_PROMISCUOUS_SERVER") and "/dev/shm", "/dev/shm", os.environ.get("TMPDIR"), "/tmp"]
    for folder in filter(None, folders):
        if glob.glob(os.path.join(folder, f"jack_{server}_{uid}_*")) or glob.glob(
            os.path.join(folder, f"jack-{uid}", server)
        ):
            return True
    # PipeWire's JACK needs no socket file of its own; rtmidi will tell us if it is not there.
    return bool(glob.glob(f"/run/user/{uid}/pipewire-0"))


def other_programs(names: Iterable[str]) -> list[str]:
    """The ports of other programs (the studio's own ports are not keyboards or synths)."""
    return [name for name in names if not name.startswith(CLIENT_NAME)]


def port_names(direction: str) -> list[str]:
    """Other programs' ports a client of this direction can connect to ([] when there is no MIDI system)."""
    try:
        client = open_rtmidi_client(direction, CLIENT_NAME + " (scan)")
    except SinkError:
        return []
    try:
        return other_programs(client.get_ports())
    finally:
        client.delete()


def midi_output_names() -> list[str]:
    """The MIDI input ports of other programs that the studio can play into ([] when there is no MIDI system)."""
    return port_names("out")


class RtMidiPort:
    """One rtmidi client with one port open, as the MIDI output and the MIDI input both need it: the studio's own
    virtual port (`virtual_name`), or a connection to another program's port (`port_name`).

    Opening raises SinkError naming the port (`kind` says what it is, `advice` what to do); `close` releases
    the client and never raises. Thread-safe.
    """

    def __init__(
        self,
        direction: str,
        port_name: str | None = None,
        virtual_name: str | None = None,
        client_name: str = CLIENT_NAME,
        kind: str = "MIDI port",
        advice: str = "connect the device or choose another output",
        **options,
    ) -> None:
        self._lock = threading.Lock()
        self.closed = False
        self.client = open_rtmidi_client(direction, client_name, **options)
        try:
            if virtual_name is not None:
                self.client.open_virtual_port(virtual_name)
            else:
                ports = self.client.get_ports()
                if port_name not in ports:
                    available = ", ".join(other_programs(ports)) or "none"
                    raise SinkError(f"{kind} “{port_name}” is not there (available: {available}); {advice}")
                self.client.open_port(ports.index(port_name), direction)
        except SinkError:
            self.client.delete()
            raise
        except Exception as error:  # noqa: BLE001 - rtmidi raises its own SystemError subclasses
            self.client.delete()
            raise SinkError(f"Cannot open {kind} “{port_name}”: {error}") from None

    def ports(self) -> list[str]:
        """Every port in the MIDI graph as this client sees it now (a cheap call); [] once closed or failing."""
        with self._lock:
            if self.closed:
                return []
            try:
                return list(self.client.get_ports())
            except Exception:  # noqa: BLE001 - the MIDI system went away: no ports
                return []

    def close(self) -> None:
        """Closes the port and the client; closing twice is harmless."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            try:
                self.client.close_port()
                self.client.delete()
            except Exception:  # noqa: BLE001 - closing must not fail a quit
                pass


class MidiPortSink(Sink):
    """A MIDI output: the studio's own virtual port (`virtual=True`), or a connection to another program's port."""

    def __init__(self, port_name: str | None = None, virtual: bool = False, client_name: str = CLIENT_NAME) -> None:
        super().__init__()
        if not virtual and not port_name:
            raise SinkError("Choose a MIDI port, or the studio's own virtual port")
        self.virtual = virtual
        self.port_name = VIRTUAL_PORT_NAME if virtual else str(port_name)
        self.name = f"MIDI port “{self.port_name}”"
        self._port = RtMidiPort(
            "out", None if virtual else self.port_name, VIRTUAL_PORT_NAME if virtual else None, client_name
        )

    def _send(self, message: mido.Message) -> None:
        try:
            self._port.client.send_message(message.bytes())
        except Exception as error:  # noqa: BLE001 - the server or device went away
            raise SinkError(f"{self.name} went away ({error})") from None

    def check(self) -> None:
        """A connected port that vanished from the system (device unplugged, program quit) raises SinkError."""
        if not self.virtual and self.port_name not in self._port.ports():
            raise SinkError(f"{self.name} went away")

    def _close(self) -> None:
        self._port.close()


class TapSink(Sink):
    """Forwards to shared outputs but resets only its own notes (a metronome or a duet answer stops cleanly)."""

    def __init__(self, targets: Callable[[], Sequence[Sink]], name: str = "tap") -> None:
        super().__init__()
        self.name = name
        self._targets = targets

    def _send(self, message: mido.Message) -> None:
        for sink in list(self._targets()):
            try:
                sink.send(message)
            except SinkError:
                pass  # the player reports a lost output; a click or an answer note is not worth a second message

    def reset(self) -> None:
        """Turns off the notes this tap turned on, and nothing else (the musician's keys keep sounding)."""
        with self._lock:
            self._end_sounding_notes()
            self._sounding.clear()


# --- the built-in synth: FluidSynth --------------------------------------------------------------

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
        import fluidsynth  # pyfluidsynth raises ImportError (or OSError) when libfluidsynth is not installed
    except (ImportError, OSError) as error:
        raise SinkError(
            f"The built-in synth needs the FluidSynth library ({error}): {INSTALL_FLUIDSYNTH}",
            "the built-in synth needs FluidSynth, which is not installed",
        ) from None
    return fluidsynth


GM_FAMILIES = [
    "Piano",
    "Chromatic Percussion",
    "Organ",
    "Guitar",
    "Bass",
    "Strings",
    "Ensemble",
    "Brass",
    "Reed",
    "Pipe",
    "Synth Lead",
    "Synth Pad",
    "Synth Effects",
    "Ethnic",
    "Percussive",
    "Sound Effects",
]
GM_INSTRUMENTS = [
    "Acoustic Grand Piano",
    "Bright Acoustic Piano",
    "Electric Grand Piano",
    "Honky-tonk Piano",
    "Electric Piano 1",
    "Electric Piano 2",
    "Harpsichord",
    "Clavinet",
    "Celesta",
    "Glockenspiel",
    "Music Box",
    "Vibraphone",
    "Marimba",
    "Xylophone",
    "Tubular Bells",
    "Dulcimer",
    "Drawbar Organ",
    "Percussive Organ",
    "Rock Organ",
    "Church Organ",
    "Reed Organ",
    "Accordion",
    "Harmonica",
    "Tango Accordion",
    "Acoustic Guitar (nylon)",
    "Acoustic Guitar (steel)",
    "Electric Guitar (jazz)",
    "Electric Guitar (clean)",
    "Electric Guitar (muted)",
    "Overdriven Guitar",
    "Distortion Guitar",
    "Guitar Harmonics",
    "Acoustic Bass",
    "Electric Bass (finger)",
    "Electric Bass (pick)",
    "Fretless Bass",
    "Slap Bass 1",
    "Slap Bass 2",
    "Synth Bass 1",
    "Synth Bass 2",
    "Violin",
    "Viola",
    "Cello",
    "Contrabass",
    "Tremolo Strings",
    "Pizzicato Strings",
    "Orchestral Harp",
    "Timpani",
    "String Ensemble 1",
    "String Ensemble 2",
    "Synth Strings 1",
    "Synth Strings 2",
    "Choir Aahs",
    "Voice Oohs",
    "Synth Choir",
    "Orchestra Hit",
    "Trumpet",
    "Trombone",
    "Tuba",
    "Muted Trumpet",
    "French Horn",
    "Brass Section",
    "Synth Brass 1",
    "Synth Brass 2",
    "Soprano Sax",
    "Alto Sax",
    "Tenor Sax",
    "Baritone Sax",
    "Oboe",
    "English Horn",
    "Bassoon",
    "Clarinet",
    "Piccolo",
    "Flute",
    "Recorder",
    "Pan Flute",
    "Blown Bottle",
    "Shakuhachi",
    "Whistle",
    "Ocarina",
    "Lead 1 (square)",
    "Lead 2 (sawtooth)",
    "Lead 3 (calliope)",
    "Lead 4 (chiff)",
    "Lead 5 (charang)",
    "Lead 6 (voice)",
    "Lead 7 (fifths)",
    "Lead 8 (bass + lead)",
    "Pad 1 (new age)",
    "Pad 2 (warm)",
    "Pad 3 (polysynth)",
    "Pad 4 (choir)",
    "Pad 5 (bowed)",
    "Pad 6 (metallic)",
    "Pad 7 (halo)",
    "Pad 8 (sweep)",
    "FX 1 (rain)",
    "FX 2 (soundtrack)",
    "FX 3 (crystal)",
    "FX 4 (atmosphere)",
    "FX 5 (brightness)",
    "FX 6 (goblins)",
    "FX 7 (echoes)",
    "FX 8 (sci-fi)",
    "Sitar",
    "Banjo",
    "Shamisen",
    "Koto",
    "Kalimba",
    "Bagpipe",
    "Fiddle",
    "Shanai",
    "Tinkle Bell",
    "Agogo",
    "Steel Drums",
    "Woodblock",
    "Taiko Drum",
    "Melodic Tom",
    "Synth Drum",
    "Reverse Cymbal",
    "Guitar Fret Noise",
    "Breath Noise",
    "Seashore",
    "Bird Tweet",
    "Telephone Ring",
    "Helicopter",
    "Applause",
    "Gunshot",
]

SAMPLE_RATE = 44100
# Audio drivers to try, in order; "jack" only when a server is up (it would otherwise try to start one).
AUDIO_DRIVERS = ["pipewire", "pulseaudio", "jack", "alsa", "coreaudio", "dsound", "wasapi"]


SERVER_NAMES = {
    "pipewire": "PipeWire",
    "pulseaudio": "PulseAudio",
    "jack": "JACK",
    "alsa": "ALSA",
    "coreaudio": "Core Audio",
    "dsound": "DirectSound",
    "wasapi": "WASAPI",
}
PLATFORM_DRIVERS = {"coreaudio": "darwin", "dsound": "win32", "wasapi": "win32"}
WATCHED_SERVERS = ("pipewire", "pulseaudio", "jack")  # sound servers that start and stop while the studio runs


def _here(driver: str) -> bool:
    return sys.platform == PLATFORM_DRIVERS.get(driver, sys.platform)


def _listed(drivers: Sequence[str]) -> str:
    names = [SERVER_NAMES.get(driver, driver) for driver in drivers]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def audio_servers() -> list[str]:
    """The sound servers running now (of WATCHED_SERVERS): a cheap look at their sockets, for the port watcher."""
    return [server for server in WATCHED_SERVERS if _audio_server_present(server)]


def _audio_server_present(driver: str) -> bool:
    """Whether an audio driver has something to talk to; trying one that has not only prints errors."""
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid() if hasattr(os, 'getuid') else 0}"
    if driver == "jack":
        return jack_server_running()
    if driver == "pipewire":
        return os.path.exists(os.path.join(runtime, "pipewire-0"))
    if driver == "pulseaudio":
        return bool(os.environ.get("PULSE_SERVER")) or os.path.exists(os.path.join(runtime, "pulse", "native"))
    if driver == "alsa":
        return bool(glob.glob("/dev/snd/pcm*"))
    if driver == "coreaudio":
        return sys.platform == "darwin"
    return sys.platform == "win32"  # dsound, wasapi


def _new_synth(soundfont: str | os.PathLike | None, program: int, gain: float = 0.5):
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
        self._fluidsynth, self.synth, self.soundfont = _new_synth(soundfont, self.program)
        self.name = f"built-in synth ({self.soundfont.name})"
        self.driver = None
        if driver != "none":  # "none": no audio device (rendering, tests that only count voices)
            self.driver = self._start_audio(driver)

    def _start_audio(self, driver: str | None) -> str:
        os.environ.setdefault("JACK_NO_START_SERVER", "1")
        drivers = [driver] if driver else [d for d in AUDIO_DRIVERS if _audio_server_present(d)]
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
