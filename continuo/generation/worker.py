"""The thread that owns the model: it loads checkpoints and generates (Continue, Fill, Accompany, the duet's
answers), one command at a time, and reports through one queue (the duet's answers through the duet's own). No Qt.

Only this thread touches the model and sets torch's thread count: the duet asks it for its answers rather
than loading a second copy, so the studio keeps one model in memory.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from music_transformer import (
    CheckpointError,
    Note,
    accompany,
    generate,
    generate_variations,
    infill,
    load_checkpoint,
    native,
)
from music_transformer.checkpoint import default_device
from music_transformer.events import known_styles

from ..playback.scheduler import LiveFeed
from ..song import DEFAULT_MODEL
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
from .note_stream import NoteStream
from .request import AnswerRequest, GenerationRequest, primer_until

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


class GenerationWorker:
    """One thread that owns the model: loads checkpoints and generates, one command at a time. No Qt.

    Everything it has to say arrives in `outbox` as a `WorkerMessage`.
    """

    def __init__(self) -> None:
        self.outbox: queue.Queue[WorkerMessage] = queue.Queue()
        self._commands: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.cancel = threading.Event()
        self._stopping = threading.Event()  # ends a duet's answer too (it has a cancel of its own)
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

    def answer(self, request: AnswerRequest) -> None:
        """Writes a duet's answer after the commands before it; reports NotesWritten, then Finished, to the
        request's own replies (with a Notice first if it fails)."""
        self._commands.put(("answer", request))

    def stop(self, timeout: float = 5.0) -> bool:
        """Cancels any generation and ends the thread; True if it ended within the timeout."""
        self.cancel.set()
        self._stopping.set()
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
                elif command == "answer":
                    self._answer(argument)
            except Exception as error:  # noqa: BLE001 - the musician gets a message, the studio keeps running
                if command == "answer":  # the duet stops answering, the studio keeps running
                    argument.replies.put(Notice(f"The duet could not answer ({type(error).__name__}: {error})"))
                    argument.replies.put(Finished(failed=True))
                    continue
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
        slower = ""
        if model.device.type == "cpu":
            with warnings.catch_warnings(record=True) as said:
                warnings.simplefilter("always")
                native.library()  # the C step loaded now (it is part of the package), not at the first Continue
            slower = next(
                (str(warning.message) for warning in said if "torch's operations" in str(warning.message)), ""
            )
        self.outbox.put(
            ModelLoaded(
                source,
                describe_model(model),
                str(model.device),
                time.perf_counter() - started,
                known_styles(model.config.vocab_size),
            )
        )
        if slower:  # said once, when the first model is loaded on the CPU
            self.outbox.put(Notice(f"Writing without the C step, about half as fast: {slower.split('(', 1)[-1][:-1]}"))

    def _generate(self, request: GenerationRequest) -> None:
        if self.model is None:
            self.outbox.put(Notice("No model is loaded: choose a model file first"))
            self.outbox.put(Finished(failed=True))
            return
        if request.after is None and request.keep is None and len(request.seeds) > 1:
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

    def _answer(self, request: AnswerRequest) -> None:
        """A duet's answer: streamed from its first note into its live feed, its notes reported to its replies."""
        replies = request.replies
        if request.cancel.is_set():  # the musician played again while the model was busy: no answer is due
            replies.put(Finished(cancelled=True))
            return
        request.started.set()
        if self.model is None:
            replies.put(Notice("The duet could not answer: no model is loaded"))
            replies.put(Finished(failed=True))
            return
        # the answer sounds at once, after the pause, and at the duet's dynamics until the model writes its own
        stream = NoteStream(0.0, request.live, skip_leading_rest=True, primer=request.primer)
        limits = {} if request.allowed_pitches is None else {"allowed_pitches": request.allowed_pitches}
        try:
            for token in generate(
                self.model,
                request.primer,
                seconds=request.seconds,
                temperature=request.temperature,
                top_p=request.top_p,
                seed=request.seed,
                cancel=lambda: request.cancel.is_set() or self._stopping.is_set(),
                style=request.style,
                **limits,
            ):
                done = stream.feed(token)
                if done:
                    replies.put(NotesWritten(0, done))
        finally:
            rest = stream.finish()  # the live feed ends too: the answer's last notes are turned off
            if rest:
                replies.put(NotesWritten(0, rest))
        replies.put(Finished(cancelled=request.cancel.is_set()))

    @staticmethod
    def _stream(request: GenerationRequest, live: LiveFeed | None) -> NoteStream:
        """A stream that decodes from where the music before `start` leaves off (the primer the model reads, and
        the before-part a fill reads): its velocity and the notes it leaves sounding carry over."""
        primer = primer_until(request.motif, request.start)
        return NoteStream(
            request.start, live, grid=request.grid, velocities=request.velocities, primer=primer, held=request.held
        )

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
        if request.keep is not None:
            end = request.start + request.seconds
            return accompany(
                self.model,
                request.keep,
                request.write_range,
                request.start,
                end,
                seed=seed,
                repetition_penalty=request.repetition_penalty,
                **self._sampling(request),
            )
        if request.after is not None:
            end = request.start + request.seconds
            return infill(
                self.model, request.motif, request.after, request.start, end, seed=seed, **self._sampling(request)
            )
        primer = primer_until(request.motif, request.start) + tokens
        sampling = self._sampling(request)
        release = min(request.release_seconds, seconds)  # a retry on the CPU ends the same phrase
        return generate(
            self.model,
            primer,
            seconds=seconds,
            seed=seed,
            repetition_penalty=request.repetition_penalty,
            release_seconds=release,
            **sampling,
        )

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
                    if (
                        self.model.device.type != "cuda"
                        or not is_out_of_memory(error)
                        or request.after is not None
                        or request.keep is not None
                    ):
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
        """Several variations: the one heard (the first) alone, streamed into the song and the live feed with its
        own progress, then the others as the rows of one batch (`generate_variations`) behind it. Of 40 bars x 4
        on the CPU, the heard one is done at 42 % of the run instead of its end, the whole run about a third
        longer (bench/phrase_endings.py). Cancel stops them all."""
        heard, heard_notes = self._stream(request, request.live), []
        self._one_variation(request, 0, request.seeds[0], heard, [], heard_notes)
        complete = not self.cancel.is_set()
        self.outbox.put(Variation(0, request.seeds[0], heard_notes, request.start, complete=complete))
        seeds = request.seeds[1:]
        if self.cancel.is_set():  # the others never began: there is nothing of them to keep
            return
        streams = [self._stream(request, None) for _ in seeds]
        tokens: list[list[int]] = [[] for _ in seeds]
        written: list[list[Note]] = [[] for _ in seeds]
        last_progress = 0.0
        primer = primer_until(request.motif, request.start)
        self.outbox.put(Progress(-1, 0.0))
        try:
            rows = generate_variations(
                self.model,
                primer,
                seeds=seeds,
                seconds=request.seconds,
                repetition_penalty=request.repetition_penalty,
                release_seconds=request.release_seconds,
                **self._sampling(request),
            )
            for row, token in rows:
                tokens[row].append(token)
                written[row].extend(streams[row].feed(token))
                if row == 0:
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
            for row, seed in enumerate(seeds):
                if self.cancel.is_set():
                    self._finish_rows(streams[row:], written[row:])
                    break
                self._one_variation(request, row + 1, seed + 1, streams[row], tokens[row], written[row])
        else:
            self._finish_rows(streams, written)
        for row, seed in enumerate(seeds):
            complete = not self.cancel.is_set()
            self.outbox.put(Variation(row + 1, seed, written[row], request.start, complete=complete))

    def _finish_rows(self, streams: list[NoteStream], written: list[list[Note]]) -> None:
        """Closes the notes still sounding in each stream (of the variations behind the heard one)."""
        for index, stream in enumerate(streams):
            written[index].extend(stream.finish())


STEPS_PER_SECOND = 24  # the median density of the POP909 songs in the model's encoding


def describe_model(model) -> str:
    """A short description of a model for the panel, in a musician's words: its name, size and how much
    music it keeps in mind (its window, at the 24 steps a second of pop piano)."""
    name = Path(str(model.metadata.get("path", "model"))).name
    parameters = sum(p.numel() for p in model.parameters())
    heard = model.default_window / STEPS_PER_SECOND
    return f"{name}: {parameters / 1e6:.1f} M parameters; it keeps about the last {heard:.0f} s of pop piano in mind"
