"""Live MIDI input: a keyboard (or another program) plays into the studio, heard at once and recorded.

`ports` opens inputs and watches keyboards come and go, `recorder` turns what is played into takes in the
song, and `controller` connects them on the GUI thread, with MIDI thru. `ports` and `Take` hold no Qt.
"""

from .controller import MidiInputController
from .ports import VIRTUAL_INPUT, ArrivalClock, MidiInput, MidiInputError, PortWatcher, is_ignored
from .recorder import ACCENT_CLICK, CLICK, METRONOME_CHANNEL, Recorder, Take, metronome_events

__all__ = [
    "MidiInputController",
    "ArrivalClock",
    "MidiInput",
    "MidiInputError",
    "PortWatcher",
    "VIRTUAL_INPUT",
    "is_ignored",
    "Recorder",
    "Take",
    "metronome_events",
    "METRONOME_CHANNEL",
    "ACCENT_CLICK",
    "CLICK",
]
