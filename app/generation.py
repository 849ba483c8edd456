"""Generation in the studio: a worker thread runs the model; a controller streams its notes into the song.

    worker (thread)                              controller (GUI thread, polls every 25 ms)
    load checkpoint ─────── outbox queue ──────> model ready / "cannot load, keeping the previous model"
    generate() tokens ─> NoteDecoder ─> notes ─────> song.append(notes)  (a stream into the continuation)
                          └──> LiveFeed ──────────────────────────────> playback scheduler (no GUI hop)

The worker owns the model; nothing else touches it, so loading, moving it to another device and sampling
never race. Everything the GUI needs arrives through one queue that the controller drains on a timer,
so a burst of notes costs one song edit, not one per token, and the GUI thread never waits on the model.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import os
import queue
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PySide6.QtCore import QObject, Qt, QTimer, Signal

from music_transformer import CheckpointError, Note, generate, generate_variations, infill, load_checkpoint, native
from music_transformer.checkpoint import default_device
from music_transformer.events import (
    NOTE_ON_OFFSET,
    SECONDS_PER_TICK,
    NoteDecoder,
    encode,
    has_styles,
    is_note_on,
    is_time_shift,
    shift_ticks,
    split_at,
    to_ticks,
)
from music_transformer.keys import Key, allowed_pitches, detect_key

from .playback.scheduler import NOTE_OFF, NOTE_ON, Event, LiveFeed
from .song import (
    ANY_STYLE,
    CONTINUATION,
    DEFAULT_MODEL,
    MOTIF,
    GenerationSettings,
    Song,
    SongLockedError,
    VariationNote,
    VariationSet,
    WrittenVariation,
)

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


def primer_until(notes: Sequence[Note], start: float) -> list[int]:
    """The tokens of the music before `start` seconds, ending exactly there: notes sounding across it are
    still sounding when the model takes over (the model may end them; the song keeps them as they are)."""
    return split_at(encode(notes), to_ticks(start))[0]


def key_for(settings: GenerationSettings, context: Sequence[Note]) -> Key | None:
    """The key a continuation keeps to: none, the chosen one, or the one detected in the music it reads."""
    if settings.key_mode == "chosen":
        return Key(settings.key_tonic, settings.key_scale)
    if settings.key_mode == "motif":
        return detect_key(context)
    return None


def pitches_for(settings: GenerationSettings, context: Sequence[Note]) -> frozenset[int]:
    """The pitches a continuation may use: those of its key (if locked) within the pitch range."""
    return allowed_pitches(key_for(settings, context), settings.lowest, settings.highest)


def velocity_range(settings: GenerationSettings, context: Sequence[Note]) -> tuple[int, int] | None:
    """The velocities written notes keep to: the motif's range with dynamics matched to it, else any."""
    if settings.dynamics != "motif" or not context:
        return None
    velocities = [note.velocity for note in context]
    return min(velocities), max(velocities)


@dataclass
class GenerationRequest:
    """One press of Continue or Fill: the music it reads, where it writes and for how long, how to sample, how many.

    A continuation reads `motif` (the music before `start`) and writes from `start`; a fill (`after` given)
    reads `motif` as the music before the gap and `after` as the music from its end, and writes the gap
    [start, start + seconds).
    """

    motif: list[Note]  # seconds from the song's start
    start: float  # seconds: the continuation begins here (the motif's end, the playhead, the gap's start)
    seconds: float
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seeds: list[int] = field(default_factory=lambda: [random.randrange(2**31)])
    live: LiveFeed | None = None  # the first variation streams here for playback
    beam_size: int = 1  # > 1: beam search for the most likely continuation (sampling settings unused)
    style: str = ANY_STYLE  # the idiom to continue in (a model made before styles ignores it)
    after: list[Note] | None = None  # a fill: the music after the gap (seconds from the song's start)
    allowed_pitches: frozenset[int] | None = None  # the key lock and the pitch range (None: every pitch)
    grid: float | None = None  # seconds: written notes start and end on this grid
    velocities: tuple[int, int] | None = None  # written velocities stay within (low, high)


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
    """How far a variation is written (0..1); variation -1: all of them, written together."""

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
    while they are written. Continue, Fill and the duet all stream through it.

    `skip_leading_rest` starts the music at its first note (the duet answers at once, after the pause).
    `grid` (seconds from the song's start) puts each note's start and end on the nearest grid line, at least
    one step long, as it streams: what is heard while it is written is what lands in the roll. A note that
    would start on the same line as the last one of its pitch is left out. `velocities` (low, high) keeps
    every velocity within that range.
    """

    def __init__(
        self,
        start: float = 0.0,
        live: LiveFeed | None = None,
        skip_leading_rest: bool = False,
        grid: float | None = None,
        velocities: tuple[int, int] | None = None,
    ) -> None:
        self.decoder = NoteDecoder(time_offset=start)
        self.live = live
        self._skip_rest = skip_leading_rest
        self._sounding: set[int] = set()  # pitches the live feed has turned on and not yet off
        self._start = start
        self._grid = grid if grid is not None and grid > 0 else None
        self._velocities = velocities
        self._placed: dict[int, float] = {}  # pitch -> the grid line its sounding note starts on
        self._last_line: dict[int, float] = {}  # pitch -> the line its last note started on
        self._left_out: set[int] = set()  # pitches whose sounding note shares a line with the one before
        self._pending: list[Event] = []  # a heap of events on the grid not yet handed to the live feed

    @property
    def seconds(self) -> float:
        """How far the music is written, in seconds."""
        return self.decoder.seconds

    def _velocity(self, velocity: int) -> int:
        if self._velocities is None:
            return velocity
        low, high = self._velocities
        return min(max(velocity, low), high)

    def _line(self, seconds: float) -> float:
        """The grid line nearest a time, never before the stream's start."""
        grid = self._grid
        line = round(seconds / grid) * grid
        if line < self._start - 1e-9:
            line = math.ceil(self._start / grid - 1e-9) * grid
        return line

    def feed(self, token: int) -> list[Note]:
        """Consumes one token; returns the notes it completes and sends its events to the live feed."""
        decoder = self.decoder
        if self._skip_rest and is_time_shift(token):
            decoder.time_offset -= shift_ticks(token) * SECONDS_PER_TICK  # the clock stays at the start
        done = decoder.feed(token)
        if is_note_on(token):
            self._skip_rest = False
        if self._grid is not None:
            return self._feed_on_grid(token, done)
        if self._velocities is not None:
            done = [Note(note.pitch, self._velocity(note.velocity), note.start, note.end) for note in done]
        if self.live is not None:
            now = decoder.seconds
            ended = {note.pitch for note in done} | {pitch for pitch in self._sounding if pitch not in decoder.sounding}
            events: list[Event] = [(now, NOTE_OFF, pitch, 0, 0) for pitch in sorted(ended & self._sounding)]
            self._sounding -= ended
            if is_note_on(token):
                pitch = token - NOTE_ON_OFFSET
                events.append((now, NOTE_ON, pitch, self._velocity(decoder.sounding[pitch][1]), 0))
                self._sounding.add(pitch)
            self.live.extend(events, now)
        return done

    def _feed_on_grid(self, token: int, done: list[Note]) -> list[Note]:
        """Places notes on the grid. Lines are rounded from the written times, so the order of notes of one
        pitch is kept; events wait until the writing is half a step past them, when no later note can land
        before them, and go to the live feed in time order."""
        grid = self._grid
        placed = []
        for note in done:
            if note.pitch in self._left_out:
                self._left_out.discard(note.pitch)
                continue
            start = self._placed.pop(note.pitch)
            end = max(self._line(note.end), start + grid)
            placed.append(Note(note.pitch, self._velocity(note.velocity), start, end))
            heapq.heappush(self._pending, (end, NOTE_OFF, note.pitch, 0, 0))
        if is_note_on(token):
            pitch = token - NOTE_ON_OFFSET
            line = self._line(self.decoder.seconds)
            if line <= self._last_line.get(pitch, -1.0) + 1e-9:
                self._left_out.add(pitch)
            else:
                self._placed[pitch] = self._last_line[pitch] = line
                velocity = self._velocity(self.decoder.sounding[pitch][1])
                heapq.heappush(self._pending, (line, NOTE_ON, pitch, velocity, 0))
        self._release(self.decoder.seconds - grid / 2)
        return placed

    def _release(self, until: float) -> None:
        events = []
        while self._pending and self._pending[0][0] <= until:
            events.append(heapq.heappop(self._pending))
        if self.live is not None:
            self.live.extend(events, until)

    def finish(self) -> list[Note]:
        """Ends every note still sounding (the live feed's too, which then finishes); returns those notes."""
        rest = self.decoder.finish()
        if self._grid is not None:
            rest = self._feed_on_grid(-1, rest)
            self._release(math.inf)
            if self.live is not None:
                self.live.finish()
            return rest
        if self._velocities is not None:
            rest = [Note(note.pitch, self._velocity(note.velocity), note.start, note.end) for note in rest]
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
        if model.device.type == "cpu":
            native.library()  # the C step built now (under a second, once a machine), not at the first Continue
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
        if request.after is None and request.beam_size == 1 and len(request.seeds) > 1:
            self._batch(request)
        else:
            for number, seed in enumerate(request.seeds):
                if self.cancel.is_set():
                    break
                live = request.live if number == 0 else None
                stream = self._stream(request, live)
                notes: list[Note] = []
                self._one_variation(request, number, seed, stream, [], notes)
                self.outbox.put(Variation(number, seed, notes, request.start, complete=not self.cancel.is_set()))
        self.outbox.put(Finished(cancelled=self.cancel.is_set()))

    @staticmethod
    def _stream(request: GenerationRequest, live: LiveFeed | None) -> NoteStream:
        return NoteStream(request.start, live, grid=request.grid, velocities=request.velocities)

    def _sampling(self, request: GenerationRequest) -> dict[str, Any]:
        """The sampling arguments every stream of a request shares."""
        arguments: dict[str, Any] = dict(
            temperature=request.temperature,
            top_k=request.top_k,
            top_p=request.top_p,
            cancel=self.cancel,
            style=request.style,
        )
        if request.allowed_pitches is not None:
            arguments["allowed_pitches"] = request.allowed_pitches
        return arguments

    def _tokens(self, request: GenerationRequest, tokens: list[int], seconds: float, seed: int):
        """The tokens of one variation: a fill of the gap, or a continuation of the primer (and `tokens`, the
        ones written before a retry) for `seconds` more."""
        if request.after is not None:
            end = request.start + request.seconds
            return infill(
                self.model, request.motif, request.after, request.start, end, seed=seed, **self._sampling(request)
            )
        primer = primer_until(request.motif, request.start) + tokens
        sampling = self._sampling(request)
        return generate(self.model, primer, seconds=seconds, seed=seed, beam_size=request.beam_size, **sampling)

    def _one_variation(
        self,
        request: GenerationRequest,
        number: int,
        seed: int,
        stream: NoteStream,
        tokens: list[int],
        written: list[Note],
    ) -> None:
        """Writes one variation (on from `tokens` already written) into `stream`, collecting its notes in `written`."""
        remaining = max(0.0, request.seconds - (stream.seconds - request.start))
        attempt_seed = seed
        last_progress = 0.0
        try:
            while True:
                try:
                    for token in self._tokens(request, tokens, remaining, attempt_seed):
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
                    if self.model.device.type != "cuda" or not is_out_of_memory(error) or request.after is not None:
                        raise
                    self._to_cpu()  # out of GPU memory: the model moves to the CPU and carries on from the notes so far
                    remaining = max(0.0, request.seconds - (stream.seconds - request.start))
                    attempt_seed += 1
        finally:
            rest = stream.finish()
            if rest:
                written.extend(rest)
                self.outbox.put(NotesWritten(number, rest))

    def _to_cpu(self) -> None:
        self.model = self.model.to("cpu")
        torch.cuda.empty_cache()
        self.outbox.put(Notice("The GPU ran out of memory; generating on the CPU instead"))
        self.outbox.put(DeviceChanged("cpu"))

    def _batch(self, request: GenerationRequest) -> None:
        """Several variations as the rows of one batch (`generate_variations`): the first streams into the song
        and the live feed while it is written, the others alongside; Cancel stops them all."""
        count = len(request.seeds)
        streams = [self._stream(request, request.live if number == 0 else None) for number in range(count)]
        tokens: list[list[int]] = [[] for _ in range(count)]
        written: list[list[Note]] = [[] for _ in range(count)]
        last_progress = 0.0
        primer = primer_until(request.motif, request.start)
        try:
            rows = generate_variations(
                self.model, primer, seeds=request.seeds, seconds=request.seconds, **self._sampling(request)
            )
            for number, token in rows:
                tokens[number].append(token)
                done = streams[number].feed(token)
                if done:
                    written[number].extend(done)
                    if number == 0:
                        self.outbox.put(NotesWritten(0, done))
                if number == 0:
                    slowest = min(stream.seconds for stream in streams) - request.start
                    progress = slowest / max(request.seconds, 1e-9)
                    if progress - last_progress >= 0.01:
                        last_progress = progress
                        self.outbox.put(Progress(-1, min(progress, 1.0)))
        except Exception as error:
            if self.model.device.type != "cuda" or not is_out_of_memory(error):
                self._finish_rows(streams, written)
                raise
            self._to_cpu()  # each variation carries on from its own notes, one after another
            for number, seed in enumerate(request.seeds):
                if self.cancel.is_set():
                    self._finish_rows(streams[number:], written[number:], first=number)
                    break
                self._one_variation(request, number, seed + 1, streams[number], tokens[number], written[number])
        else:
            self._finish_rows(streams, written)
        for number, seed in enumerate(request.seeds):
            self.outbox.put(Variation(number, seed, written[number], request.start, complete=not self.cancel.is_set()))

    def _finish_rows(self, streams: list[NoteStream], written: list[list[Note]], first: int = 0) -> None:
        """Closes the notes still sounding in each stream (rows `first`, `first` + 1, ...)."""
        for index, stream in enumerate(streams):
            rest = stream.finish()
            written[index].extend(rest)
            if first + index == 0 and rest:
                self.outbox.put(NotesWritten(0, rest))


STEPS_PER_SECOND = 24  # the median density of the POP909 songs in the model's encoding


def describe_model(model) -> str:
    """A short description of a model for the panel, in a musician's words: its name, size and how much
    music it keeps in mind (its window, at the 24 steps a second of pop piano)."""
    config = model.config
    name = Path(str(model.metadata.get("path", "model"))).name
    parameters = sum(p.numel() for p in model.parameters())
    heard = config.train_length / STEPS_PER_SECOND
    return f"{name}: {parameters / 1e6:.1f} M parameters; it keeps about the last {heard:.0f} s of pop piano in mind"


CONTINUE, FROM_PLAYHEAD, FILL = "continue", "from playhead", "fill"  # the ways of writing
STREAM_TEXTS = {CONTINUE: "Continue", FROM_PLAYHEAD: "Continue from playhead", FILL: "Fill"}
NO_FILL_TIP = "This model was made before infilling: load a newer model to fill gaps"
_EPSILON = 1e-6  # beats: a note starting this close to a range's edge starts on it


class GenerationController(QObject):
    """Connects Continue, Fill and Cancel to the worker, the song and playback, and keeps the variations."""

    model_loaded = Signal(str, str)  # source, description
    model_failed = Signal(str, str)  # source, what went wrong (the previous model stays)
    busy_changed = Signal(bool)  # generating or loading
    progress = Signal(int, int, float)  # variation number (-1: all together), count, fraction done
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
        self.listen = True  # play the continuation while it is written
        self.grid_step: Callable[[], float | None] = lambda: None  # the roll's grid in beats (None: off)
        self._generating = False
        self._loading = 0
        self._variation_count = 0
        self._writing_variation = False
        self._writing: dict[str, Any] = {}  # what is being written: kind, start beat, count, settings
        self._owned: set[int] = set()  # ids of the notes the first variation put in the song
        self._set: VariationSet | None = None  # the set this controller is writing (later variations join it)
        self._closed = False
        self._chosen: str | None = None  # a model file the musician chose, being loaded
        self._timer = QTimer(self)
        self._timer.setInterval(DRAIN_INTERVAL_MS)
        self._timer.timeout.connect(self.drain)
        song.meta_changed.connect(self._meta_changed)
        song.notes_changed.connect(self._check_variations)
        song.reset.connect(self._song_replaced)

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

    def fill(self, start: float, end: float) -> bool:
        """Fill: writes the beats [start, end) so that they join the music before and after; the notes that
        start inside are replaced, as the same undo step, unless the settings keep them."""
        start, end = sorted((max(0.0, float(start)), max(0.0, float(end))))
        if end - start < 1e-3:
            self.message.emit("Select a time range to fill: drag in the ruler, or select notes")
            return False
        return self._write(FILL, start, end)

    def _performance(self, notes) -> list[Note]:
        song = self.song
        return [Note(n.pitch, n.velocity, song.to_seconds(n.start), song.to_seconds(n.end)) for n in notes]

    def _write(self, kind: str, start_beat: float, end_beat: float | None = None) -> bool:
        self.about_to_start.emit()
        if self._generating or self.song.is_writing:
            return False
        if not self.worker.alive:
            self.load_model()
        if not self.has_model:
            self.message.emit(self.model_error or "The model is still loading; Continue in a moment")
            return False
        if kind == FILL and not self.model_has_styles:
            self.message.emit(NO_FILL_TIP)
            return False
        song, settings = self.song, self.song.settings
        replace: list[int] | None = None
        after: list[Note] | None = None
        if kind == CONTINUE:
            context = song.performance_notes(MOTIF)
            seconds = song.to_seconds(settings.length_beats)
        else:
            notes = song.notes()
            later = [note for note in notes if note.start >= start_beat - _EPSILON]
            context = self._performance([note for note in notes if note.start < start_beat - _EPSILON])
            if kind == FILL:
                in_the_way = [note for note in later if note.start < end_beat - _EPSILON]
                after = self._performance([note for note in later if note.start >= end_beat - _EPSILON])
                seconds = song.to_seconds(end_beat - start_beat)
            else:
                in_the_way = later
                seconds = song.to_seconds(settings.length_beats)
            replace = [] if settings.keep_existing else [note.id for note in in_the_way]
        heard = context + (after or [])  # the music the key is detected in and the dynamics matched to
        pitches = pitches_for(settings, heard)
        if not pitches:
            key = key_for(settings, heard)
            self.message.emit(f"No note of {key.name if key else 'any key'} lies in the pitch range: widen it")
            return False
        # beam search is deterministic: one "most likely" continuation, however many variations are asked
        count = 1 if settings.most_likely else max(1, min(MAX_VARIATIONS, int(settings.variations)))
        if settings.seed is not None:
            seeds = [int(settings.seed) + number for number in range(count)]
        else:
            seeds = [random.randrange(2**31) for _ in range(count)]
        step = self.grid_step() if settings.snap else None
        try:
            song.begin_stream(CONTINUATION, STREAM_TEXTS[kind], quantize=step, replace=replace)
        except SongLockedError as error:
            self.message.emit(str(error))
            return False
        song.set_variations(None)  # a new set begins
        start = song.to_seconds(start_beat)
        feed = LiveFeed(start)
        request = GenerationRequest(
            motif=context,
            start=start,
            seconds=seconds,
            temperature=float(settings.temperature),
            top_k=int(settings.top_k) or None,
            top_p=float(settings.top_p) if settings.top_p < 1.0 else None,
            seeds=seeds,
            live=feed,
            beam_size=MOST_LIKELY_BEAMS if settings.most_likely else 1,
            style=settings.style,
            after=after,
            allowed_pitches=None if len(pitches) == 128 else pitches,
            grid=song.to_seconds(step) if step else None,
            velocities=velocity_range(settings, heard),
        )
        self._writing = {"kind": FILL if kind == FILL else CONTINUE, "start": start_beat, "count": count}
        self._writing["settings"] = settings
        self._owned = set()
        self._set = None
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
        self.progress.emit(-1 if count > 1 and kind != FILL else 0, count, 0.0)
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
            self._owned.update(note.id for note in self.song.append(notes))

    def _handle(self, message: WorkerMessage) -> None:
        match message:
            case Progress(variation, fraction):
                self.progress.emit(variation, self._variation_count, fraction)
            case Variation():
                if message.number == 0 and self._writing_variation:
                    self._finish_writing()
                self._keep_variation(message)
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

    def _song_replaced(self) -> None:
        """Another document (open, new, restore): what is still being written belongs to none of it."""
        self._writing = {}
        self._set = None

    def _keep_variation(self, variation: Variation) -> None:
        """A variation written: the first opens the set (with the notes it put in the song), the others join it
        while it lasts."""
        to_beats = self.song.to_beats
        written = WrittenVariation(
            variation.number,
            variation.seed,
            tuple(
                VariationNote(
                    note.pitch, note.velocity, round(to_beats(note.start), 9), round(to_beats(note.end - note.start), 9)
                )
                for note in variation.notes
            ),
            variation.complete,
        )
        if not self._writing:
            return  # written for a song that has been replaced since
        if variation.number == 0:
            writing = self._writing
            self._set = VariationSet(
                writing["kind"],
                writing["start"],
                writing["count"],
                writing["settings"],
                (written,),
                owned=frozenset(self._owned),
            )
        elif self._set is not None and self.song.variations is self._set:
            self._set = dataclasses.replace(self._set, variations=self._set.variations + (written,))
        else:
            return  # its continuation was accepted or discarded meanwhile: the set has ended
        self.song.set_variations(self._set)

    def _check_variations(self) -> None:
        """The set ends when none of the notes it put in the song is still a continuation note (accepted,
        discarded, deleted, or the step that wrote them undone): its variations can no longer be put in."""
        current = self.song.variations
        if current is None or self.song.is_writing or not current.owned:
            return
        arrays = self.song.note_arrays()
        owned = np.fromiter(current.owned, np.int64, len(current.owned))
        if not np.isin(arrays.ids[arrays.continuation], owned).any():
            self._set = None
            self.song.set_variations(None)
            self.variations_changed.emit()

    def choose_variation(self, number: int) -> bool:
        """Puts another variation in the place of the one in the song, as one undoable step; False when the set
        has ended (accepted or discarded) or music is streaming in."""
        current = self.song.variations
        chosen = current.variation(number) if current is not None else None
        if chosen is None or self.song.is_writing:
            return False
        song = self.song
        old = [note_id for note_id in current.owned if (note := song.note(note_id)) and note.part == CONTINUATION]
        added = [song.new_note(p, v, start, length, CONTINUATION) for p, v, start, length in chosen.notes]
        owned = current.owned | {note.id for note in added}
        updated = dataclasses.replace(current, chosen=number, owned=owned)
        song.set_variations(updated)  # before the edit: the notes it puts in belong to the set
        if self._set is current:
            self._set = updated
        song.edit(removed_ids=old, added=added, text=f"Variation {number + 1}")
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
