"""Playback: the scheduler thread, the output sinks (MIDI port, FluidSynth, recorder) and audio export.

`scheduler`, `sinks` and `render` hold no Qt; `player` connects them to the song and the transport.
"""

from .scheduler import NOTE_OFF, NOTE_ON, Event, LiveFeed, Scheduler, event_message, note_events
from .sinks import FluidSynthSink, MidiPortSink, RecorderSink, Sink, SinkError, find_soundfont, midi_output_names

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
