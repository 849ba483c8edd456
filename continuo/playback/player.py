"""The studio's playback engine: the Song and the Transport on one side, the scheduler and its sinks on the other.

It turns the song into events (one numpy pass, so a 10,000-note song costs a few milliseconds of the GUI
thread), starts and stops the scheduler with the transport, follows the playhead, loops, replays edits
made while playing, and sounds the keys and notes the musician clicks. Outputs open on a helper thread
(a JACK client or a synth takes ~100 ms to start) and report back through signals.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from collections.abc import Callable, Sequence

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from ..backends.base import CLIENT_NAME, Sink, SinkError
from ..backends.fluidsynth import FluidSynthSink
from ..backends.rtmidi import DAW_PORT_NAME, MidiPortSink, midi_output_names
from ..background import run_in_background
from ..settings import Preferences
from ..song import CONTINUATION, Song
from ..transport import Transport
from .scheduler import NOTE_OFF, NOTE_ON, Event, LiveFeed, Scheduler

AUTO = "auto"  # the built-in synth if it works, else the studio's virtual MIDI port
SYNTH = "synth"
VIRTUAL = "virtual"
NONE = "none"
PORT_PREFIX = "port:"
PLAYHEAD_INTERVAL_MS = 30


_players: weakref.WeakSet[Player] = weakref.WeakSet()


@atexit.register
def _close_all_players() -> None:
    """At exit, even without a closed window: notes off, the output closed, no audio thread left running.

    (A JACK or FluidSynth thread still running while the process exits aborts it.)
    """
    for player in list(_players):
        try:
            player.close()
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass


def song_events(song: Song, exclude_part: str | None = None, exclude_ids: frozenset[int] | None = None) -> list[Event]:
    """The song's notes as scheduler events, in seconds through its tempo map (optionally without one part, or without
    some notes)."""
    arrays = song.note_arrays()
    keep = np.ones(len(arrays.ids), bool)
    if exclude_part == CONTINUATION:
        keep = ~arrays.continuation
    elif exclude_part is not None:
        keep = arrays.continuation
    if exclude_ids:
        keep &= ~np.isin(arrays.ids, np.fromiter(exclude_ids, np.int64, len(exclude_ids)))
    tempo_map = song.tempo_map
    starts = tempo_map.seconds_array(arrays.starts[keep])
    ends = np.maximum(tempo_map.seconds_array(arrays.ends[keep]), starts)
    pitches = arrays.pitches[keep]
    velocities = arrays.velocities[keep]
    times = np.concatenate([starts, ends])
    kinds = np.concatenate([np.full(len(starts), NOTE_ON), np.full(len(ends), NOTE_OFF)])
    order = np.lexsort((kinds, times))
    rows = zip(
        times[order].tolist(),
        kinds[order].tolist(),
        np.concatenate([pitches, pitches])[order].tolist(),
        np.concatenate([velocities, np.zeros_like(velocities)])[order].tolist(),
        strict=True,
    )
    return [(time, kind, pitch, velocity, 0) for time, kind, pitch, velocity in rows]


def open_output(choice: str, soundfont: str | None = None, program: int = 0) -> Sink:
    """Opens the output a musician chose (auto, synth, virtual, port:NAME); SinkError says what is missing."""
    if choice == SYNTH:
        return FluidSynthSink(soundfont, program)
    if choice == VIRTUAL:
        return MidiPortSink(virtual=True)
    if choice.startswith(PORT_PREFIX):
        return MidiPortSink(choice[len(PORT_PREFIX) :])
    if choice == AUTO:
        try:
            return FluidSynthSink(soundfont, program)
        except SinkError as synth_error:
            try:
                return MidiPortSink(virtual=True)
            except SinkError as midi_error:
                raise SinkError(
                    f"No sound: {synth_error} — and {midi_error}",
                    f"No sound: {synth_error.summary}, and for the Continuo MIDI port {midi_error.summary}",
                ) from None
    raise SinkError(f"Unknown output {choice!r}")


class Player(QObject):
    """Plays the song through the chosen output, following the transport."""

    message = Signal(str)  # something the musician should read (a lost port, a missing synth)
    output_changed = Signal(str)  # a description of the output now in use ("" for none)
    finished = Signal()
    ports_changed = Signal()  # the list of MIDI ports was rescanned and differs
    daw_port_changed = Signal(bool)  # the MIDI port "Continuo", for a DAW to record from, opened or closed
    _sink_failed = Signal(object, object)
    _reached_end = Signal()

    def __init__(
        self, song: Song, transport: Transport, preferences: Preferences | None = None, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.song = song
        self.transport = transport
        self.preferences = preferences if preferences is not None else Preferences.in_memory()
        self.scheduler = Scheduler(
            on_error=lambda sink, error: self._sink_failed.emit(sink, error), on_finished=self._reached_end.emit
        )
        self.output: Sink | None = None
        self.output_error: str | None = None  # why the chosen output could not open, with what to do
        self.output_problem: str | None = None  # the same in one line, naming what was tried
        self._request = 0
        self._opening = False
        self._closed = False
        self._opener: threading.Thread | None = None
        self._open_lock = threading.Lock()
        self._unclaimed: set[Sink] = set()
        self._closers: list[threading.Thread] = []  # outputs being closed in the background
        self._port_names: list[str] = []
        self.daw_port: MidiPortSink | None = None  # "Continuo": everything played goes there too, for a DAW
        self.daw_client_name = CLIENT_NAME
        self._daw_request = 0
        self._daw_opener: threading.Thread | None = None
        self._scanning = False
        self._live: LiveFeed | None = None
        self._moving_playhead = False
        self._pending_update = False
        self._timer = QTimer(self)
        self._timer.setInterval(PLAYHEAD_INTERVAL_MS)
        self._timer.timeout.connect(self._follow)
        self._sink_failed.connect(self._output_failed)
        self._reached_end.connect(self._end_reached)
        _players.add(self)
        transport.playing_changed.connect(self._playing_changed)
        transport.playhead_moved.connect(self._playhead_moved)
        transport.loop_changed.connect(self._loop_changed)
        transport.note_auditioned.connect(self.audition)
        transport.note_audition_ended.connect(self.end_audition)
        song.notes_changed.connect(self._song_changed)
        song.meta_changed.connect(self._meta_changed)
        song.reset.connect(lambda: self.transport.set_playing(False))

    # --- outputs ------------------------------------------------------------------------------------

    @property
    def choice(self) -> str:
        """The output chosen in the preferences."""
        return str(self.preferences.get("output", AUTO))

    def open_output(self, choice: str | None = None, wait: bool = False) -> None:
        """Opens the chosen output on a helper thread (the old one is closed when the new one is ready)."""
        choice = choice or self.choice
        self.preferences.set("output", choice)
        self._request += 1
        request = self._request
        soundfont = self.preferences.get("soundfont", None)
        program = int(self.preferences.get("program", 0))
        self._opening = True
        if choice == NONE:
            self._output_opened((None, None, request))
            return

        def work() -> tuple[Sink | None, SinkError | None, int] | None:
            try:
                sink, error = open_output(choice, soundfont, program), None
            except SinkError as failure:
                sink, error = None, failure
            except Exception as failure:  # noqa: BLE001 - a broken driver must not take the studio down
                sink, error = None, SinkError(f"Cannot open the output: {failure}")
            with self._open_lock:
                if self._closed:  # the studio closed while the output was opening
                    if sink is not None:
                        sink.close()
                    return None
                if sink is not None:
                    self._unclaimed.add(sink)  # until the GUI thread takes it; close() closes it otherwise
            return sink, error, request

        self._opener = run_in_background(self, "continuo-open-output", work, self._output_opened, wait=wait)

    @property
    def opening(self) -> bool:
        """Whether an output is being opened."""
        return self._opening

    @property
    def port_names(self) -> list[str]:
        """Other programs' MIDI inputs as last scanned (a scan opens a MIDI client, ~80 ms: not on the GUI thread)."""
        return list(self._port_names)

    def refresh_ports(self) -> None:
        """Rescans the MIDI ports on a helper thread; `ports_changed` tells when the list is new."""
        if self._scanning or self._closed:
            return
        self._scanning = True

        def work() -> list[str]:
            names = midi_output_names()
            self._scanning = False
            return names

        run_in_background(self, "continuo-scan-ports", work, self._set_port_names)

    def _set_port_names(self, names: list) -> None:
        if names != self._port_names:
            self._port_names = list(names)
            self.ports_changed.emit()

    # --- the port a DAW records from -----------------------------------------------------------------

    @property
    def daw_port_wanted(self) -> bool:
        """Whether the musician asked for the MIDI port "Continuo" (kept in the preferences)."""
        return bool(self.preferences.get("daw_port", False))

    def set_daw_port(self, on: bool, wait: bool = False) -> None:
        """Plays into the studio's own MIDI port "Continuo" as well as the output, so that a DAW can record what
        the studio plays (a virtual port: Linux and macOS); off closes it. Opens on a helper thread."""
        self.preferences.set("daw_port", bool(on))
        self._daw_request += 1
        request = self._daw_request
        if not on:
            old, self.daw_port = self.daw_port, None
            if old is not None:
                self._set_sinks([sink for sink in self.scheduler.sinks if sink is not old])
                old.close()
                self.message.emit(f"The MIDI port “{DAW_PORT_NAME}” is closed")
            self.daw_port_changed.emit(False)
            return
        if self.daw_port is not None:
            return
        client = self.daw_client_name

        def work() -> tuple[Sink | None, SinkError | None, int] | None:
            try:
                sink, error = MidiPortSink(virtual=True, client_name=client, virtual_name=DAW_PORT_NAME), None
            except SinkError as failure:
                sink, error = None, failure
            except Exception as failure:  # noqa: BLE001 - a broken driver must not take the studio down
                sink, error = None, SinkError(str(failure))
            with self._open_lock:
                if self._closed:
                    if sink is not None:
                        sink.close()
                    return None
                if sink is not None:
                    self._unclaimed.add(sink)
            return sink, error, request

        self._daw_opener = run_in_background(self, "continuo-daw-port", work, self._daw_port_opened, wait=wait)

    def _daw_port_opened(self, result: tuple[Sink | None, SinkError | None, int] | None) -> None:
        if result is None:
            return
        sink, error, request = result
        with self._open_lock:
            self._unclaimed.discard(sink)
        if request != self._daw_request or self._closed or self.daw_port is not None:
            if sink is not None:
                sink.close()
            return
        if error is not None:
            self.preferences.set("daw_port", False)
            self.message.emit(f"The MIDI port “{DAW_PORT_NAME}” for a DAW cannot open: {error}")
            self.daw_port_changed.emit(False)
            return
        self.daw_port = sink
        self._set_sinks(self.scheduler.sinks)
        self.message.emit(f"Playing into the MIDI port “{DAW_PORT_NAME}” too: record it in your DAW")
        self.daw_port_changed.emit(True)

    def _set_sinks(self, sinks: Sequence[Sink]) -> None:
        """The scheduler plays into these sinks, and into the DAW's port when it is open."""
        sinks = [sink for sink in sinks if sink is not self.daw_port]
        self.scheduler.set_sinks(sinks + ([self.daw_port] if self.daw_port is not None else []))

    # --- outputs, again --------------------------------------------------------------------------------

    def use_sinks(self, sinks: Sequence[Sink]) -> None:
        """Plays into these sinks instead of the chosen output (tests, benchmarks, a MIDI thru)."""
        self._request += 1
        self._opening = False
        self._replace_output(None)
        self._set_sinks(sinks)
        self.output_changed.emit(", ".join(sink.name for sink in sinks))

    def _output_opened(self, result: tuple[Sink | None, SinkError | None, int] | None) -> None:
        if result is None:  # the studio closed while it was opening (the output is closed already)
            return
        sink, error, request = result
        with self._open_lock:
            self._unclaimed.discard(sink)
        if request != self._request or self._closed:  # a newer choice was made meanwhile, or the studio closed
            if sink is not None:
                sink.close()
            return
        self._opening = False
        self.refresh_ports()  # after the output, so the two never open MIDI clients at once
        self.output_error = str(error) if error is not None else None
        self.output_problem = error.summary if error is not None else None
        self._replace_output(sink)
        self._set_sinks([sink] if sink is not None else [])
        if error is not None:  # the sound indicator keeps the whole line, with the advice in its tooltip
            self.message.emit("No sound: the indicator at the bottom right says why; click it to choose an output")
        self.output_changed.emit(sink.name if sink is not None else "")

    def _replace_output(self, sink: Sink | None, wait: bool = False) -> None:
        old, self.output = self.output, sink
        if old is not None and old is not sink:
            self._set_sinks([])
            if wait:
                old.close()
            else:  # stopping a synth's audio driver or a JACK client can take tens of ms: not on the GUI thread
                closer = threading.Thread(target=old.close, name="continuo-close-output", daemon=True)
                self._closers = [thread for thread in self._closers if thread.is_alive()] + [closer]
                closer.start()

    def servers_changed(self, servers: Sequence[str]) -> None:
        """A sound server (JACK, PipeWire, PulseAudio) appeared or went away: Automatic chooses again when what it
        chose could now be better (no sound, or the MIDI port fallback) or lost its server."""
        if self.choice != AUTO or self._opening or self._closed:
            return
        output = self.output
        if isinstance(output, FluidSynthSink):
            if output.driver in servers or output.driver not in ("jack", "pipewire", "pulseaudio"):
                return  # the synth's own server is still there
        elif output is not None and not servers:
            return  # the MIDI port fallback, and still no server for the synth
        self.open_output(AUTO)

    def _output_failed(self, sink: Sink, error: SinkError) -> None:
        """A port went away mid-playback: playback stops (notes off) and the musician is told what to do."""
        if sink is self.daw_port:  # the DAW's port alone: the music plays on through the output
            self.daw_port = None
            sink.close()
            self.preferences.set("daw_port", False)
            self.message.emit(f"{error}: the DAW no longer hears the studio (Playback ▸ MIDI Port for a DAW)")
            self.daw_port_changed.emit(False)
            return
        self.transport.set_playing(False)
        if sink is self.output:
            self.output = None
            sink.close()
            self.output_error = f"{error}: reconnect it, or choose another output in Playback ▸ Output"
            self.output_problem = f"{error.summary}"
            self.output_changed.emit("")
        self.message.emit(f"{error}: playback stopped. Reconnect it, or choose another output in Playback ▸ Output")

    def set_program(self, program: int) -> None:
        """Chooses the built-in synth's instrument (General MIDI program 0..127)."""
        self.preferences.set("program", int(program))
        if isinstance(self.output, FluidSynthSink):
            self.output.set_program(program)

    def set_soundfont(self, path: str | None) -> None:
        """Chooses the soundfont of the built-in synth and reopens it."""
        self.preferences.set("soundfont", path)
        self.open_output(SYNTH if self.choice in (AUTO, SYNTH) else self.choice)

    # --- playing ------------------------------------------------------------------------------------

    def set_live_feed(self, feed: LiveFeed | None) -> None:
        """The continuation being written arrives through this feed (None when writing is over)."""
        self._live = feed
        if self.scheduler.playing:
            if feed is None:
                self.scheduler.set_events(song_events(self.song), live=None)
            else:
                self.scheduler.set_events(song_events(self.song, exclude_ids=self.song.streamed_ids()), live=feed)

    def play_from(self, beat: float) -> None:
        """Starts playing from a beat (the transport shows it playing)."""
        self.transport.set_playhead(beat)
        if self.transport.playing:
            self._start()
        else:
            self.transport.set_playing(True)

    def _start(self) -> None:
        live = self._live if self.song.is_writing else None
        # The notes written so far are heard through the live feed (the rest of the song plays as it is).
        events = song_events(self.song, exclude_ids=self.song.streamed_ids() if live is not None else None)
        start = self.song.to_seconds(self.transport.playhead)
        self.scheduler.play(events, start, live=live, loop=self._loop_seconds(start))
        self._timer.start()

    def _loop_seconds(self, start: float | None = None) -> tuple[float, float] | None:
        transport = self.transport
        if not transport.loop_enabled:
            return None
        loop = self.song.to_seconds(transport.loop_start), self.song.to_seconds(transport.loop_end)
        if start is not None and start >= loop[1]:
            return None  # started after the loop: play on, as a DAW does
        return loop

    def _playing_changed(self, playing: bool) -> None:
        if playing:
            if self.output is None and not self.scheduler.sinks and not self._opening:
                self.open_output()
            self._start()
        else:
            self._timer.stop()
            self.scheduler.stop()

    def _follow(self) -> None:
        """Moves the playhead to where the music is (the scheduler thread keeps the time)."""
        if self.scheduler.playing:
            self._move_playhead_to_the_music()

    def _move_playhead_to_the_music(self) -> None:
        self._moving_playhead = True
        try:
            self.transport.set_playhead(self.song.to_beats(self.scheduler.position()))
        finally:
            self._moving_playhead = False

    def _playhead_moved(self, beat: float) -> None:
        if self.transport.playing and not self._moving_playhead:
            self.scheduler.seek(self.song.to_seconds(beat))  # the musician clicked the ruler while playing

    def _loop_changed(self) -> None:
        if self.transport.playing:
            self.scheduler.set_loop(self._loop_seconds())

    def _end_reached(self) -> None:
        if self.transport.playing and not self.scheduler.playing:
            self._move_playhead_to_the_music()
            self.transport.set_playing(False)
            self.finished.emit()

    def _song_changed(self) -> None:
        # Edits while playing are heard at once; streamed continuation notes arrive through the live feed.
        if self.transport.playing and not self.song.is_writing and not self._pending_update:
            self._pending_update = True
            QTimer.singleShot(0, self._replay_edits)

    def _replay_edits(self) -> None:
        self._pending_update = False
        if self.transport.playing and not self.song.is_writing:
            self.scheduler.set_events(song_events(self.song))

    def _meta_changed(self, key: str) -> None:
        if key in ("tempo", "tempo_changes") and self.transport.playing:
            self._start()  # the playhead stays on its beat; the seconds around it change

    # --- auditioning --------------------------------------------------------------------------------

    def audition(self, pitch: int, velocity: int) -> None:
        """Sounds a key clicked or a note drawn."""
        self._to_sinks(lambda sink: sink.note_on(pitch, velocity))

    def end_audition(self, pitch: int) -> None:
        """Releases an auditioned note."""
        self._to_sinks(lambda sink: sink.note_off(pitch))

    def all_notes_off(self) -> None:
        """Silences every output now."""
        for sink in list(self.scheduler.sinks):
            sink.reset()

    def _to_sinks(self, action: Callable[[Sink], None]) -> None:
        if self.output is None and not self.scheduler.sinks and not self._opening and not self._closed:
            self.open_output()  # the first key clicked opens the output; it sounds from the next one
        for sink in list(self.scheduler.sinks):
            try:
                action(sink)
            except SinkError as error:
                self._output_failed(sink, error)

    def close(self) -> None:
        """Stops playback, turns every note off, ends the scheduler thread and closes the output (on quit)."""
        with self._open_lock:
            if self._closed:
                return
            self._closed = True
            unclaimed, self._unclaimed = list(self._unclaimed), set()
        for sink in unclaimed:
            sink.close()
        if self._opener is not None and self._opener is not threading.current_thread():
            self._opener.join(timeout=5.0)  # an output half-opened when the studio quits is closed, not leaked
        try:
            self._timer.stop()
        except RuntimeError:  # at exit, Qt may have deleted the timer already
            pass
        if self._daw_opener is not None and self._daw_opener is not threading.current_thread():
            self._daw_opener.join(timeout=5.0)
        self.scheduler.close()
        sinks = list(self.scheduler.sinks)
        self.scheduler.set_sinks([])
        for sink in sinks:
            if sink is self.output or sink is self.daw_port:
                sink.close()
        if self.daw_port is not None:
            self.daw_port.close()
            self.daw_port = None
        self._replace_output(None, wait=True)
        for closer in self._closers:
            closer.join(timeout=5.0)  # no audio thread may outlive the studio (JACK aborts the process)
