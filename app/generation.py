"""Generation in the studio: a worker thread runs the model; a controller streams its notes into the song.

    worker (thread)                              controller (GUI thread, polls every 25 ms)
    load checkpoint ─────── outbox queue ──────> model ready / "cannot load, keeping the previous model"
    generate() tokens ─> Decoder ─> notes ─────> song.append(notes)  (a stream into the continuation)
                          └──> LiveFeed ──────────────────────────────> playback scheduler (no GUI hop)

The worker owns the model; nothing else touches it, so loading, moving it to another device and sampling
never race. Everything the GUI needs arrives through one queue that the controller drains on a timer,
so a burst of notes costs one song edit, not one per token, and the GUI thread never waits on the model.
"""

from __future__ import annotations

import os
import queue
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PySide6.QtCore import QObject, Qt, QTimer, Signal

from music_transformer import CheckpointError, Note, load_checkpoint
from music_transformer.checkpoint import default_device
from music_transformer.events import (
    NOTE_ON_OFFSET,
    SECONDS_PER_TICK,
    Decoder,
    has_styles,
    is_note_on,
    is_time_shift,
    shift_ticks,
)
from music_transformer.generate import generate, primer_tokens

from .playback.scheduler import NOTE_OFF, NOTE_ON, Event, LiveFeed
from .song import ANY_STYLE, CONTINUATION, DEFAULT_MODEL, MOTIF, Song, SongLockedError

DRAIN_INTERVAL_MS = 25
MAX_VARIATIONS = 8
AUTO_DEVICE = "auto"


def torch_threads() -> int:
    """Intra-op threads for generation: $CONTINUO_TORCH_THREADS, else 1.

    One thread decodes a token a few percent slower than two on a small CPU, but torch's idle threads spin
    and compete with the playback and GUI threads; one keeps the music steady (see bench/README.md).
    """
    try:
        return max(1, int(os.environ.get("CONTINUO_TORCH_THREADS", "1")))
    except ValueError:
        return 1


def resolve_device(choice: str) -> torch.device:
    """auto (the GPU if there is one), cpu or cuda."""
    if choice == AUTO_DEVICE:
        return default_device()
    return torch.device(choice)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether an error is the GPU running out of memory."""
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()


MOST_LIKELY_BEAMS = 4  # beams of the "most likely" choice: about 3.6x the time of sampling


@dataclass
class GenerationRequest:
    """One press of Continue: the motif, where the continuation starts, how long, how to sample, how many."""

    motif: list[Note]  # seconds from the song's start
    start: float  # seconds: the continuation begins here (the motif's end)
    seconds: float
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seeds: list[int] = field(default_factory=lambda: [random.randrange(2**31)])
    live: LiveFeed | None = None  # the first variation streams here for playback
    beam_size: int = 1  # > 1: beam search for the most likely continuation (sampling settings unused)
    style: str = ANY_STYLE  # the idiom to continue in (a model made before styles ignores it)


@dataclass
class Variation:
    """One finished (or cancelled) continuation, in seconds, with the seed that repeats it."""

    number: int
    seed: int
    notes: list[Note]
    start: float
    complete: bool = True


# --- what the worker reports: one small dataclass per kind of message ------------------------------------


@dataclass(frozen=True)
class NotesWritten:
    """Notes of a variation, as they are written (seconds from the song's start)."""

    variation: int
    notes: list[Note]


@dataclass(frozen=True)
class Progress:
    """How far a variation is written (0..1)."""

    variation: int
    fraction: float


@dataclass(frozen=True)
class Finished:
    """Generation has ended: written to the end, cancelled, or stopped by a failure (said in a Notice)."""

    cancelled: bool = False
    failed: bool = False


@dataclass(frozen=True)
class ModelLoaded:
    """A model is ready: where it came from, a description for the panel, its device, how long it took."""

    source: str
    description: str
    device: str
    seconds: float
    styles: bool = False  # whether it knows the style tokens (models made before styles do not)


@dataclass(frozen=True)
class LoadFailed:
    """A model could not be loaded (the one loaded before stays)."""

    source: str
    text: str


@dataclass(frozen=True)
class DeviceChanged:
    """The model moved to another device (out of GPU memory: to the CPU)."""

    device: str


@dataclass(frozen=True)
class Notice:
    """Something the musician should read: why generation stopped, where the model runs now."""

    text: str


WorkerMessage = NotesWritten | Progress | Variation | Finished | ModelLoaded | LoadFailed | DeviceChanged | Notice


def open_model(source: str, device: torch.device | str):
    """Loads a checkpoint ("default" or a path); CheckpointError says why it cannot, in the musician's words.

    Running out of GPU memory is raised as it is, so that the caller can try the CPU.
    """
    try:
        return load_checkpoint(None if source == DEFAULT_MODEL else source, device=device)
    except CheckpointError:
        raise
    except Exception as error:  # noqa: BLE001 - a damaged file can fail in many ways inside torch
        if is_out_of_memory(error):
            raise
        raise CheckpointError(f"{Path(source).name}: cannot be loaded ({error})") from None


class NoteStream:
    """Generated tokens in, notes out as they are completed; with a live feed, also the events that play them
    while they are written. Continue and the duet both stream through it.

    `skip_leading_rest` starts the music at its first note (the duet answers at once, after the pause).
    """

    def __init__(self, start: float = 0.0, live: LiveFeed | None = None, skip_leading_rest: bool = False) -> None:
        self.decoder = Decoder(time_offset=start)
        self.live = live
        self._skip_rest = skip_leading_rest
        self._sounding: set[int] = set()  # pitches the live feed has turned on and not yet off

    @property
    def seconds(self) -> float:
        """How far the music is written, in seconds."""
        return self.decoder.seconds

    def feed(self, token: int) -> list[Note]:
        """Consumes one token; returns the notes it completes and sends its events to the live feed."""
        decoder = self.decoder
        if self._skip_rest and is_time_shift(token):
            decoder.time_offset -= shift_ticks(token) * SECONDS_PER_TICK  # the clock stays at the start
        done = decoder.feed(token)
        if is_note_on(token):
            self._skip_rest = False
        if self.live is not None:
            now = decoder.seconds
            ended = {note.pitch for note in done} | {pitch for pitch in self._sounding if pitch not in decoder.sounding}
            events: list[Event] = [(now, NOTE_OFF, pitch, 0, 0) for pitch in sorted(ended & self._sounding)]
            self._sounding -= ended
            if is_note_on(token):
                pitch = token - NOTE_ON_OFFSET
                events.append((now, NOTE_ON, pitch, decoder.sounding[pitch][1], 0))
                self._sounding.add(pitch)
            self.live.extend(events, now)
        return done

    def finish(self) -> list[Note]:
        """Ends every note still sounding (the live feed's too, which then finishes); returns those notes."""
        rest = self.decoder.finish()
        if self.live is not None:
            now = self.decoder.seconds
            self.live.extend([(now, NOTE_OFF, pitch, 0, 0) for pitch in sorted(self._sounding)], now)
            self._sounding.clear()
            self.live.finish()
        return rest


class GenerationWorker:
    """One thread that owns the model: loads checkpoints and generates, one command at a time. No Qt.

    Everything it has to say arrives in `outbox` as a `WorkerMessage`.
    """

    def __init__(self) -> None:
        self.outbox: queue.Queue[WorkerMessage] = queue.Queue()
        self._commands: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.cancel = threading.Event()
        self.model = None
        self.model_source: str | None = None
        self._thread = threading.Thread(target=self._run, name="continuo-generation", daemon=True)
        self._thread.start()

    def load(self, source: str, device: str = AUTO_DEVICE) -> None:
        """Loads a checkpoint ("default" or a path) on a device; reports ModelLoaded or LoadFailed."""
        self._commands.put(("load", (source, device)))

    def generate(self, request: GenerationRequest) -> None:
        """Starts generating; reports NotesWritten and Progress, each Variation, then Finished."""
        self.cancel.clear()
        self._commands.put(("generate", request))

    def stop(self, timeout: float = 5.0) -> bool:
        """Cancels any generation and ends the thread; True if it ended within the timeout."""
        self.cancel.set()
        self._commands.put(("quit", None))
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        """Whether the thread is running."""
        return self._thread.is_alive()

    def _run(self) -> None:
        torch.set_num_threads(torch_threads())
        try:  # the model gives way to the GUI and playback threads when the CPU is busy (no privilege needed)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 5)
        except (AttributeError, OSError):
            pass
        while True:
            command, argument = self._commands.get()
            if command == "quit":
                return
            try:
                if command == "load":
                    self._load(*argument)
                elif command == "generate":
                    self._generate(argument)
            except Exception as error:  # noqa: BLE001 - the musician gets a message, the studio keeps running
                if is_out_of_memory(error):
                    text = "The computer ran out of memory while generating; the notes written so far are kept"
                else:
                    text = f"Generation stopped ({type(error).__name__}: {error}); the notes written so far are kept"
                self.outbox.put(Notice(text))
                if command == "generate":
                    self.outbox.put(Finished(failed=True))

    def _load(self, source: str, device: str) -> None:
        started = time.perf_counter()
        target = resolve_device(device)
        try:
            try:
                model = open_model(source, target)
            except CheckpointError:
                raise
            except Exception as error:
                if target.type != "cuda" or not is_out_of_memory(error):
                    raise
                model = open_model(source, "cpu")
                self.outbox.put(Notice("The GPU has too little memory for this model; it runs on the CPU"))
        except CheckpointError as error:
            self.outbox.put(LoadFailed(source, str(error)))
            return
        self.model, self.model_source = model, source
        self.outbox.put(
            ModelLoaded(
                source,
                describe_model(model),
                str(model.device),
                time.perf_counter() - started,
                has_styles(model.config.vocab_size),
            )
        )

    def _generate(self, request: GenerationRequest) -> None:
        if self.model is None:
            self.outbox.put(Notice("No model is loaded: choose a model file first"))
            self.outbox.put(Finished(failed=True))
            return
        primer = primer_tokens(request.motif, until=request.start)
        for number, seed in enumerate(request.seeds):
            if self.cancel.is_set():
                break
            live = request.live if number == 0 else None
            notes = self._one_variation(request, primer, number, seed, live)
            self.outbox.put(Variation(number, seed, notes, request.start, complete=not self.cancel.is_set()))
        self.outbox.put(Finished(cancelled=self.cancel.is_set()))

    def _one_variation(
        self, request: GenerationRequest, primer: list[int], number: int, seed: int, live: LiveFeed | None
    ) -> list[Note]:
        stream = NoteStream(request.start, live)
        written: list[Note] = []
        tokens: list[int] = []
        remaining = request.seconds
        attempt_seed = seed
        last_progress = 0.0
        try:
            while True:
                try:
                    for token in generate(
                        self.model,
                        primer + tokens,
                        seconds=remaining,
                        temperature=request.temperature,
                        top_k=request.top_k,
                        top_p=request.top_p,
                        seed=attempt_seed,
                        cancel=self.cancel,
                        beam_size=request.beam_size,
                        style=request.style,
                    ):
                        tokens.append(token)
                        done = stream.feed(token)
                        if done:
                            written.extend(done)
                            self.outbox.put(NotesWritten(number, done))
                        progress = (stream.seconds - request.start) / max(request.seconds, 1e-9)
                        if progress - last_progress >= 0.01:
                            last_progress = progress
                            self.outbox.put(Progress(number, min(progress, 1.0)))
                    break
                except Exception as error:
                    if self.model.device.type != "cuda" or not is_out_of_memory(error):
                        raise
                    # Out of GPU memory: the model moves to the CPU and carries on from the notes so far.
                    self.model = self.model.to("cpu")
                    torch.cuda.empty_cache()
                    self.outbox.put(Notice("The GPU ran out of memory; generating on the CPU instead"))
                    self.outbox.put(DeviceChanged("cpu"))
                    remaining = max(0.0, request.seconds - (stream.seconds - request.start))
                    attempt_seed += 1
        finally:
            rest = stream.finish()
            if rest:
                written.extend(rest)
                self.outbox.put(NotesWritten(number, rest))
        return written


def describe_model(model) -> str:
    """A short description of a model for the panel: its name, size and training length."""
    config = model.config
    name = Path(str(model.metadata.get("path", "model"))).name
    parameters = sum(p.numel() for p in model.parameters())
    return (
        f"{name}: {config.n_layers} layers × {config.d_model}, {parameters / 1e6:.1f} M parameters, "
        f"trained on {config.train_length} events"
    )


class GenerationController(QObject):
    """Connects Continue and Cancel to the worker, the song and playback."""

    model_loaded = Signal(str, str)  # source, description
    model_failed = Signal(str, str)  # source, what went wrong (the previous model stays)
    busy_changed = Signal(bool)  # generating or loading
    progress = Signal(int, int, float)  # variation number, count, fraction done
    variations_changed = Signal()
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
        self.model_has_styles = False  # whether the model knows the style tokens
        self.variations: list[Variation] = []
        self.chosen_variation = 0
        self.listen = True  # play the continuation while it is written
        self._generating = False
        self._loading = 0
        self._variation_count = 0
        self._writing_variation = False
        self._closed = False
        self._chosen: str | None = None  # a model file the musician chose, being loaded
        self._timer = QTimer(self)
        self._timer.setInterval(DRAIN_INTERVAL_MS)
        self._timer.timeout.connect(self.drain)
        song.meta_changed.connect(self._meta_changed)

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
        """Starts writing a continuation of the motif (Continue); False with a message when it cannot."""
        if self._generating or self.song.is_writing:
            return False
        if not self.worker.alive:
            self.load_model()
        if not self.has_model:
            self.message.emit(self.model_error or "The model is still loading; Continue in a moment")
            return False
        settings = self.song.settings
        # beam search is deterministic: one "most likely" continuation, however many variations are asked
        count = 1 if settings.most_likely else max(1, min(MAX_VARIATIONS, int(getattr(settings, "variations", 1))))
        if settings.seed is not None:
            seeds = [int(settings.seed) + number for number in range(count)]
        else:
            seeds = [random.randrange(2**31) for _ in range(count)]
        try:
            self.song.begin_stream(CONTINUATION)
        except SongLockedError as error:
            self.message.emit(str(error))
            return False
        start_beat = self.song.motif_end()
        start = self.song.to_seconds(start_beat)
        feed = LiveFeed(start)
        request = GenerationRequest(
            motif=self.song.performance_notes(MOTIF),
            start=start,
            seconds=self.song.to_seconds(settings.length_beats),
            temperature=float(settings.temperature),
            top_k=int(settings.top_k) or None,
            top_p=float(settings.top_p) if settings.top_p < 1.0 else None,
            seeds=seeds,
            live=feed,
            beam_size=MOST_LIKELY_BEAMS if settings.most_likely else 1,
            style=settings.style,
        )
        self.variations = []
        self.chosen_variation = 0
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
        self.progress.emit(0, count, 0.0)
        return True

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
            self.song.append(notes)

    def _handle(self, message: WorkerMessage) -> None:
        match message:
            case Progress(variation, fraction):
                self.progress.emit(variation, self._variation_count, fraction)
            case Variation():
                self.variations.append(message)
                if message.number == 0 and self._writing_variation:
                    self._finish_writing()
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
                self.model_has_styles = styles
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

    def choose_variation(self, number: int) -> bool:
        """Puts another variation in the continuation's place, as one undoable step."""
        chosen = next((v for v in self.variations if v.number == number), None)
        if chosen is None or self.song.is_writing:
            return False
        old = [note.id for note in self.song.notes(CONTINUATION)]
        added = self.song.notes_from_performance(chosen.notes, CONTINUATION)
        self.song.edit(removed_ids=old, added=added, text=f"Variation {number + 1}")
        self.chosen_variation = number
        self.variations_changed.emit()
        if self.player is not None and self.listen and not self.player.transport.playing:
            self.player.play_from(self.song.to_beats(chosen.start))  # audition it from the seam
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
