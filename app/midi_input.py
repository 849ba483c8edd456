"""Live MIDI input: choosing a keyboard (hot-plug aware), MIDI thru, and recording takes into the roll.

    keyboard ─ rtmidi callback thread ─┬─> thru sinks (at once: the musician hears the key)
                                       ├─> duet listener (app/duet.py, also at once)
                                       └─> queue ─> MidiInputController (GUI thread, drained every 10 ms)
                                                      └─> Take ─> notes in the song (one undo step per take)

The callback thread never touches Qt or the song: it stamps each message with `time.perf_counter()`, sends
it through, and queues it. The GUI thread drains the queue on a timer, a bounded slice at a time, so a flood
of messages never freezes the window and none is dropped. Clock, active sensing and sysex are ignored.
`MidiInput`, `Take`, `TapSink` and the quantize helpers hold no Qt: scripts and benchmarks use them alone.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import mido
from PySide6.QtCore import QObject, QTimer, Signal

from music_transformer import Note

from .playback.scheduler import NOTE_OFF, NOTE_ON, Scheduler
from .playback.sinks import CLIENT_NAME, Sink, SinkError, open_rtmidi_client
from .song import MOTIF, Song, SongDiff, SongEditCommand, SongNote, snap_beat

VIRTUAL_INPUT = "virtual"  # the studio's own input port, for a program that plays into it
VIRTUAL_INPUT_NAME = "Continuo in"
SUSTAIN = 64
POLL_SECONDS = 0.5  # hot-plug: how often the port list is read (a cheap call on a client kept open)
DRAIN_INTERVAL_MS = 10
READ_INTERVAL = 0.0005  # the reader thread looks at rtmidi's queue this often: at most half a millisecond late
DRAIN_BUDGET_SECONDS = 0.02  # the GUI thread spends at most this per drain; the rest waits for the next tick
METRONOME_CHANNEL = 9  # General MIDI drums
ACCENT_CLICK, CLICK = 76, 77  # high and low wood block
METRONOME_BEATS = 4096  # clicks scheduled ahead: far longer than any take


class MidiInputError(Exception):
    """An input port that cannot be opened or has gone away; the message names it and says what to do."""


def is_ignored(data: Sequence[int]) -> bool:
    """Clock, start/stop, active sensing, sysex and every other system message: the studio does not record them."""
    return not data or data[0] >= 0xF0


def _open_input_client(client_name: str):
    """An rtmidi input client on the first MIDI system that works; MidiInputError when none does."""
    try:
        # A deep queue: rtmidi drops messages past it when the reader is late; 1,000 a second must fit.
        return open_rtmidi_client("in", client_name, queue_size_limit=8192)
    except SinkError as error:
        raise MidiInputError(str(error)) from None


def _foreign(names: Iterable[str]) -> list[str]:
    """Ports of other programs (the studio's own ports are not keyboards)."""
    return [name for name in names if not name.startswith(CLIENT_NAME)]


def midi_input_names() -> list[str]:
    """The MIDI output ports of keyboards and programs the studio can record from ([] with no MIDI system)."""
    try:
        client = _open_input_client(CLIENT_NAME + " (scan)")
    except MidiInputError:
        return []
    try:
        return _foreign(client.get_ports())
    finally:
        client.delete()


class MidiInput:
    """One input: a connection to a keyboard's port, or the studio's own virtual input port. No Qt.

    `on_message(time, message)` runs on the input's reader thread for every message that is not ignored,
    stamped with `time.perf_counter()` when it was read; keep it short (send thru, queue, notify).

    Why a reader thread and not rtmidi's callback: on JACK, rtmidi calls the callback from the JACK process
    thread, so a Python callback there waits for the GIL and makes the whole graph miss its deadline (a flood
    of 1,000 messages a second lost one in ten). rtmidi's own queue is filled in C++ on that thread, without
    the GIL; our thread empties it every half millisecond.
    """

    def __init__(
        self,
        port_name: str,
        on_message: Callable[[float, mido.Message], None],
        client_name: str = CLIENT_NAME + " input",
    ) -> None:
        self.virtual = port_name == VIRTUAL_INPUT
        self.port_name = VIRTUAL_INPUT_NAME if self.virtual else port_name
        self.name = f"MIDI input “{self.port_name}”"
        self.client_name = client_name
        self.on_message = on_message
        self.closed = False
        self._lock = threading.Lock()
        self._client = _open_input_client(client_name)
        try:
            self._client.ignore_types(sysex=True, timing=True, active_sense=True)
            if self.virtual:
                self._client.open_virtual_port(VIRTUAL_INPUT_NAME)
            else:
                ports = self._client.get_ports()
                if port_name not in ports:
                    raise MidiInputError(
                        f"MIDI input “{port_name}” is not there (available: "
                        f"{', '.join(_foreign(ports)) or 'none'}); plug the keyboard in or "
                        "choose another input"
                    )
                self._client.open_port(ports.index(port_name), "in")
        except MidiInputError:
            self._client.delete()
            raise
        except Exception as error:  # noqa: BLE001
            self._client.delete()
            raise MidiInputError(f"Cannot open MIDI input “{port_name}”: {error}") from None
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, name="continuo-midi-input", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        """The reader thread: takes every waiting message from rtmidi's queue, then sleeps a moment."""
        client = self._client
        while not self._stop.is_set():
            try:
                event = client.get_message()
            except Exception:  # noqa: BLE001 - the client was closed under us
                return
            if event is None:
                time.sleep(READ_INTERVAL)
                continue
            at = time.perf_counter()
            raw, _delta = event
            if is_ignored(raw):
                continue
            try:
                message = mido.Message.from_bytes(raw)
            except (ValueError, TypeError):  # a malformed message from a broken device: skip it, keep the rest
                continue
            try:
                self.on_message(at, message)
            except Exception:  # noqa: BLE001 - the reader must outlive a failing listener; that message is lost
                pass

    @property
    def full_name(self) -> str:
        """The virtual port's name in the MIDI graph ("client:port"), for another program to connect to."""
        return f"{self.client_name}:{self.port_name}"

    def ports(self) -> list[str]:
        """Ports of other programs, as this client sees them now (a cheap call: used for hot-plug)."""
        with self._lock:
            if self.closed:
                return []
            return _foreign(self._client.get_ports())

    def present(self, ports: Sequence[str] | None = None) -> bool:
        """Whether the connected port is still in the system (the virtual port always is)."""
        return self.virtual or self.port_name in (self.ports() if ports is None else ports)

    def close(self) -> None:
        """Releases the port; closing twice is harmless."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self._stop.set()
            if self._reader is not threading.current_thread():
                self._reader.join(timeout=1.0)
            try:
                self._client.close_port()
                self._client.delete()
            except Exception:  # noqa: BLE001 - closing must not fail a quit
                pass


class TapSink(Sink):
    """Forwards to a shared sink but resets only its own notes (a metronome or a duet answer stops cleanly)."""

    def __init__(self, target: Callable[[], Sequence[Sink]], name: str = "tap") -> None:
        super().__init__()
        self.name = name
        self._targets = target

    def _send(self, message: mido.Message) -> None:
        for sink in list(self._targets()):
            try:
                sink.send(message)
            except SinkError:
                pass  # the player reports a lost output; a click or an answer note is not worth a second message

    def reset(self) -> None:
        """Turns off the notes this tap turned on, and nothing else (the musician's keys keep sounding)."""
        with self._lock:
            for channel, pitch in sorted(self._sounding):
                self._send(mido.Message("note_off", channel=channel, note=pitch, velocity=0))
            self._sounding.clear()


# --- a take: messages in, notes out -----------------------------------------------------------------


@dataclass
class Take:
    """Turns timed messages into notes (seconds on the perf_counter clock), with velocity and the sustain pedal.

    A key released while the pedal is down sounds on until the pedal comes up (or the key is struck again),
    as on a piano. No Qt: the duet and the tests use it alone.
    """

    held: dict[int, tuple[float, int]] = field(default_factory=dict)  # pitch -> (onset, velocity), key down
    sustained: dict[int, tuple[float, int]] = field(default_factory=dict)  # released, held by the pedal
    pedal: bool = False

    def feed(self, at: float, message: mido.Message) -> list[Note]:
        """Consumes one message; returns the notes it ends."""
        done: list[Note] = []
        if message.type == "note_on" and message.velocity > 0:
            for table in (self.held, self.sustained):
                if message.note in table:  # struck again: the earlier note ends here
                    onset, velocity = table.pop(message.note)
                    done.append(Note(message.note, velocity, onset, max(at, onset + 1e-3)))
            self.held[message.note] = (at, message.velocity)
        elif message.type in ("note_on", "note_off"):
            if message.note in self.held:
                onset, velocity = self.held.pop(message.note)
                if self.pedal:
                    self.sustained[message.note] = (onset, velocity)
                else:
                    done.append(Note(message.note, velocity, onset, max(at, onset + 1e-3)))
        elif message.type == "control_change" and message.control == SUSTAIN:
            self.pedal = message.value >= 64
            if not self.pedal:
                done.extend(
                    Note(pitch, velocity, onset, max(at, onset + 1e-3))
                    for pitch, (onset, velocity) in sorted(self.sustained.items())
                )
                self.sustained.clear()
        return done

    @property
    def sounding(self) -> bool:
        """Whether any key is down or any note is held by the pedal."""
        return bool(self.held or self.sustained)

    def close(self, at: float) -> list[Note]:
        """Ends every held and sustained note at `at` (recording stopped, the port went away)."""
        done = [
            Note(pitch, velocity, onset, max(at, onset + 1e-3))
            for table in (self.held, self.sustained)
            for pitch, (onset, velocity) in sorted(table.items())
        ]
        self.held.clear()
        self.sustained.clear()
        self.pedal = False
        return done


def quantized(notes: Iterable[SongNote], step: float) -> list[SongNote]:
    """Copies of notes with their starts moved to the nearest grid step; lengths kept (at least one step's tenth)."""
    return [note.with_(start=snap_beat(note.start, step), length=max(note.length, step / 10)) for note in notes]


def quantize_notes(song: Song, note_ids: Iterable[int], step: float) -> bool:
    """Quantizes recorded notes afterwards, as one undoable step; False when nothing moved."""
    notes = [note for note in (song.note(note_id) for note_id in note_ids) if note is not None]
    changed = [new for old, new in zip(notes, quantized(notes, step), strict=True) if new != old]
    if not changed:
        return False
    song.replace_notes(changed, text="Quantize")
    return True


def metronome_events(beats: int, beats_per_bar: int, seconds_per_beat: float, start: float = 0.0) -> list:
    """Click events for the scheduler: an accented click on each bar's first beat."""
    events = []
    for beat in range(beats):
        at = start + beat * seconds_per_beat
        pitch = ACCENT_CLICK if beat % max(1, beats_per_bar) == 0 else CLICK
        events.append((at, NOTE_ON, pitch, 100 if pitch == ACCENT_CLICK else 80, METRONOME_CHANNEL))
        events.append((at + 0.05, NOTE_OFF, pitch, 0, METRONOME_CHANNEL))
    events.sort()
    return events


# --- the studio side (GUI thread) -------------------------------------------------------------------


class MidiInputController(QObject):
    """The studio's MIDI input: port choice with hot-plug, thru, and recording takes into the song."""

    ports_changed = Signal(list)  # names of the inputs now available
    input_changed = Signal(str)  # the input now open ("" for none)
    recording_changed = Signal(bool)
    message = Signal(str)  # for the status bar: a lost port, an input that cannot open
    counting_in = Signal(int)  # beats of count-in left (0: recording)
    _polled = Signal(list)  # thread -> GUI: the port list
    _opened = Signal(object, object, int)  # thread -> GUI: (MidiInput or None, error or None, request)

    def __init__(
        self,
        song: Song,
        transport=None,
        thru: Callable[[], Sequence[Sink]] | None = None,
        preferences=None,
        parent: QObject | None = None,
        poll: bool = True,
    ) -> None:
        super().__init__(parent)
        self.song = song
        self.transport = transport
        self.preferences = preferences
        self.thru_targets: Callable[[], Sequence[Sink]] = thru or (lambda: [])
        self.thru_enabled = bool(self._preference("midi_thru", True))
        self.quantize_step: float | None = self._preference("record_quantize", None)  # beats, None: as played
        self.count_in_bars = int(self._preference("record_count_in", 0))
        self.metronome = bool(self._preference("record_metronome", False))
        self.overdub = bool(self._preference("record_overdub", False))
        self.listeners: list[Callable[[float, mido.Message], None]] = []  # called on rtmidi's thread (the duet)
        self.input: MidiInput | None = None
        self.available: list[str] = []
        self.recording = False
        self.received = 0  # messages taken from the queue (benchmarks, tests)
        self.last_take: list[int] = []  # ids of the notes of the last take (Quantize Last Take)
        self._queue: queue.SimpleQueue[tuple[float, mido.Message]] = queue.SimpleQueue()
        self._take = Take()
        self._take_notes: list[SongNote] = []
        self._origin = 0.0  # perf_counter time of `_start_beat`
        self._start_beat = 0.0
        self._tempo = 120.0
        self._count_in_until: float | None = None
        self._request = 0
        self._closed = False
        self._thru_sink = TapSink(self._thru_outputs, "MIDI thru")
        self._click_sink = TapSink(self.thru_targets_checked, "metronome")
        self._clicks: Scheduler | None = None
        self._drain_timer = QTimer(self)
        self._drain_timer.setInterval(DRAIN_INTERVAL_MS)
        self._drain_timer.timeout.connect(self.drain)
        self._drain_timer.start()
        self._polled.connect(self._ports_polled)
        self._opened.connect(self._input_opened)
        song.reset.connect(self._song_reset)
        self._poll_stop = threading.Event()
        self._poller: threading.Thread | None = None
        if poll:
            self._poller = threading.Thread(target=self._poll, name="continuo-midi-hotplug", daemon=True)
            self._poller.start()

    def _preference(self, key: str, default):
        return self.preferences.get(key, default) if self.preferences is not None else default

    def _remember(self, key: str, value) -> None:
        if self.preferences is not None:
            self.preferences.set(key, value)

    def thru_targets_checked(self) -> Sequence[Sink]:
        """The outputs the keyboard and the clicks are heard through."""
        return list(self.thru_targets())

    def _thru_outputs(self) -> Sequence[Sink]:
        return self.thru_targets() if self.thru_enabled else []

    # --- ports ---------------------------------------------------------------------------------------

    @property
    def choice(self) -> str:
        """The input chosen in the preferences ("" for none)."""
        return str(self._preference("midi_input", "") or "")

    def open_input(self, port_name: str, wait: bool = False) -> None:
        """Opens an input (a port name, or VIRTUAL_INPUT) on a helper thread; "" closes the input."""
        self._remember("midi_input", port_name)
        self._request += 1
        request = self._request
        if not port_name:
            self._opened.emit(None, None, request)
            return

        def work() -> None:
            try:
                opened, error = MidiInput(port_name, self.receive), None
            except MidiInputError as failure:
                opened, error = None, failure
            except Exception as failure:  # noqa: BLE001 - a broken driver must not take the studio down
                opened, error = None, MidiInputError(f"Cannot open the MIDI input: {failure}")
            try:
                self._opened.emit(opened, error, request)
            except RuntimeError:  # the studio closed meanwhile
                if opened is not None:
                    opened.close()

        thread = threading.Thread(target=work, name="continuo-open-input", daemon=True)
        thread.start()
        if wait:
            thread.join()

    def _input_opened(self, opened: MidiInput | None, error: MidiInputError | None, request: int) -> None:
        if request != self._request or self._closed:
            if opened is not None:
                opened.close()
            return
        old, self.input = self.input, opened
        if old is not None:
            old.close()
        if error is not None:
            self.message.emit(str(error))
        self.input_changed.emit(opened.port_name if opened is not None else "")

    def receive(self, at: float, message: mido.Message) -> None:
        """Takes one message as the input's reader thread does (any thread): listeners, thru, then the queue.

        Listeners come first so that a duet answer stops before the key that interrupts it sounds.
        """
        for listener in list(self.listeners):
            listener(at, message)
        if self.thru_enabled:
            try:
                self._thru_sink.send(message)
            except SinkError:
                pass
        self._queue.put((at, message))

    def _poll(self) -> None:
        """Hot-plug: reads the port list on a kept-open client and hands it to the GUI thread when it changes."""
        client = None
        last: list[str] | None = None
        delay = 0.0
        while not self._poll_stop.wait(delay):
            delay = POLL_SECONDS
            try:
                if client is None:
                    client = _open_input_client(CLIENT_NAME + " (scan)")
                names = _foreign(client.get_ports())
            except Exception:  # noqa: BLE001 - no MIDI system (yet): an empty list, try again later
                names = []
                delay = POLL_SECONDS * 10  # no MIDI system: look again now and then, quietly
                if client is not None:
                    try:
                        client.delete()
                    except Exception:  # noqa: BLE001
                        pass
                client = None
            if names != last:
                last = names
                try:
                    self._polled.emit(names)
                except RuntimeError:  # the controller was deleted
                    break
        if client is not None:
            client.delete()

    def _ports_polled(self, names: list[str]) -> None:
        if self._closed:
            return
        if names != self.available:
            self.available = list(names)
            self.ports_changed.emit(self.available)
        current = self.input
        if current is not None and not current.virtual and current.port_name not in names:
            self.port_lost(current.port_name)
        elif current is None and self.choice and self.choice in names and self.choice != VIRTUAL_INPUT:
            self.open_input(self.choice)  # the keyboard came back: reconnect, as the musician expects

    def port_lost(self, port_name: str) -> None:
        """The keyboard went away: the take so far is kept (held notes end now) and the musician is told."""
        if self.input is not None and self.input.port_name == port_name:
            self.input.close()
            self.input = None
            self.input_changed.emit("")
        self.drain(budget=None)
        kept = self.stop_recording() if self.recording else 0
        detail = f"; the {kept} notes recorded are kept" if kept else ""
        self.message.emit(
            f"MIDI input “{port_name}” went away{detail}. Plug it in again (it reconnects by "
            "itself) or choose another input in Record ▸ MIDI Input"
        )

    # --- recording -----------------------------------------------------------------------------------

    def _seconds_to_beat(self, at: float) -> float:
        return self._start_beat + max(0.0, at - self._origin) * self._tempo / 60.0

    def start_recording(self) -> bool:
        """Arms and starts a take at the playhead (after the count-in, if any); False with a message if it cannot."""
        if self.recording:
            return False
        if self.input is None:
            self.message.emit("Choose a MIDI input first (Record ▸ MIDI Input)")
            return False
        self.drain(budget=None)  # what was played before pressing Record is not part of the take
        self._tempo = self.song.tempo
        seconds_per_beat = 60.0 / self._tempo
        beats_per_bar = max(1, int(round(self.song.beats_per_bar)))
        count_in = self.count_in_bars * beats_per_bar
        self._start_beat = self.transport.playhead if self.transport is not None else 0.0
        now = time.perf_counter()
        self._origin = now + count_in * seconds_per_beat
        self._count_in_until = self._origin if count_in else None
        self._take = Take()
        self._take_notes = []
        self.recording = True
        if self.metronome or count_in:
            beats = count_in + (METRONOME_BEATS if self.metronome else 0)
            self._clicks = self._clicks or Scheduler([self._click_sink])
            self._clicks.play(metronome_events(beats, beats_per_bar, seconds_per_beat))
        if self.overdub and self.transport is not None and not count_in:
            self.transport.set_playing(True)
        elif self.overdub and count_in:
            QTimer.singleShot(int(count_in * seconds_per_beat * 1000), self._start_overdub)
        self.recording_changed.emit(True)
        return True

    def _start_overdub(self) -> None:
        if self.recording and self.transport is not None:
            self.transport.set_playing(True)

    def stop_recording(self) -> int:
        """Ends the take: held notes end now; the take becomes one undo step. Returns how many notes it has."""
        if not self.recording:
            return 0
        self.drain(budget=None)
        self._land(self._take.close(time.perf_counter()))
        self.recording = False
        if self._clicks is not None:
            self._clicks.stop()
        if self.overdub and self.transport is not None:
            self.transport.set_playing(False)
        notes, self._take_notes = self._take_notes, []
        if notes:
            # The notes are in the song already (drawn while played); this makes the take one undo step.
            self.song.undo_stack.push(
                SongEditCommand(self.song, SongDiff(added=tuple(notes)), "Record", already_applied=True)
            )
        self.last_take = [note.id for note in notes]
        self.recording_changed.emit(False)
        return len(notes)

    def toggle_recording(self) -> None:
        """Record if not recording, stop if recording (the R key)."""
        if self.recording:
            self.stop_recording()
        elif not self.start_recording():
            self.recording_changed.emit(False)  # a checked Record button goes back up

    def add_performance(self, notes: Sequence[Note], part: str = MOTIF) -> list[SongNote]:
        """Lands notes timed on the perf_counter clock into the take (a duet's answer arrives here)."""
        return self._land(notes, part)

    def _land(self, notes: Sequence[Note], part: str = MOTIF) -> list[SongNote]:
        if not self.recording or not notes:
            return []
        added = []
        for note in notes:
            start = self._seconds_to_beat(note.start)
            length = max(self._seconds_to_beat(note.end) - start, 1e-3)
            if self.quantize_step:
                start = snap_beat(start, self.quantize_step)
            added.append(self.song.new_note(note.pitch, note.velocity, start, length, part))
        self._take_notes.extend(added)
        self.song.apply_journal_diff(SongDiff(added=tuple(added)))  # drawn at once; one undo step at the stop
        return added

    def drain(self, budget: float | None = DRAIN_BUDGET_SECONDS) -> None:
        """Takes the messages that arrived and records them (the timer calls this every 10 ms)."""
        deadline = None if budget is None else time.perf_counter() + budget
        done: list[Note] = []
        count = 0
        while True:
            try:
                at, message = self._queue.get_nowait()
            except queue.Empty:
                break
            count += 1
            if self.recording:
                done.extend(self._take.feed(at, message))
            if deadline is not None and count % 64 == 0 and time.perf_counter() > deadline:
                break  # the rest waits for the next tick; the window stays responsive
        self.received += count
        if done:
            self._land(done)
        if self._count_in_until is not None:
            left = self._count_in_until - time.perf_counter()
            beats = max(0, int(left * self._tempo / 60.0 + 0.999))
            self.counting_in.emit(beats)
            if beats == 0:
                self._count_in_until = None

    def _song_reset(self) -> None:
        """A new document: the take in progress belongs to the old one."""
        if self.recording:
            self._take_notes = []
            self._take = Take()
            self.stop_recording()

    # --- options ---------------------------------------------------------------------------------------

    def set_thru(self, enabled: bool) -> None:
        """Plays what comes in through the output at once (MIDI thru)."""
        self.thru_enabled = bool(enabled)
        self._remember("midi_thru", self.thru_enabled)
        if not enabled:
            self._thru_sink.reset()

    def set_quantize(self, step: float | None) -> None:
        """Quantizes notes on the way in to this grid step in beats (None: as played)."""
        self.quantize_step = float(step) if step else None
        self._remember("record_quantize", self.quantize_step)

    def set_count_in(self, bars: int) -> None:
        """Bars of clicks before the take starts (0: none)."""
        self.count_in_bars = max(0, int(bars))
        self._remember("record_count_in", self.count_in_bars)

    def set_metronome(self, enabled: bool) -> None:
        """Clicks on every beat while recording."""
        self.metronome = bool(enabled)
        self._remember("record_metronome", self.metronome)

    def set_overdub(self, enabled: bool) -> None:
        """Plays the song while recording."""
        self.overdub = bool(enabled)
        self._remember("record_overdub", self.overdub)

    def quantize_last_take(self, step: float | None = None) -> bool:
        """Quantizes the last take afterwards (undoable), to `step` or the quantize setting or a 16th."""
        return quantize_notes(self.song, self.last_take, step or self.quantize_step or 0.25)

    def close(self) -> None:
        """Stops recording (keeping the take), closes the input and ends the threads (on quit)."""
        if self._closed:
            return
        if self.recording:
            self.stop_recording()
        self._closed = True
        self._drain_timer.stop()
        self._poll_stop.set()
        if self._clicks is not None:
            self._clicks.close()
        if self.input is not None:
            self.input.close()
            self.input = None
        self._thru_sink.reset()
        if self._poller is not None:
            self._poller.join(timeout=2.0)
