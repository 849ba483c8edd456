"""What the model library accepts, in one place: every input (MIDI files, notes, model configs and
checkpoints, generation and command-line arguments) is checked against these numbers in the module that
reads it, and anything past them is refused with that module's own error, never half-read.

The bounds are far past anything a musician or a shipped model needs, and near enough that the
largest accepted input is read in seconds and a few hundred megabytes.
"""

from __future__ import annotations

# --- music ------------------------------------------------------------------------------------------
MAX_PIECE_SECONDS = 2 * 60 * 60  # the longest piece read, encoded or written at once: two hours
MIN_PITCH, MAX_PITCH = 0, 127  # MIDI's pitches
MIN_VELOCITY, MAX_VELOCITY = 1, 127  # MIDI's loudness of a sounding note
MIN_BPM, MAX_BPM = 20.0, 400.0  # tempi written into a MIDI file (the studio's range)
MAX_NUMERATOR, DENOMINATORS = 32, (1, 2, 4, 8, 16, 32)  # the metres a phrase's bar lines are found in (the studio's)

# --- MIDI files: any file within these is read in a few seconds and a few hundred megabytes ------------
MAX_MIDI_FILE_BYTES = 50 * 1024 * 1024
MAX_MIDI_EVENTS = 2_000_000  # every event, walked over before parsing (under 1 µs each)
MAX_MIDI_KEPT_EVENTS = 300_000  # those parsed (about 15 µs and 0.5 kB each): notes on and off, pedal, programs
MAX_MIDI_NOTES = 100_000  # two hours of dense piano playing (10 notes a second) is 72,000
MAX_MIDI_TRACKS = 1024
MAX_MIDI_OTHER_CHUNKS = 1024  # chunks that are not tracks (a sequencer's own data), passed over
MAX_MIDI_TICKS = 10_000_000  # ticks before the last event: pretty_midi's own limit (a float per tick)

# --- models -------------------------------------------------------------------------------------------
# The biggest model config we would ever ship (the "base" preset is 6 x 512, 19 M parameters).
MAX_LAYERS = 48
MAX_D_MODEL = 4096
MAX_HEADS = 64
MAX_D_FF = 16384
MAX_VOCAB_SIZE = 65536
MAX_LENGTH = 65536  # train_length, max_relative_distance, local_block
MAX_PARAMETERS = 300_000_000  # 1.2 GB of float32 weights
MAX_CHECKPOINT_BYTES = 4 * 1024**3  # the weights and a training run's optimizer state
MAX_MODEL_CONFIG_BYTES = 1024**2  # a safetensors model's JSON config (the bundled model's is 5 kB, most of it its card)
MAX_WEIGHTS_HEADER_BYTES = 1024**2  # a safetensors file's header: about 100 bytes a tensor (the biggest model: 630)

# --- sampling: generate() enforces these; the command line, the studio's panel and session files read them -
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.0, 10.0  # 0 picks the most likely token; past 3 is near noise already
MIN_SAMPLING_TEMPERATURE = 1e-6  # below it, a temperature picks the most likely token, as 0 does (1/T overflows)
MIN_TOP_K, MAX_TOP_K = 0, 400  # 0: off; at most 400, more than the 388 events a model may draw (events.NUM_EVENTS)
MIN_TOP_P, MAX_TOP_P = 0.0, 1.0  # a share of the probability: more than MIN_TOP_P, at most MAX_TOP_P (1: off)
MAX_VARIATIONS = 8  # continuations written side by side in one batch (one Continue's variations)
MIN_WINDOW, MAX_WINDOW = 1, MAX_LENGTH  # positions each new token attends to
# log-probability a repeated strike or loop costs per step of repetition (0: off); at 10 one step blocks it.
# On by default: without it sampling at temperature 0.8 struck one pitch on up to 18 onsets in a row and beam
# search looped one bar five times over (bench/repetition.py); at 1 neither happens, and the notes per second
# and the model's log-probability of what is written hardly move.
MIN_REPETITION_PENALTY, MAX_REPETITION_PENALTY = 0.0, 10.0
DEFAULT_REPETITION_PENALTY = 1.0
MIN_WAIT_PEAK_TICKS, MAX_WAIT_PEAK_TICKS = 0, 10  # how far a drawn wait may move to the likeliest near it
DEFAULT_WAIT_PEAK_TICKS = 2  # (`sampling.peak_waits`): 20 ms, the jitter the model adds to a beat
# a seed names a random stream: any whole number a 64-bit generator is seeded with, in a signed 64-bit integer
# (what torch, numpy, a JSON reader and a database all hold). Variation i of a fixed seed s draws from s + i,
# taken round past MAX_SEED (`seed_for`).
MIN_SEED, MAX_SEED = 0, 2**63 - 1
# a stream that writes this many tokens with no time passing (chords, velocities, note-offs: a pianist's
# densest second is under 100 events) stops with an error: a broken model or sampler state, not music
MAX_TOKENS_WITHOUT_TIME = 2000


def check_seed(value: object, what: str = "the seed") -> int:
    """A seed: a whole number from MIN_SEED to MAX_SEED, else a ValueError that says so. The one check of a seed,
    shared by `generate`, the command line, the studio's Continue panel and its session files."""
    if isinstance(value, bool) or not isinstance(value, int):
        text = repr(value)
        raise ValueError(f"{what} must be a whole number, not {text if len(text) <= 40 else text[:37] + '...'}")
    if not MIN_SEED <= value <= MAX_SEED:
        shown = f"{value}" if abs(value) < 10**30 else f"a number of {len(str(abs(value))):,} digits"
        raise ValueError(f"{what} must be a whole number from {MIN_SEED} to {MAX_SEED:,}, not {shown}")
    return value


def seed_for(seed: int, number: int) -> int:
    """The seed of variation `number` of a fixed `seed`: the next ones, taken round within MIN_SEED..MAX_SEED."""
    return MIN_SEED + (seed - MIN_SEED + number) % (MAX_SEED - MIN_SEED + 1)

# --- the command line ----------------------------------------------------------------------------------
MAX_BEAM_SIZE = 64
MAX_CPU_THREADS = 1024
