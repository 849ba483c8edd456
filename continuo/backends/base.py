"""The interface every output shares, as mido's ports: one small base class with one `_send` hook, each backend a
small class (rtmidi.py: a MIDI port; fluidsynth.py: the built-in synth; recorder.py: a recorder for tests).

    sink.send(mido.Message("note_on", note=60, velocity=90))
    sink.reset()                                 # every sounding note off (stop, cancel, a lost port, quit)
    sink.close()
    sink = TapSink(lambda: player_sinks)         # into shared outputs, resetting only its own notes (thru, clicks)

`send` may be called from any thread (the playback scheduler, the GUI auditioning a key, a MIDI keyboard
thru): a lock keeps messages whole and in order. The base class remembers which notes sound, so that
`reset` turns exactly those off before the all-notes-off controller, for synths that ignore it.
No Qt in here: the scheduler, the benchmarks and a script can use the sinks without a window.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Sequence

import mido

ALL_NOTES_OFF = 123
ALL_SOUND_OFF = 120
CLIENT_NAME = "Continuo"  # the name the studio's MIDI and audio clients go by; ports starting with it are its own


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
