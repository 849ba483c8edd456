"""Generation in the studio: a worker thread runs the model; a controller streams its notes into the song.

    worker (thread)                              controller (GUI thread, polls every 25 ms)
    load checkpoint ─────── outbox queue ──────> model ready / "cannot load, keeping the previous model"
    generate() tokens ─> NoteStream ─> notes ──────> song.append(notes)  (a stream into the continuation)
                          └──> LiveFeed ──────────────────────────────> playback scheduler (no GUI hop)

The worker owns the model; nothing else touches it, so loading, moving it to another device and sampling
never race, and the studio keeps one model in memory: the duet asks the same worker for its answers
(an AnswerRequest, whose notes come back on the duet's own queue). Everything the GUI needs arrives through
one queue that the controller drains on a timer, so a burst of notes costs one song edit, not one per token,
and the GUI thread never waits on the model.

Rooms: `request.py` (what the worker is asked to write, from the song's settings), `messages.py` (what it
reports), `note_stream.py` (tokens to notes on the grid, and the events that play them), `worker.py` (the
thread that owns the model), `variations.py` (the set of variations kept with the song), `controller.py`
(the Qt side).
"""

from .controller import ACCOMPANY, CONTINUE, FILL, FROM_PLAYHEAD, NO_FILL_TIP, GenerationController
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
from .request import AnswerRequest, GenerationRequest, key_for, pitches_for, primer_until, velocity_range
from .variations import VariationKeeper
from .worker import AUTO_DEVICE, GenerationWorker, describe_model, open_model, torch_threads

__all__ = [
    "ACCOMPANY",
    "AUTO_DEVICE",
    "AnswerRequest",
    "CONTINUE",
    "FILL",
    "FROM_PLAYHEAD",
    "NO_FILL_TIP",
    "DeviceChanged",
    "Finished",
    "GenerationController",
    "GenerationRequest",
    "GenerationWorker",
    "LoadFailed",
    "ModelLoaded",
    "Notice",
    "NoteStream",
    "NotesWritten",
    "Progress",
    "Variation",
    "VariationKeeper",
    "WorkerMessage",
    "describe_model",
    "key_for",
    "open_model",
    "pitches_for",
    "primer_until",
    "torch_threads",
    "velocity_range",
]
