"""MIDI ports through python-rtmidi, output and input together, as mido's rtmidi backend.

    sink = MidiPortSink(virtual=True)            # the studio's own port, for a DAW or a hardware synth
    sink = MidiPortSink(virtual=True, virtual_name=DAW_PORT_NAME)  # "Continuo": a DAW records what plays
    sink = MidiPortSink("FLUID Synth:midi_00")   # or connect to another program's input port
    port = open_midi_input("Keystation:out", "Continuo input", 8192)  # a keyboard, read by midi_input/ports.py

`RtMidiPort` is one client with one port open, for either direction; opening one raises SinkError naming
the port. No Qt in here.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable

import mido

from . import servers
from .base import CLIENT_NAME, Sink, SinkError

VIRTUAL_PORT_NAME = "Continuo out"
DAW_PORT_NAME = "Continuo"  # the port a DAW records what the studio plays from (besides the output chosen)
VIRTUAL_INPUT_NAME = "Continuo in"
MIDI_HELP = (
    "start a JACK server (jackd or PipeWire's JACK), or load the ALSA sequencer (sudo modprobe snd-seq), "
    "then choose the output again"
)


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
        if api == rtmidi.API_UNIX_JACK and not servers.jack_server_running():
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

    def __init__(
        self,
        port_name: str | None = None,
        virtual: bool = False,
        client_name: str = CLIENT_NAME,
        virtual_name: str = VIRTUAL_PORT_NAME,
    ) -> None:
        super().__init__()
        if not virtual and not port_name:
            raise SinkError("Choose a MIDI port, or the studio's own virtual port")
        self.virtual = virtual
        self.port_name = virtual_name if virtual else str(port_name)
        self.name = f"MIDI port “{self.port_name}”"
        self._port = RtMidiPort(
            "out", None if virtual else self.port_name, virtual_name if virtual else None, client_name
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


def open_midi_input(port_name: str | None, client_name: str, queue_size: int) -> RtMidiPort:
    """An input: a connection to a keyboard's port, or the studio's own virtual input (`port_name` None), whose
    system messages (sysex, clock, active sensing) rtmidi drops; raises SinkError naming the port."""
    port = RtMidiPort(
        "in",
        port_name,
        VIRTUAL_INPUT_NAME if port_name is None else None,
        client_name,
        kind="MIDI input",
        advice="plug the keyboard in or choose another input",
        queue_size_limit=queue_size,
    )
    port.client.ignore_types(sysex=True, timing=True, active_sense=True)
    return port
