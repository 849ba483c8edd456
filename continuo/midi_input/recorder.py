"""Recording takes: messages in, notes out, streamed into the song as they are played.

A take starts at the playhead (after a bar of count-in, if asked) and is one streaming edit of the song
(`Song.begin_stream`): each note is drawn the moment its key is released, the take is one undo step when it
stops, and the song is locked meanwhile. Options: count-in, metronome, overdub (the song plays along),
quantize on the way in (the Song's quantizer), and quantizing the last take afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import mido
from PySide6.QtCore import QObject, QTimer, Signal

from music_transformer import Note

from ..backends.base import Sink, TapSink
from ..playback.scheduler import NOTE_OFF, NOTE_ON, Event, Scheduler
from ..settings import Preferences
from ..song import MOTIF, Song, SongLockedError, SongNote
from ..transport import Transport

SUSTAIN = 64
METRONOME_CHANNEL = 9  # General MIDI drums
ACCENT_CLICK, CLICK = 76, 77  # high and low wood block
METRONOME_BEATS = 4096  # clicks scheduled ahead: far longer than any take
DEFAULT_QUANTIZE = 0.25  # Quantize Last Take with quantizing off: to sixteenths


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


def metronome_events(beats: int, beats_per_bar: int, seconds_per_beat: float, start: float = 0.0) -> list[Event]:
    """Click events for the scheduler: an accented click on each bar's first beat."""
    events = []
    for beat in range(beats):
        at = start + beat * seconds_per_beat
        pitch = ACCENT_CLICK if beat % max(1, beats_per_bar) == 0 else CLICK
        events.append((at, NOTE_ON, pitch, 100 if pitch == ACCENT_CLICK else 80, METRONOME_CHANNEL))
        events.append((at + 0.05, NOTE_OFF, pitch, 0, METRONOME_CHANNEL))
    events.sort()
    return events


class Recorder(QObject):
    """Records takes into the song (GUI thread): count-in, metronome, overdub and quantize, remembered."""

    recording_changed = Signal(bool)
    counting_in = Signal(int)  # beats of count-in left (0: recording)
    message = Signal(str)  # for the status bar: why a take cannot start

    def __init__(
        self,
        song: Song,
        transport: Transport | None,
        outputs: Callable[[], Sequence[Sink]],
        preferences: Preferences,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.song = song
        self.transport = transport
        self.preferences = preferences
        self.quantize_step: float | None = preferences.get("record_quantize", None)  # beats, None: as played
        self.count_in_bars = int(preferences.get("record_count_in", 0))
        self.metronome = bool(preferences.get("record_metronome", False))
        self.overdub = bool(preferences.get("record_overdub", False))
        self.recording = False
        self.origin = 0.0  # the perf_counter time the take's first beat sounds (after the count-in)
        self.start_beat = 0.0  # where the take starts in the song: the playhead when Record was pressed
        self.last_take: list[int] = []  # ids of the notes of the last take (Quantize Last Take)
        self._take = Take()
        self._take_ids: list[int] = []
        self._count_in_until: float | None = None
        self._click_sink = TapSink(outputs, "metronome")
        self._clicks: Scheduler | None = None
        song.reset.connect(self._song_reset)

    # --- takes ---------------------------------------------------------------------------------------------

    def start(self) -> bool:
        """Starts a take at the playhead (after the count-in, if any); False with a message if it cannot."""
        if self.recording:
            return False
        try:
            self.song.begin_stream(MOTIF, quantize=self.quantize_step)
        except SongLockedError as error:
            self.message.emit(str(error))
            return False
        self.start_beat = self.transport.playhead if self.transport is not None else 0.0
        # the count-in and the clicks at the tempo and metre where the take starts (the song is locked meanwhile)
        seconds_per_beat = 60.0 / self.song.tempo_at(self.start_beat)
        beats_per_bar = max(1, int(round(self.song.bar_at(self.start_beat).length)))
        count_in = self.count_in_bars * beats_per_bar
        self.origin = time.perf_counter() + count_in * seconds_per_beat
        self._count_in_until = self.origin if count_in else None
        self._take = Take()
        self._take_ids = []
        self.recording = True
        if self.metronome or count_in:
            beats = count_in + (METRONOME_BEATS if self.metronome else 0)
            self._clicks = self._clicks or Scheduler([self._click_sink])
            self._clicks.play(metronome_events(beats, beats_per_bar, seconds_per_beat))
        if self.overdub and self.transport is not None:
            if count_in:
                QTimer.singleShot(int(count_in * seconds_per_beat * 1000), self._start_overdub)
            else:
                self.transport.set_playing(True)
        self.recording_changed.emit(True)
        return True

    def _start_overdub(self) -> None:
        if self.recording and self.transport is not None:
            self.transport.set_playing(True)

    def receive(self, messages: Iterable[tuple[float, mido.Message]]) -> None:
        """Records messages that arrived (perf_counter time, message), in order, and shows the count-in."""
        if self.recording:
            done: list[Note] = []
            for at, message in messages:
                done.extend(self._take.feed(at, message))
            self.land(done)
        if self._count_in_until is not None:
            left = self._count_in_until - time.perf_counter()
            beats = max(0, int(left * self.song.tempo_at(self.start_beat) / 60.0 + 0.999))
            self.counting_in.emit(beats)
            if beats == 0:
                self._count_in_until = None

    def land(self, notes: Sequence[Note], part: str = MOTIF) -> list[SongNote]:
        """Puts notes timed on the perf_counter clock into the take, drawn at once (a duet's answer lands here too)."""
        if not self.recording or not notes or self.song.stream_part != MOTIF:
            return []
        start = self.song.to_seconds(self.start_beat)  # the song's seconds where the take's clock starts

        def song_seconds(at: float) -> float:
            return start + max(0.0, at - self.origin)  # played during the count-in: at the take's start

        added = self.song.append(
            [Note(note.pitch, note.velocity, song_seconds(note.start), song_seconds(note.end)) for note in notes], part
        )
        self._take_ids.extend(note.id for note in added)
        return added

    def stop(self) -> int:
        """Ends the take: held notes end now and the take becomes one undo step. Returns how many notes it has."""
        if not self.recording:
            return 0
        self.land(self._take.close(time.perf_counter()))
        self.recording = False
        self._count_in_until = None
        if self._clicks is not None:
            self._clicks.stop()
        if self.overdub and self.transport is not None:
            self.transport.set_playing(False)
        if self.song.stream_part == MOTIF:
            self.song.commit()
        self.last_take, self._take_ids = self._take_ids, []
        self.recording_changed.emit(False)
        return len(self.last_take)

    def _song_reset(self) -> None:
        """A new document: the take in progress belonged to the old one (opening it ended the stream)."""
        if self.recording:
            self._take = Take()
            self._take_ids = []
            self.stop()

    # --- options -------------------------------------------------------------------------------------------

    def set_quantize(self, step: float | None) -> None:
        """Quantizes notes on the way in to this grid step in beats (None: as played)."""
        self.quantize_step = float(step) if step else None
        self.preferences.set("record_quantize", self.quantize_step)

    def set_count_in(self, bars: int) -> None:
        """Bars of clicks before the take starts (0: none)."""
        self.count_in_bars = max(0, int(bars))
        self.preferences.set("record_count_in", self.count_in_bars)

    def set_metronome(self, enabled: bool) -> None:
        """Clicks on every beat while recording."""
        self.metronome = bool(enabled)
        self.preferences.set("record_metronome", self.metronome)

    def set_overdub(self, enabled: bool) -> None:
        """Plays the song while recording."""
        self.overdub = bool(enabled)
        self.preferences.set("record_overdub", self.overdub)

    def quantize_last_take(self, step: float | None = None) -> bool:
        """Quantizes the last take afterwards (undoable), to `step` or the quantize setting or a 16th."""
        return self.song.quantize(self.last_take, step or self.quantize_step or DEFAULT_QUANTIZE)

    def close(self) -> None:
        """Ends the take in progress (it is kept) and the metronome's thread."""
        self.stop()
        if self._clicks is not None:
            self._clicks.close()
