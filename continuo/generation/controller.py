"""The Qt side of generation: Continue, Continue from Playhead, Fill, Accompany and Cancel turned into requests for the
worker, and what it reports streamed into the song, the player and the panel (polled every 25 ms)."""

from __future__ import annotations

import math
import os
import queue
import random
import time
from collections.abc import Callable, Iterable

import torch
from PySide6.QtCore import QObject, Qt, QTimer, Signal

from music_transformer import Note
from music_transformer.limits import MAX_PIECE_SECONDS, MAX_VARIATIONS, seed_for
from music_transformer.phrases import phrase_release
from music_transformer.sampling import MAX_SECONDS

from ..playback.scheduler import LiveFeed
from ..song import CONTINUATION, MOTIF, EditRefusedError, Song, SongLockedError, WrittenVariation
from .messages import (
    DeviceChanged,
    Finished,
    LoadFailed,
    ModelLoaded,
    NotesWritten,
    Notice,
    Progress,
    Variation,
    WorkerMessage,
)
from .request import GenerationRequest, key_for, pitches_for, velocity_range
from .variations import VariationKeeper
from .worker import AUTO_DEVICE, GenerationWorker

DRAIN_INTERVAL_MS = 25

CONTINUE, FROM_PLAYHEAD, FILL, ACCOMPANY = "continue", "from playhead", "fill", "accompany"  # the ways of writing
STREAM_TEXTS = {CONTINUE: "Continue", FROM_PLAYHEAD: "Continue from playhead", FILL: "Fill", ACCOMPANY: "Accompany"}
NO_FILL_TIP = "This model was made before infilling: load a newer model to fill gaps"
_EPSILON = 1e-6  # beats: a note starting this close to a range's edge starts on it
MIN_WRITE_SECONDS = 0.05  # the least time left before the song's end that Continue writes into
ESTIMATE_AFTER = 2.0  # seconds of writing before the time left is estimated


def length_seconds(song: Song, start_beat: float) -> float:
    """How long a continuation from `start_beat` writes, in seconds: the settings' length in bars (each as long as
    the metre and tempo where it falls) or in seconds."""
    settings = song.settings
    if settings.length_unit == "bars":
        return song.seconds_between(start_beat, song.add_bars(start_beat, settings.length))
    return float(settings.length)


class GenerationController(QObject):
    """Connects Continue, Fill and Cancel to the worker, the song and playback, and keeps the variations."""

    model_loaded = Signal(str, str)  # source, description
    model_failed = Signal(str, str)  # source, what went wrong (the previous model stays)
    busy_changed = Signal(bool)  # generating or loading
    progress = Signal(int, int, float)  # variation number (-1: those behind the heard one), count, fraction done
    variations_changed = Signal()
    about_to_start = Signal()  # before the settings are read: a value still being typed is committed
    device_changed = Signal(str)
    message = Signal(str)  # for the status bar
    error = Signal(str, str)  # for a dialog (title, text): a model the musician chose cannot be loaded
    finished = Signal(bool)  # stopped before its end (cancelled, or failed)

    def __init__(self, song: Song, player=None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.song = song
        self.player = player
        self.worker = GenerationWorker()
        self.device = AUTO_DEVICE
        self.model_source: str | None = None
        self.model_description = ""
        self.model_error: str | None = None
        self.model_has_styles = False  # whether the model knows the style tokens (and can fill gaps)
        self.model_styles: tuple[str, ...] = ()  # the styles it knows
        self.listen = True  # play the continuation while it is written
        self.grid_step: Callable[[], float | None] = lambda: None  # the roll's grid in beats (None: off)
        self._generating = False
        self._loading = 0
        self._variation_count = 0
        self._writing_variation = False
        self._variations = VariationKeeper(song)
        self._closed = False
        self._chosen: str | None = None  # a model file the musician chose, being loaded
        self._phase = (0, 0.0)  # the variation the progress shows (-1: those behind the heard one), since when
        self.seconds_left: float | None = None  # the estimate of the time that progress has left (None: not yet)
        self._timer = QTimer(self)
        self._timer.setInterval(DRAIN_INTERVAL_MS)
        self._timer.timeout.connect(self.drain)
        song.meta_changed.connect(self._meta_changed)
        song.notes_changed.connect(self._check_variations)
        song.reset.connect(self._variations.forget)

    # --- state ---------------------------------------------------------------------------------------

    @property
    def generating(self) -> bool:
        """Whether a continuation is being generated."""
        return self._generating

    @property
    def loading(self) -> bool:
        """Whether a model is being loaded."""
        return self._loading > 0

    @property
    def has_model(self) -> bool:
        """Whether a model is ready to continue."""
        return self.model_source is not None

    @property
    def can_fill(self) -> bool:
        """Whether the model can fill a gap (a model made before styles cannot)."""
        return self.has_model and self.model_has_styles

    @property
    def variations(self) -> list[WrittenVariation]:
        """The variations of the continuation that can still be picked, in order."""
        current = self.song.variations
        return list(current.variations) if current is not None else []

    @property
    def chosen_variation(self) -> int:
        """The number of the variation in the song now."""
        current = self.song.variations
        return current.chosen if current is not None else 0

    # --- models --------------------------------------------------------------------------------------

    def choose_model(self, path: str | os.PathLike) -> None:
        """Loads a model file the musician chose; once it is ready the song names it (a session remembers it),
        and if it cannot be loaded a dialog says why and the current model stays."""
        self._chosen = str(path)
        self.load_model(self._chosen)

    def load_model(self, source: str | None = None, device: str | None = None) -> None:
        """Loads a model in the background ("default", a path, or the song's own); the current one stays until then."""
        source = source or self.song.model
        self._ensure_worker()
        if device is not None:
            self.device = device
        self._loading += 1
        self.worker.load(str(source), self.device)
        self._set_busy()

    def _ensure_worker(self) -> None:
        """A closed controller (a quit the musician then cancelled) gets a fresh worker."""
        if not self.worker.alive:
            self.worker = GenerationWorker()
            self.model_source = None
            self._closed = False

    def set_device(self, device: str) -> None:
        """Runs the model on auto, cpu or cuda (reloads it there)."""
        if device == self.device:
            return
        if device == "cuda" and not torch.cuda.is_available():
            self.message.emit("There is no CUDA GPU on this computer; the model stays on the CPU")
            return
        self.device = device
        if self.model_source is not None:
            self.load_model(self.model_source)

    def _meta_changed(self, key: str) -> None:
        if key == "model" and self.song.model != self.model_source and not self._closed:
            self.load_model(self.song.model)  # a session that names another model

    # --- generating ----------------------------------------------------------------------------------

    def continue_song(self) -> bool:
        """Starts writing a continuation of the motif after its end (Continue); False with a message when it
        cannot. A continuation not yet accepted is replaced."""
        return self._write(CONTINUE, self.song.motif_end())

    def continue_from(self, beat: float) -> bool:
        """Continue from Playhead: the music before `beat` (either part) is the motif; the notes from `beat` on
        are replaced, as the same undo step, unless the settings keep them."""
        return self._write(FROM_PLAYHEAD, max(0.0, float(beat)))

    def range_problem(self, kind: str, start_beat: float, end_beat: float | None = None) -> str:
        """Why music cannot be written from `start_beat` (to `end_beat`, a Fill's), in words ("" when it can): the
        range must lie within the song's last beat at its tempo (two hours), checked before anything is
        removed."""
        song = self.song
        last = song.last_beat()
        what = {FILL: "Cannot fill", FROM_PLAYHEAD: "Cannot continue from the playhead"}.get(kind, "Cannot continue")
        limit = f"the longest song Continuo keeps ends at beat {last:,.0f} ({MAX_PIECE_SECONDS / 3600:g} hours at "
        limit += f"{song.tempo:g} BPM)" if song.tempo_map.is_steady else "its tempi)"
        if not math.isfinite(start_beat) or song.seconds_between(start_beat, last) < MIN_WRITE_SECONDS:
            return f"{what} at beat {start_beat:,.6g}: {limit}"
        if end_beat is not None and not (math.isfinite(end_beat) and end_beat <= last + _EPSILON):
            return f"{what} up to beat {end_beat:,.6g}: {limit}"
        return ""

    def fill(self, start: float, end: float) -> bool:
        """Fill: writes the beats [start, end) so that they join the music before and after; the notes that
        start inside are replaced, as the same undo step, unless the settings keep them."""
        if math.isnan(start) or math.isnan(end):  # not clamped to 0: said as it was asked
            self.message.emit(self.range_problem(FILL, float(start), float(end)))
            return False
        start, end = sorted((max(0.0, float(start)), max(0.0, float(end))))
        if end - start < 1e-3:
            self.message.emit("Select a time range to fill: drag in the ruler, or select notes")
            return False
        return self._write(FILL, start, end)

    def _performance(self, notes) -> list[Note]:
        song = self.song
        return [Note(n.pitch, n.velocity, song.to_seconds(n.start), song.to_seconds(n.end)) for n in notes]

    def _ready(self) -> bool:
        """Whether writing can start now (a value being typed is committed first); says why not."""
        self.about_to_start.emit()
        if self._generating or self.song.is_writing:
            return False
        if not self.worker.alive:
            self.load_model()
        if not self.has_model:
            self.message.emit(self.model_error or "The model is still loading; Continue in a moment")
            return False
        return True

    def accompany(self, keep_ids: Iterable[int] = ()) -> bool:
        """Accompany: keeps the notes `keep_ids` (the selection) exactly as they are and writes another part around
        them, over their span, in the panel's pitch range outside the kept notes' lowest to highest pitch; with
        none given, keeps the notes outside the panel's pitch range and writes in it. The notes of the range written
        in that start inside the span, and an unaccepted continuation, are replaced (as one undo step) unless the
        settings keep them. False with a message when it cannot."""
        if not self._ready():
            return False
        song, settings = self.song, self.song.settings
        low, high = settings.lowest, settings.highest
        keep_ids = set(keep_ids)
        if keep_ids:
            kept = [note for note in song.notes() if note.id in keep_ids]
            if any(note.part == CONTINUATION for note in kept):
                self.message.emit(
                    "Accompany keeps your own notes: accept the continuation first (Ctrl+Shift+Enter), or select "
                    "only notes of the motif"
                )
                return False
            lowest, highest = min(note.pitch for note in kept), max(note.pitch for note in kept)
            writable = {pitch for pitch in range(low, high + 1) if not lowest <= pitch <= highest}
        else:
            kept = [note for note in song.notes(MOTIF) if not low <= note.pitch <= high]
            writable = set(range(low, high + 1))
        if not kept:
            self.message.emit(
                "Accompany: select the notes to keep (Ctrl-drag on the keyboard selects a range of pitches), or set "
                "the panel's pitch range to where the new part goes"
            )
            return False
        pitches = pitches_for(settings, self._performance(kept)) & writable
        if not pitches:
            self.message.emit("Accompany: no pitch is left to write in outside the kept notes: widen the pitch range")
            return False
        start_beat = min(note.start for note in kept)
        end_beat = max(note.end for note in kept)
        kept_ids = {note.id for note in kept}
        replace = [note.id for note in song.notes(CONTINUATION)]
        if not settings.keep_existing:
            replace += [
                note.id
                for note in song.notes(MOTIF)
                if note.id not in kept_ids
                and note.pitch in writable
                and start_beat - _EPSILON <= note.start < end_beat - _EPSILON
            ]
        step = self.grid_step() if settings.snap else None
        if not self._open_stream(ACCOMPANY, replace, step):
            return False
        start = song.to_seconds(start_beat)
        keep = self._performance(kept)
        request = GenerationRequest(
            motif=[],
            start=start,
            seconds=song.to_seconds(end_beat) - start,
            temperature=float(settings.temperature),
            top_k=int(settings.top_k) or None,
            top_p=float(settings.top_p) if settings.top_p < 1.0 else None,
            seeds=self._seeds(),
            live=LiveFeed(start),
            repetition_penalty=float(settings.repetition_penalty),
            style=settings.style,
            grid=song.seconds_between(start_beat, start_beat + step) if step else None,
            velocities=velocity_range(settings, keep),
            keep=keep,
            write_range=frozenset(pitches),
        )
        self._launch(request, ACCOMPANY, start_beat)
        return True

    def _write(self, kind: str, start_beat: float, end_beat: float | None = None) -> bool:
        if not self._ready():
            return False
        if kind == FILL and not self.model_has_styles:
            self.message.emit(NO_FILL_TIP)
            return False
        problem = self.range_problem(kind, start_beat, end_beat)
        if problem:
            self.message.emit(problem)
            return False
        song, settings = self.song, self.song.settings
        replace: list[int] | None = None
        after: list[Note] | None = None
        held: list[Note] = []
        if kind == CONTINUE:
            context = song.performance_notes(MOTIF)
            seconds = length_seconds(song, start_beat)
        else:
            notes = song.notes()
            later = [note for note in notes if note.start >= start_beat - _EPSILON]
            context = self._performance([note for note in notes if note.start < start_beat - _EPSILON])
            if kind == FILL:
                in_the_way = [note for note in later if note.start < end_beat - _EPSILON]
                after = self._performance([note for note in later if note.start >= end_beat - _EPSILON])
                seconds = song.seconds_between(start_beat, end_beat)
            else:  # the notes sounding across the playhead are written again, ending where the model ends them
                crossing = [note for note in notes if note.start < start_beat - _EPSILON < note.end - 2 * _EPSILON]
                in_the_way = later + ([] if settings.keep_existing else crossing)
                held = self._performance(crossing)
                seconds = length_seconds(song, start_beat)
            replace = [] if settings.keep_existing else [note.id for note in in_the_way]
        # what is written stays within the song's two hours (what the stream keeps of it would be cut there)
        seconds = min(seconds, song.seconds_between(start_beat, song.last_beat()))
        release = 0.0
        if kind != FILL and settings.end_at_bar:  # on to the bar line after the length, its last beat releasing
            begin = song.to_seconds(start_beat)
            line = song.bar_line_at_or_after(song.to_beats(begin + seconds))
            if line > song.last_beat() + _EPSILON:
                self.message.emit(
                    f"Cannot continue to the bar line: bar {song.bar_at(line).index + 1} starts past the longest "
                    f"song Continuo keeps ({MAX_PIECE_SECONDS / 3600:g} hours); turn off End at a bar line or "
                    "start earlier"
                )
                return False
            seconds = song.to_seconds(line) - begin
            if seconds > MAX_SECONDS:  # past the longest piece written at once
                self.message.emit(
                    f"Cannot continue: at most {MAX_SECONDS // 60:.0f} minutes of music at once, not {seconds:g} s"
                )
                return False
            release = phrase_release(seconds, song.seconds_between(line - 1.0, line))
        heard = context + (after or [])  # the music the key is detected in and the dynamics matched to
        pitches = pitches_for(settings, heard)
        if not pitches:
            key = key_for(settings, heard)
            self.message.emit(f"No note of {key.name if key else 'any key'} lies in the pitch range: widen it")
            return False
        seeds = self._seeds()
        step = self.grid_step() if settings.snap else None
        if not self._open_stream(kind, replace, step):
            return False
        start = song.to_seconds(start_beat)
        request = GenerationRequest(
            motif=context,
            start=start,
            seconds=seconds,
            temperature=float(settings.temperature),
            top_k=int(settings.top_k) or None,
            top_p=float(settings.top_p) if settings.top_p < 1.0 else None,
            seeds=seeds,
            live=LiveFeed(start),
            repetition_penalty=float(settings.repetition_penalty),
            style=settings.style,
            after=after,
            allowed_pitches=None if len(pitches) == 128 else pitches,
            grid=song.seconds_between(start_beat, start_beat + step) if step else None,
            velocities=velocity_range(settings, heard),
            held=[] if settings.keep_existing else held,
            release_seconds=release,
        )
        self._launch(request, FILL if kind == FILL else CONTINUE, start_beat)
        return True

    def _open_stream(self, kind: str, replace: list[int] | None, step: float | None) -> bool:
        """Opens the song's stream for what `kind` writes (on a grid of `step` beats, or none), `replace` set aside
        as the same undo step, and starts a new set of variations; False (and says why) when the song is locked."""
        try:
            self.song.begin_stream(CONTINUATION, STREAM_TEXTS[kind], quantize=step, replace=replace)
        except SongLockedError as error:
            self.message.emit(str(error))
            return False
        self.song.set_variations(None)  # a new set begins
        return True

    def _seeds(self) -> list[int]:
        """One seed per variation the settings ask for: the fixed seed and those after it, else drawn."""
        settings = self.song.settings
        count = max(1, min(MAX_VARIATIONS, int(settings.variations)))
        if settings.seed is not None:
            return [seed_for(int(settings.seed), number) for number in range(count)]
        return [random.randrange(2**31) for _ in range(count)]

    def _launch(self, request: GenerationRequest, kind: str, start_beat: float) -> None:
        """Hands a request to the worker (the stream into the song is open): its variations are kept as a set of
        `kind`, the first heard from `start_beat` as it is written."""
        settings, count, feed = self.song.settings, len(request.seeds), request.live
        self._variations.begin(kind, start_beat, count, settings)
        self._variation_count = count
        self._generating = True
        self._writing_variation = True
        self.variations_changed.emit()
        self.worker.generate(request)
        if self.player is not None:
            self.player.set_live_feed(feed)
            if self.listen and not self.player.transport.playing:
                self.player.play_from(start_beat)
        self._set_busy()
        self._phase = (0, time.perf_counter())
        self.seconds_left = None
        self.progress.emit(0, count, 0.0)  # the variation heard is written first

    def cancel(self) -> None:
        """Stops generating; what was written stays (one undoable step) and the sound stops."""
        if not self._generating:
            return
        self.worker.cancel.set()
        if self.player is not None:
            self.player.transport.set_playing(False)
            self.player.all_notes_off()

    def drain(self) -> None:
        """Takes everything the worker reported and applies it (the timer calls this every 25 ms)."""
        notes: list[Note] = []
        while True:
            try:
                message = self.worker.outbox.get_nowait()
            except queue.Empty:
                break
            if isinstance(message, NotesWritten):
                if message.variation == 0 and self._writing_variation:
                    notes.extend(message.notes)
                continue
            if notes:  # keep the order: notes reported before this message go into the song first
                self._append(notes)
                notes = []
            self._handle(message)
        if notes:
            self._append(notes)

    def _append(self, notes: list[Note]) -> None:
        if self.song.stream_part == CONTINUATION:
            self._variations.own(self.song.append(notes))

    def _handle(self, message: WorkerMessage) -> None:
        match message:
            case Progress(variation, fraction):
                self._estimate(variation, fraction)
                self.progress.emit(variation, self._variation_count, fraction)
            case Variation():
                if message.number == 0 and self._writing_variation:
                    self._finish_writing()
                self._variations.keep(message)
                self.variations_changed.emit()
            case Finished(cancelled, failed):
                self._generating = False
                if self._writing_variation:  # the worker failed before the first variation finished
                    self._finish_writing()
                self._set_busy()
                self.finished.emit(cancelled or failed)
                if cancelled:
                    self.message.emit("Cancelled: the notes written so far are kept (Undo removes them)")
            case ModelLoaded(source, description, device, _seconds, styles):
                self._loading -= 1
                self.model_source, self.model_description, self.model_error = source, description, None
                self.model_has_styles, self.model_styles = bool(styles), styles
                self.model_loaded.emit(source, description)
                self.device_changed.emit(device)
                self._set_busy()
                if source == self._chosen:
                    self._chosen = None
                    self.message.emit(f"Model loaded: {description}")
                    self._remember_model()
            case LoadFailed(source, text):
                self._loading -= 1
                kept = f" Still using {self.model_description.split(':')[0]}." if self.model_source else ""
                if self.model_source is None:
                    self.model_error = text
                self.model_failed.emit(source, text + kept)
                self._set_busy()
                if source == self._chosen:
                    self._chosen = None
                    self.error.emit("Cannot load the model", text + kept)
                else:
                    self.message.emit(text + kept)
            case DeviceChanged(device):
                self.device_changed.emit(device)
            case Notice(text):
                self.message.emit(text)

    def _estimate(self, variation: int, fraction: float) -> None:
        """The time left of what the progress shows (the heard variation, then the others behind it), from the
        pace so far, once it has been written for ESTIMATE_AFTER seconds (before, the pace is still settling)."""
        now = time.perf_counter()
        if self._phase[0] != variation:
            self._phase = (variation, now)
        elapsed = now - self._phase[1]
        if elapsed >= ESTIMATE_AFTER and fraction > 0.0:
            self.seconds_left = elapsed * (1.0 - min(fraction, 1.0)) / fraction
        else:
            self.seconds_left = None

    def _remember_model(self, *args) -> None:
        """The song names the model the musician chose, once no music is streaming into it."""
        if self.model_source is None or self.song.model == self.model_source:
            return
        try:
            self.song.set_model(self.model_source)
        except SongLockedError:  # recording or writing: when it ends
            self.song.writing_changed.connect(self._remember_model, Qt.SingleShotConnection)

    def _finish_writing(self) -> None:
        self._writing_variation = False
        if self.song.stream_part == CONTINUATION:
            self.song.commit()
        if self.player is not None:
            self.player.set_live_feed(None)

    def _check_variations(self) -> None:
        """The set ends once none of its notes is a continuation note any more: the panel greys it out."""
        if self._variations.check():
            self.variations_changed.emit()

    def choose_variation(self, number: int) -> bool:
        """Puts another variation in the place of the one in the song, as one undoable step; False when the set
        has ended (accepted or discarded) or music is streaming in."""
        try:
            current = self._variations.choose(number)
        except EditRefusedError as error:
            self.message.emit(f"Variation {number + 1} cannot be picked: {error}")
            return False
        if current is None:
            return False
        self.variations_changed.emit()
        if self.player is not None and self.listen and not self.player.transport.playing:
            self.player.play_from(current.start)  # audition it from the seam
        return True

    def _set_busy(self) -> None:
        busy = self._generating or self._loading > 0
        if busy and not self._timer.isActive():
            self._timer.start()
        elif not busy and self._timer.isActive():
            self._timer.stop()
        self.busy_changed.emit(busy)

    def close(self) -> None:
        """Cancels generation, keeps what was written, and ends the worker thread (window closing)."""
        if self._closed:
            return
        self._closed = True
        self.worker.cancel.set()
        ended = self.worker.stop(timeout=5.0)
        self.drain()
        if self._writing_variation:
            self._finish_writing()
        self._generating = False
        self._timer.stop()
        if not ended:
            self.message.emit("The model was still busy when the studio closed")
