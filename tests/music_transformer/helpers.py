"""What the library's tests share: small models, decoding helpers, a reference attention, test music.

Test modules import from here and never from one another.
"""

import math
import os

import numpy as np
import pytest
import torch

from bench.attention_memory import shaw_relative_logits  # the reference the skew is held to
from music_transformer import ModelConfig, MusicTransformer, Note, encode, events, native, write_midi
from music_transformer.decoder import Decoder
from music_transformer.events import END, NOTE_OFF_OFFSET, PAD, START, is_note_off, is_note_on, is_velocity
from music_transformer.model import grown_state

PRIMER = encode([Note(60, 80, 0.0, 0.4), Note(64, 80, 0.4, 0.8), Note(67, 80, 0.8, 1.6)])


def needs_the_c_step():
    """Skips where the package has no C step (built without a C compiler); under CI that is a failure."""
    if native.library() is None:
        if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
            pytest.fail("the C step (music_transformer/step.c) is not built: install a C compiler (gcc), then "
                        "`make native`")
        pytest.skip("the C step is not built here (no C compiler when it was installed, or CONTINUO_NATIVE=0)")


def small_model(positional="relative", seed=0, **overrides):
    """A two-layer model, 64 wide, in eval mode, its weights drawn from `seed`. Drawn for the vocabulary before the
    ANTICIPATE tokens and grown into them (`grown_state`), so that what it writes is what it wrote before it had
    them: the control tokens are never drawn, and every other token's logit is unchanged."""
    config = dict(n_layers=2, d_model=64, n_heads=4, d_ff=128, dropout=0.0, max_relative_distance=64,
                  train_length=128, positional=positional)
    config.update(overrides)
    vocab_size = config.pop("vocab_size", ModelConfig().vocab_size)
    torch.manual_seed(seed)
    model = MusicTransformer(ModelConfig(**config, vocab_size=min(vocab_size, events.ANTICIPATE_OFFSET)))
    if vocab_size > model.config.vocab_size:
        grown = ModelConfig(**config, vocab_size=vocab_size)
        state = grown_state(model.state_dict(), model.config, grown)
        model = MusicTransformer(grown)
        model.load_state_dict(state)
    return model.eval()


def decode_step_by_step(model, tokens, prefill, window=None):
    """Logits from a cache: the first `prefill` tokens at once, then one token a step; and the cache."""
    with torch.no_grad():
        cache = model.new_cache(window)
        steps = [model(tokens[:, :prefill], cache=cache)]
        steps += [model(tokens[:, t:t + 1], cache=cache) for t in range(prefill, tokens.shape[1])]
    return torch.cat(steps, 1), cache


def decode_rows(model, context, continuations, window=None, static=False, dtype=torch.float32, native=None):
    """Logits from a `Decoder`: `context` (1, P) read by the model, then one token of every row per step."""
    with torch.no_grad():
        cache = model.new_cache(window)
        model(context, cache=cache)
        decoder = Decoder(model, cache, len(continuations), static=static, dtype=dtype, native=native)
        steps = [decoder.step(continuations[:, t]).clone() for t in range(continuations.shape[1])]
    return torch.stack(steps, 1), decoder


def direct_attention(q, k, v, embeddings, window=None, local=None):
    """Softmax((QK^T + S_rel)/sqrt(D))V: S_rel gathered the Shaw way, full attention masked to the pattern."""
    length = q.shape[-2]
    logits = (q @ k.transpose(-1, -2) + shaw_relative_logits(q, embeddings)) / math.sqrt(q.shape[-1])
    positions = torch.arange(length, device=q.device)
    i, j = positions[:, None], positions[None, :]
    allowed = j <= i
    if window is not None:
        allowed &= i - j < window
    if local is not None:
        allowed &= j >= (i // local - 1) * local  # own block and the previous one
    logits = logits.masked_fill(~allowed, float("-inf"))
    return torch.softmax(logits, -1) @ v


def assert_valid_stream(tokens):
    """No special tokens, no note-off without its note-on, nothing left sounding; canonical order."""
    sounding = set()
    for previous, token in zip([None] + list(tokens), tokens, strict=False):
        assert token not in (PAD, START, END)
        assert not (is_velocity(token) and previous is not None and is_velocity(previous))
        assert not (is_note_off(token) and previous == token - NOTE_OFF_OFFSET), "a zero-length note"
        if is_note_on(token):
            assert token not in sounding
            sounding.add(token)
        elif is_note_off(token):
            assert token - NOTE_OFF_OFFSET in sounding
            sounding.remove(token - NOTE_OFF_OFFSET)
    assert not sounding, "notes left sounding"


def make_midi_folder(root, pieces=12, notes_per_piece=40, corrupt=0):
    """A folder tree of small, learnable MIDI pieces (scales and arpeggios), some corrupt files."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(pieces):
        folder = root / ("nested/deeper" if index % 3 == 0 else "top")
        folder.mkdir(parents=True, exist_ok=True)
        base = 48 + int(rng.integers(0, 24))
        steps = [0, 2, 4, 5, 7, 9, 11, 12] if index % 2 else [0, 4, 7, 12, 7, 4]
        notes = [Note(base + steps[k % len(steps)], 80, 0.25 * k, 0.25 * k + 0.2) for k in range(notes_per_piece)]
        write_midi(notes, folder / f"piece{index:02d}.{'midi' if index % 4 == 0 else 'mid'}", bpm=120)
    for index in range(corrupt):
        (root / "top" / f"broken{index}.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage" + bytes(index))
    (root / "top" / "notes.txt").write_text("not music")
    return root
