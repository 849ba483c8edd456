"""Continuo's model library: the performance-event codec, the relative-attention Music Transformer,
streaming generation, checkpoints and training. No Qt in here: usable from a script or a notebook."""

from .accompaniment import accompany, accompany_notes, accompany_variations
from .checkpoint import load_checkpoint, save_checkpoint
from .continuation import continuation_notes, generate, generate_variations, primer_tokens
from .errors import CheckpointError, ContinuoError, GenerationError, MidiFileError
from .events import VOCAB_SIZE, Note, decode, encode
from .infilling import infill
from .midi import read_midi, write_midi
from .model import ModelConfig, MusicTransformer

__all__ = [
    "Note", "read_midi", "write_midi", "encode", "decode", "VOCAB_SIZE",
    "ModelConfig", "MusicTransformer", "load_checkpoint", "save_checkpoint",
    "generate", "generate_variations", "infill", "accompany", "accompany_variations", "accompany_notes",
    "primer_tokens", "continuation_notes",
    "MidiFileError", "CheckpointError", "ContinuoError", "GenerationError",
]
