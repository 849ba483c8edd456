"""`music-transformer bench`: the model core's benchmarks, measured side by side in one run.

1. Decoding speed: tokens/s of one-token steps with the cache (`decoder.Decoder`: the C step where it can
   be built, and torch's operations beside it) vs. recomputing the whole prefix for every token (what the
   public reimplementations do), at contexts of 512, 1024 and 2048, 6 layers, 256 wide; and `generate`'s
   tokens/s at those contexts (sampling and the music's rules included), through the decoder and through
   the model's forward pass, side by side.
2. Variations: the time of 8 variations written as one batch against 1, the same length, for a model of the
   bundled piano model's shape (4 x 256, 8 heads, a 1,024-token window).
3. Training speed: tokens/s of training steps, relative vs. absolute-position model of the same size.
4. The bundled model: `generate`'s tokens/s at its full window on one thread, and what that is in real
   time for dense piano (60 tokens a second of music) and for the median pop song (24).

The JSB Chorales benchmark, which needs a source checkout's data and bench/ folder, is `python bench/jsb.py`;
the attention's memory (Shaw et al.'s formula, the single skew and our blocks; local vs. global attention in
training) is `python bench/attention_memory.py`.

Ratios are what to read: each pair is measured in the same run, interleaved, on the same machine.
"""

from __future__ import annotations

import json
import platform
import sys
import time

import torch

from .decoder import Decoder
from .model import ModelConfig, MusicTransformer

BENCH_CONFIG = dict(n_layers=6, d_model=256, n_heads=8, d_ff=1024, dropout=0.0, max_relative_distance=1024)
PIANO_CONFIG = dict(n_layers=4, d_model=256, n_heads=8, d_ff=1024, dropout=0.0, max_relative_distance=1024,
                    train_length=1024)  # the bundled piano model's shape (train.py's preset "piano")


# The relative attention's query block in these figures: 64, ModelConfig's default when bench/README.md's
# were measured. The library's kernel takes attention.BLOCK_SIZE (256, what the presets and the bundled model
# trained with); on a CPU 64 ran the forward pass at 512 tokens 1.15x as fast, so the figures keep it.
FIGURES_BLOCK_SIZE = 64


def _built(config: ModelConfig) -> MusicTransformer:
    """The model of `config`, its weights drawn from seed 0, its attention in blocks of FIGURES_BLOCK_SIZE."""
    torch.manual_seed(0)
    model = MusicTransformer(config)
    for block in model.blocks:
        block.attention.block_size = FIGURES_BLOCK_SIZE
    return model


def _model(positional: str, train_length: int, **overrides) -> MusicTransformer:
    return _built(ModelConfig(**{**BENCH_CONFIG, "train_length": train_length, "positional": positional,
                                 **overrides}))


def decode_speed(context: int, cached_steps: int, recompute_steps: int) -> dict:
    """Tokens/s at a full context, one-token steps of the decoder (the C step where it can be built, and
    torch's operations, interleaved, the better of two runs each) and recomputing the prefix every token."""
    model = _model("relative", context).eval()
    tokens = torch.randint(0, 388, (context + cached_steps,), generator=torch.Generator().manual_seed(1))
    best = {None: 0.0, False: 0.0}  # Decoder(native=...): its default, torch's operations
    native = False
    with torch.inference_mode():
        for _ in range(2):
            for choice in best:
                cache = model.new_cache(window=context)
                model(tokens[None, :context - 1], cache=cache)
                decoder = Decoder(model, cache, native=choice)
                native = native or decoder.native
                for step in range(3):  # warm-up
                    decoder.step(tokens[context - 1 + step:context + step])
                started = time.perf_counter()
                for step in range(3, cached_steps):
                    int(decoder.step(tokens[context - 1 + step:context + step]).argmax())
                best[choice] = max(best[choice], (cached_steps - 3) / (time.perf_counter() - started))
        cached = best[None]
        tokens = tokens[None]
        model(tokens[:, :context])  # warm-up
        started = time.perf_counter()
        for step in range(recompute_steps):
            logits = model(tokens[:, step + 1:context + step + 1])[0, -1]
            int(logits.argmax())
        recomputed = recompute_steps / (time.perf_counter() - started)
    return {"context": context, "cached_tokens_per_s": cached, "torch_tokens_per_s": best[False], "native": native,
            "recompute_tokens_per_s": recomputed, "speedup": cached / recomputed}


def _primer(length: int) -> list[int]:
    """Random events: what a primer costs to read, not what it sounds like."""
    from .events import NUM_EVENTS

    return torch.randint(0, NUM_EVENTS, (length,), generator=torch.Generator().manual_seed(0)).tolist()


def _timed(stream, tokens: int | None = None) -> tuple[float, int]:
    """(seconds, items) of a stream after its first item (the context read), up to `tokens` more items."""
    next(stream)
    started = time.perf_counter()
    count = 0
    for _ in stream:
        count += 1
        if count == tokens:
            break
    return time.perf_counter() - started, count


def generate_tokens_per_s(context: int, tokens: int, repeats: int) -> dict:
    """`generate`'s tokens/s at a full context of the 6 x 256 model on one thread: through the decoder, and
    through the model's forward pass (where a forward hook sends it), interleaved, the best of `repeats`."""
    from .continuation import generate

    model = _model("relative", context).eval()
    primer = _primer(context)
    best = {"decoder": 0.0, "forward": 0.0}
    for _ in range(repeats):
        for path in best:
            hook = model.register_forward_pre_hook(lambda *_: None) if path == "forward" else None
            seconds, count = _timed(generate(model, primer, max_tokens=10**9, seed=0, max_note_seconds=None,
                                             cpu_threads=1), tokens)
            if hook is not None:
                hook.remove()
            best[path] = max(best[path], count / seconds)
    return {"context": context, "tokens_per_s": best["decoder"], "forward_tokens_per_s": best["forward"]}


def variations_time(rows: int, primer_length: int, tokens: int, repeats: int) -> dict:
    """Seconds to write `rows` variations of `tokens` tokens as one batch against one, after a primer of
    `primer_length` (the piano model's shape, one thread, the best of `repeats`, interleaved)."""
    from .continuation import generate_variations

    model = _built(ModelConfig(**PIANO_CONFIG)).eval()
    primer = _primer(primer_length)
    best = {1: float("inf"), rows: float("inf")}
    for _ in range(repeats):
        for count in best:
            stream = generate_variations(model, primer, seeds=list(range(count)), max_tokens=tokens,
                                         max_note_seconds=None, cpu_threads=1)
            best[count] = min(best[count], _timed(stream)[0])
    return {"rows": rows, "one_seconds": best[1], "rows_seconds": best[rows], "ratio": best[rows] / best[1]}


def device_decode(device: str, model: MusicTransformer | None = None, tokens: int = 600, rows: int = 8) -> dict:
    """The bundled model (or `model`) at its full window: `generate`'s tokens/s on `device` against one CPU thread,
    one stream each, and `rows` variations of `tokens` tokens against one on `device` (bench/gpu_session.sh)."""
    from .checkpoint import load_checkpoint
    from .continuation import generate, generate_variations

    model = model or load_checkpoint(device="cpu")
    primer = _primer(model.config.train_length)
    speed = {}
    for where in ("cpu", device):
        model = model.to(where)
        for _ in range(2):  # the first run sets the device up (kernels, cuBLAS, the allocator)
            seconds, count = _timed(generate(model, primer, max_tokens=tokens + 1, seed=0, max_note_seconds=None,
                                             cpu_threads=1))
        speed[where] = count / seconds
    times = {}
    for count in (1, rows, 1, rows):
        stream = generate_variations(model, primer, seeds=list(range(count)), max_tokens=tokens,
                                     max_note_seconds=None, cpu_threads=1)
        times[count] = min(times.get(count, float("inf")), _timed(stream)[0])
    return {"device": device, "cpu": cpu(), "window": model.config.train_length, "tokens": tokens,
            "cpu_tokens_per_s": round(speed["cpu"], 1), "device_tokens_per_s": round(speed[device], 1),
            "gpu_over_cpu_decode": round(speed[device] / speed["cpu"], 2),
            f"variations{rows}_over_1_time": round(times[rows] / times[1], 2)}


DENSE_PIANO_TOKENS_PER_SECOND = 60  # 300 tokens/s is 5x real time for dense piano
MEDIAN_POP_TOKENS_PER_SECOND = 24  # POP909's median


def generate_speed(model: MusicTransformer, tokens: int = 400) -> dict:
    """`generate`'s tokens/s on one CPU thread once its window is full, and the real-time factors."""
    from .continuation import generate
    from .events import NUM_EVENTS

    window = model.default_window
    primer = torch.randint(0, NUM_EVENTS, (window,), generator=torch.Generator().manual_seed(0)).tolist()
    stream = generate(model, primer, max_tokens=tokens + 1, seed=0, max_note_seconds=None, cpu_threads=1)
    next(stream)  # the primer read, the window full
    started = time.perf_counter()
    written = sum(1 for _ in stream)
    speed = written / (time.perf_counter() - started)
    return {"window": window, "tokens_per_s": speed, "real_time_dense_piano": speed / DENSE_PIANO_TOKENS_PER_SECOND,
            "real_time_median_pop": speed / MEDIAN_POP_TOKENS_PER_SECOND}


def cpu() -> str:
    """The processor's name and its widest vectors (which decide the C step's kernels), where Linux says."""
    from . import native

    name, flags = "", set()
    for line in native.cpuinfo_lines() or []:
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not name:
            name = value.strip()
        elif key.strip() in ("flags", "Features") and not flags:
            flags = set(value.split())
    vectors = next((flag for flag in ("avx512f", "avx2", "avx", "asimd", "sse2") if flag in flags), None)
    name = name or platform.processor() or platform.machine()
    return f"{name} ({vectors})" if vectors else name


def train_speed(length: int, batch: int, steps: int) -> dict:
    """Training tokens/s of the relative and the absolute model, steps interleaved."""
    models = {positional: _model(positional, length, dropout=0.1).train() for positional in ("relative", "absolute")}
    optimizers = {name: torch.optim.AdamW(model.parameters(), lr=1e-4) for name, model in models.items()}
    tokens = torch.randint(0, 388, (batch, length + 1), generator=torch.Generator().manual_seed(2))
    elapsed = dict.fromkeys(models, 0.0)
    for step in range(steps + 1):
        for name, model in models.items():
            started = time.perf_counter()
            logits = model(tokens[:, :-1])
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
            optimizers[name].zero_grad(set_to_none=True)
            loss.backward()
            optimizers[name].step()
            if step:  # the first step of each is warm-up
                elapsed[name] += time.perf_counter() - started
    speed = {name: steps * batch * length / seconds for name, seconds in elapsed.items()}
    return {"length": length, "batch": batch, "relative_tokens_per_s": speed["relative"],
            "absolute_tokens_per_s": speed["absolute"], "ratio": speed["relative"] / speed["absolute"]}


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmarks, prints a table and, with --json, one JSON line."""
    argv = list(sys.argv[1:] if argv is None else argv)
    from . import arguments

    parser = arguments.ArgumentParser(prog="music-transformer bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument("--quick", action="store_true", help="fewer steps and sizes (a smoke run)")
    parser.add_argument("--threads", type=arguments.threads, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from . import native

    results: dict = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                     "device": "cpu", "model": "6 layers, 256 wide, 8 heads", "cpu": cpu(),
                     "c_step": native.library() is not None,
                     "c_step_variant": getattr(native.library(), "variant", None)}

    contexts = (512, 1024, 2048) if not args.quick else (512,)
    decode = [decode_speed(c, cached_steps=200 if not args.quick else 40,
                           recompute_steps=max(3, 3 * 2048 // c) if not args.quick else 2) for c in contexts]
    streams = [generate_tokens_per_s(c, tokens=200 if not args.quick else 30, repeats=3 if not args.quick else 1)
               for c in contexts]
    print(f"CPU: {results['cpu']}, {results['threads']} torch thread(s)")
    print("\nDecoding (tokens/s), 6 layers x 256, one piece, one thread "
          f"({'the C step' if decode[0]['native'] else 'torch, no C step here'}; torch ops: the decoder without it):")
    print(f"{'context':>8} {'cached':>10} {'torch ops':>10} {'recompute':>10} {'speed-up':>9} {'generate':>9} "
          f"{'(forward)':>10}")
    for row, stream in zip(decode, streams, strict=True):
        print(f"{row['context']:>8} {row['cached_tokens_per_s']:>10.1f} {row['torch_tokens_per_s']:>10.1f} "
              f"{row['recompute_tokens_per_s']:>10.2f} {row['speedup']:>8.1f}x {stream['tokens_per_s']:>9.1f} "
              f"{stream['forward_tokens_per_s']:>10.1f}")
        results[f"decode_cached_tokens_per_s_{row['context']}"] = round(row["cached_tokens_per_s"], 1)
        results[f"decode_torch_ops_tokens_per_s_{row['context']}"] = round(row["torch_tokens_per_s"], 1)
        results[f"native_over_torch_decode_{row['context']}"] = round(row["cached_tokens_per_s"]
                                                                      / row["torch_tokens_per_s"], 2)
        results[f"decode_recompute_tokens_per_s_{row['context']}"] = round(row["recompute_tokens_per_s"], 3)
        results[f"decode_speedup_{row['context']}"] = round(row["speedup"], 1)
        results[f"decode_tokens_per_s_{row['context']}"] = round(stream["tokens_per_s"], 1)
        results[f"decode_forward_tokens_per_s_{row['context']}"] = round(stream["forward_tokens_per_s"], 1)

    variations = variations_time(8, primer_length=512 if not args.quick else 64, tokens=256 if not args.quick else 24,
                                 repeats=3 if not args.quick else 1)
    print(f"\nVariations, 4 x 256 (the piano model's shape), a primer of {512 if not args.quick else 64} tokens: "
          f"8 in one batch take {variations['ratio']:.2f}x the time of 1 ({variations['rows_seconds']:.2f} s against "
          f"{variations['one_seconds']:.2f} s)")
    results["variations8_over_1_time"] = round(variations["ratio"], 2)

    from .checkpoint import load_checkpoint

    bundled = generate_speed(load_checkpoint(device="cpu"), tokens=400 if not args.quick else 60)
    print(f"\nThe bundled model, generate on one thread at its full window of {bundled['window']}: "
          f"{bundled['tokens_per_s']:.0f} tokens/s = {bundled['real_time_dense_piano']:.1f}x real time for dense "
          f"piano, {bundled['real_time_median_pop']:.1f}x for the median pop song")
    results["bundled_decode_tokens_per_s"] = round(bundled["tokens_per_s"], 1)
    results["bundled_real_time_dense_piano"] = round(bundled["real_time_dense_piano"], 2)

    train = train_speed(length=1024 if not args.quick else 256, batch=2, steps=6 if not args.quick else 2)
    print(f"\nTraining (tokens/s), L = {train['length']}, batch {train['batch']}: relative "
          f"{train['relative_tokens_per_s']:.0f}, absolute {train['absolute_tokens_per_s']:.0f}, "
          f"ratio {train['ratio']:.2f}")
    results["train_relative_tokens_per_s"] = round(train["relative_tokens_per_s"], 1)
    results["train_absolute_tokens_per_s"] = round(train["absolute_tokens_per_s"], 1)
    results["relative_over_absolute_train_speed"] = round(train["ratio"], 3)
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
