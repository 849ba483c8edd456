"""Playback: the scheduler thread, the player that follows the song and the transport, and audio export.

The outputs it plays into live in continuo/backends/ (the Sink base, the MIDI port, the built-in synth, the recorder);
they are named here too, for the scripts, tests and benchmarks that play something. `scheduler` and `render`
hold no Qt; `player` connects them to the song and the transport.
"""

from ..backends.base import Sink, SinkError
from ..backends.fluidsynth import FluidSynthSink, find_soundfont
from ..backends.recorder import RecorderSink
from ..backends.rtmidi import MidiPortSink, midi_output_names
from .scheduler import NOTE_OFF, NOTE_ON, Event, LiveFeed, Scheduler, event_message, note_events

__all__ = [
    "Scheduler",
    "LiveFeed",
    "Event",
    "NOTE_ON",
    "NOTE_OFF",
    "note_events",
    "event_message",
    "Sink",
    "SinkError",
    "MidiPortSink",
    "FluidSynthSink",
    "RecorderSink",
    "find_soundfont",
    "midi_output_names",
]
