"""Duet mode, call and response: when the musician pauses, the model continues their phrase and plays the answer.

    keyboard ─ rtmidi thread ─> Duet.feed ─> the call so far (a Take) ─┐
                                                                      duet thread: waits for the pause, then
                                                                      asks the generation worker for an answer
    answer sink <─ scheduler <─ LiveFeed <─ NoteStream <─ generate() <─ worker (the studio's one model)
         └─> the answer, as heard ─> queue ─> DuetController (GUI) ─> the roll (the continuation part)

Playing again interrupts the answer at once (on rtmidi's thread, before the key is heard): what was heard of
the answer stays in the roll, what was written ahead of the music is dropped. The answers are written by the
same worker as Continue, with the same model (one copy in memory, one torch thread count); an answer asked for
while a Continue is being written waits for it. `Duet` holds no Qt.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import mido
from PySide6.QtCore import QObject, QTimer, Signal

from music_transformer import Note, primer_tokens

from .backends.base import Sink, TapSink
from .generation import (
    AnswerRequest,
    Finished,
    GenerationController,
    GenerationWorker,
    NotesWritten,
    Notice,
    pitches_for,
)
from .midi_input import MidiInputController, Take
from .playback.scheduler import LiveFeed, Scheduler
from .settings import Preferences
from .song import ANY_STYLE, CONTINUATION, GenerationSettings

DEFAULT_PAUSE = 0.6  # seconds of silence that end the musician's phrase
CONTEXT_SECONDS = 20.0  # how much of the duet so far primes the model: enough for style, cheap to prime
MIN_ANSWER, MAX_ANSWER = 2.0, 12.0  # an answer about as long as the call, within these bounds (seconds)
DRAIN_INTERVAL_MS = 25
WORKER_POLL = 0.05  # seconds: how often the duet looks whether the worker it waits for is still there


class AnswerError(Exception):
    """The worker could not write an answer; its message says why, in the musician's words."""


class AnswerSink(TapSink):
    """The answer's output: remembers when its first note sounded (the answer's clock starts there)."""

    def __init__(self, target: Callable[[], Sequence[Sink]]) -> None:
        super().__init__(target, "duet answer")
        self.first_note_at: float | None = None

    def _send(self, message: mido.Message) -> None:
        super()._send(message)
        if self.first_note_at is None and message.type == "note_on" and message.velocity > 0:
            self.first_note_at = time.perf_counter()


@dataclass(frozen=True)
class DuetAnswer:
    """One answer as it was heard (perf_counter seconds), and how long after the pause it began to sound."""

    notes: list[Note]
    latency: float


class Duet:
    """Call and response on its own thread; `feed` takes the musician's messages (any thread). No Qt.

    The answers are written by `worker`, the studio's generation worker (with the model it has loaded).
    `on_answer(DuetAnswer)` and `on_error(text)` are called on the duet's thread.
    """

    def __init__(
        self,
        worker: GenerationWorker,
        outputs: Callable[[], Sequence[Sink]],
        on_answer: Callable[[DuetAnswer], None],
        pause: float = DEFAULT_PAUSE,
        temperature: float = 1.0,
        top_p: float | None = 0.95,
        seed: int | None = None,
        style: str = ANY_STYLE,
        pitches: GenerationSettings | None = None,
    ) -> None:
        self.worker = worker
        self.pause = float(pause)
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed
        self.style = style  # the idiom to answer in (a model made before styles ignores it)
        self.pitches = pitches  # the key lock and pitch range the answers keep to (None: any pitch)
        self.on_answer = on_answer
        self.on_error: Callable[[str], None] | None = None
        self._condition = threading.Condition()
        self._take = Take()
        self._context: list[Note] = []  # the duet so far, perf_counter seconds
        self._phrase: list[Note] = []  # the call being played
        self._last_activity = 0.0
        self._answering = False
        self._interrupted_at: float | None = None
        self._cancel = threading.Event()
        self._quit = False
        self._sink = AnswerSink(outputs)
        self._player = Scheduler([self._sink])
        self._thread = threading.Thread(target=self._run, name="continuo-duet", daemon=True)
        self._thread.start()

    @property
    def answering(self) -> bool:
        """Whether an answer is being written or played."""
        return self._answering

    def feed(self, at: float, message: mido.Message) -> None:
        """A message from the keyboard, stamped on the perf_counter clock; a key struck interrupts the answer."""
        if message.type not in ("note_on", "note_off", "control_change"):
            return
        struck = message.type == "note_on" and message.velocity > 0
        with self._condition:
            if struck and self._answering and self._interrupted_at is None:
                self._interrupted_at = at
                self._cancel.set()
                self._player.stop()  # only the answer's notes stop (its own tap); the key sounds after this
            done = self._take.feed(at, message)
            self._phrase.extend(done)
            if struck or done or message.type == "control_change":
                self._last_activity = at
            self._condition.notify_all()

    def close(self) -> None:
        """Stops any answer and ends the thread."""
        with self._condition:
            self._quit = True
            self._cancel.set()
            self._condition.notify_all()
        self._thread.join(timeout=5.0)
        self._player.close()

    # --- the thread ------------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._condition:
                while True:
                    if self._quit:
                        return
                    if self._phrase and not self._take.sounding:
                        due = self._last_activity + self.pause
                        wait = due - time.perf_counter()
                        if wait <= 0:
                            break
                        self._condition.wait(wait)
                    else:
                        self._condition.wait()
                call, self._phrase = self._phrase, []
                self._context.extend(call)
                self._answering = True
                self._interrupted_at = None
                self._cancel = threading.Event()  # its own: an answer left in the worker's queue stays cancelled
            try:
                answer = self._answer(call, due)
            except AnswerError as failure:
                answer = None
                if self.on_error is not None:
                    self.on_error(str(failure))
            except Exception as error:  # noqa: BLE001 - the duet stops answering, the studio keeps running
                answer = None
                if self.on_error is not None:
                    self.on_error(f"The duet could not answer ({type(error).__name__}: {error})")
            with self._condition:
                self._answering = False
                self._context.extend(answer.notes if answer is not None else [])
                horizon = time.perf_counter() - 2 * CONTEXT_SECONDS  # a long duet keeps only what primes the model
                self._context = [note for note in self._context if note.end > horizon]
            if answer is not None:
                self.on_answer(answer)

    def _answer(self, call: list[Note], due: float) -> DuetAnswer | None:
        """Writes and plays one answer; returns it as heard (perf_counter seconds), None if nothing sounded."""
        base = max(min(note.start for note in self._context), due - CONTEXT_SECONDS)
        primer_notes = [Note(n.pitch, n.velocity, n.start - base, n.end - base) for n in self._context if n.end > base]
        primer = primer_tokens(primer_notes, until=due - base)
        length = max(note.end for note in call) - min(note.start for note in call)
        seconds = min(MAX_ANSWER, max(MIN_ANSWER, length))
        feed = LiveFeed(0.0)
        self._sink.first_note_at = None
        self._player.play([], 0.0, live=feed)
        allowed = None
        if self.pitches is not None:  # the key (detected in the duet so far) and the range
            allowed = pitches_for(self.pitches, primer_notes)
            if not allowed or len(allowed) == 128:
                allowed = None
        request = AnswerRequest(
            primer,
            seconds,
            feed,
            self._cancel,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
            style=self.style,
            allowed_pitches=allowed,
        )
        self.worker.answer(request)
        notes = self._written(request)
        while self._player.playing and not self._cancel.is_set():
            self._cancel.wait(0.01)  # the answer plays to its end, or a key interrupts it
        heard_from = self._sink.first_note_at
        if heard_from is None:
            return None
        first = min((note.start for note in notes), default=0.0)
        stop = self._interrupted_at
        heard = []
        for note in notes:
            start, end = heard_from + note.start - first, heard_from + note.end - first
            if stop is not None:
                if start >= stop:
                    continue  # written ahead of the music, never heard
                end = min(end, stop)
            heard.append(Note(note.pitch, note.velocity, start, max(end, start + 1e-3)))
        return DuetAnswer(heard, heard_from - due) if heard else None

    def _written(self, request: AnswerRequest) -> list[Note]:
        """The answer's notes as the worker writes them, once it has finished (or been interrupted); raises
        AnswerError with the worker's words when it could not answer."""
        notes: list[Note] = []
        failure = "The duet could not answer"
        while True:
            try:
                message = request.replies.get(timeout=WORKER_POLL)
            except queue.Empty:
                if self._cancel.is_set() and not request.started.is_set():
                    return notes  # interrupted while the worker was still busy (a Continue): it writes nothing
                if not self.worker.alive:
                    raise AnswerError("The duet could not answer: the model has stopped") from None
                continue
            match message:
                case NotesWritten(_, done):
                    notes.extend(done)
                case Notice(text):
                    failure = text
                case Finished(failed=failed):
                    if failed:
                        raise AnswerError(failure)
                    return notes


class DuetController(QObject):
    """Duet mode in the studio: listens to the MIDI input, asks the generation worker for the answers (with the
    studio's model), lands both phrases in the roll."""

    enabled_changed = Signal(bool)
    message = Signal(str)

    def __init__(
        self,
        midi: MidiInputController,
        generation: GenerationController,
        preferences: Preferences | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.midi = midi
        self.generation = generation
        self.preferences = preferences if preferences is not None else Preferences.in_memory()
        self.pause = float(self.preferences.get("duet_pause", DEFAULT_PAUSE))
        self.duet: Duet | None = None
        self._answers: queue.SimpleQueue[DuetAnswer] = queue.SimpleQueue()
        self._errors: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._wanted = False
        self._timer = QTimer(self)
        self._timer.setInterval(DRAIN_INTERVAL_MS)
        self._timer.timeout.connect(self.drain)
        # Recording stopped under the duet (Ctrl+R, the keyboard unplugged, a new song): the duet ends with it.
        midi.recorder.recording_changed.connect(lambda recording: recording or self.duet is None or self.stop())
        generation.model_loaded.connect(self._model_ready)
        generation.model_failed.connect(self._model_failed)

    @property
    def enabled(self) -> bool:
        """Whether the duet is listening."""
        return self.duet is not None

    def set_pause(self, seconds: float) -> None:
        """How long a silence ends the musician's phrase (default 0.6 s)."""
        self.pause = max(0.1, float(seconds))
        self.preferences.set("duet_pause", self.pause)
        if self.duet is not None:
            self.duet.pause = self.pause

    def start(self) -> None:
        """Turns the duet on with the studio's model (once it is loaded: the song's model is loaded if none is
        yet) and records the duet into the roll."""
        if self.duet is not None:
            return
        self._wanted = True
        generation = self.generation
        if generation.has_model:
            self._begin()
        elif not generation.loading:
            generation.load_model()  # then _model_ready or _model_failed

    def _model_ready(self, *args) -> None:
        if self._wanted and self.duet is None:
            self._begin()

    def _model_failed(self, source: str, text: str) -> None:
        generation = self.generation
        if not self._wanted or self.duet is not None or generation.has_model or generation.loading:
            return
        self._wanted = False
        self.message.emit(f"Duet mode is off: {text}")
        self.enabled_changed.emit(False)

    def _begin(self) -> None:
        # Answers are played live (ahead of time on a CPU); the continuation part keeps them apart in the roll.
        settings = self.midi.song.settings  # the Continue panel's style, key lock and range: the duet keeps them too
        self.duet = Duet(
            self.generation.worker,
            self.midi.outputs,
            self._answers.put,
            pause=self.pause,
            style=settings.style,
            pitches=settings,
        )
        self.duet.on_error = self._errors.put
        self.midi.listeners.append(self.duet.feed)
        if not self.midi.recorder.recording:
            self.midi.start_recording()
        self._timer.start()
        self.message.emit(f"Duet: play a phrase and pause for {self.pause:g} s; the model answers")
        self.enabled_changed.emit(True)

    def stop(self) -> None:
        """Turns the duet off; the duet so far stays in the roll as one undo step."""
        self._wanted = False
        duet, self.duet = self.duet, None
        if duet is None:
            return
        if duet.feed in self.midi.listeners:
            self.midi.listeners.remove(duet.feed)
        duet.close()
        self.drain()
        self._timer.stop()
        self.midi.stop_recording()
        self.enabled_changed.emit(False)

    def drain(self) -> None:
        """Lands the answers heard so far in the roll (the timer calls this)."""
        while not self._errors.empty():
            self.message.emit(self._errors.get_nowait())
        while not self._answers.empty():
            self.midi.recorder.land(self._answers.get_nowait().notes, CONTINUATION)

    def close(self) -> None:
        """Stops the duet (on quit)."""
        self.stop()
