"""Where the time of one decoding step goes: torch.profiler over `generate`, by kind of work.

    python bench/decode_profile.py [--json] [--device cuda] [--context 2048 --layers 6] [--steps 60]

A model of `--layers` x 256 (8 heads, random weights) continues a primer that fills its window of `--context`
tokens, on one thread; `generate` runs through the decoder (`decoder.Decoder`, what it does now) and through
the model's forward pass (what it did before the decoder; a forward hook sends it there), side by side.
Each aten operation's own time is put in one kind:

- weights: the matrix products with the model's weights (QKV, output, feed-forward, the head);
- attention: the products with the cached keys and values, the softmax, writing the cache;
- relative term: q E^T and what places it (skew, pad, slices added);
- sampling: what runs between two model steps (masks, top-k, top-p, the draw);
- other tensor ops: everything else inside the model step (layer norms, GELU, residual adds, views, copies);
- Python and dispatch: the profiled wall time that no operation accounts for.

On a CUDA device the split is of the CPU's time, and the GPU's busy time (its kernels) is reported beside
it; a step captured in a CUDA graph is one replay, whose CPU time counts as Python and dispatch. The
profiler adds about a microsecond per operation, so the shares are what to read.

On the CPU the decoder's step is one call into C (step.c), which the profiler cannot split: this profile
sets CONTINUO_NATIVE=0 and splits the torch operations the C step replaces (what the decoder runs where
no C compiler is); `music-transformer bench` times the two side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["CONTINUO_NATIVE"] = "0"  # the decoder's torch operations, which the profiler can split

from music_transformer import generate  # noqa: E402
from music_transformer.bench import _primer  # noqa: E402
from music_transformer.decoder import CapturedStep, Decoder  # noqa: E402
from music_transformer.model import ModelConfig, MusicTransformer  # noqa: E402

KINDS = ("weights", "attention", "relative term", "sampling", "other tensor ops", "Python and dispatch")
STEP = "model step"


PRODUCTS = ("aten::bmm", "aten::baddbmm", "aten::matmul")  # with keys, q E^T, with values: in that order per layer


def _kind(name: str, in_step: bool, products_before: int) -> str:
    """The kind of one top-level aten operation: from its name, whether it ran in a model step, and how many
    products with keys, E^T or values came before it in this step (each layer makes three: q K^T, q E^T,
    then the weights times V, in that order, in both paths)."""
    if not in_step:
        return "sampling"
    if name in ("aten::addmm", "aten::mm", "aten::linear"):
        return "weights"
    if name in PRODUCTS:
        return "relative term" if products_before % 3 == 1 else "attention"
    if name in ("aten::_softmax", "aten::softmax", "aten::copy_", "aten::index_copy_"):
        return "attention"  # and writing the cache
    if name == "aten::pad":
        return "relative term"
    return "other tensor ops"


def profile_path(model: MusicTransformer, primer: list[int], steps: int, forward: bool, device: str) -> dict:
    """Microseconds per token of each kind, generating through the decoder or through forward passes."""
    hooks, step = [], None
    if forward:  # the forward pass is one model step; a hook on the model also sends generate there
        def enter(*_):
            nonlocal step
            step = record_function(STEP)
            step.__enter__()

        def leave(*_):
            step.__exit__(None, None, None)

        hooks = [model.register_forward_pre_hook(enter), model.register_forward_hook(leave)]
        original = None
    else:  # a decoder step, or its replay as a CUDA graph
        original = {Decoder: Decoder.step, CapturedStep: CapturedStep.__call__}

        def labelled(method):
            def step_in_a_window(self, tokens):
                with record_function(STEP):
                    return method(self, tokens)
            return step_in_a_window

        Decoder.step, CapturedStep.__call__ = labelled(Decoder.step), labelled(CapturedStep.__call__)
    try:
        stream = generate(model, primer, max_tokens=10**9, seed=0, max_note_seconds=None, cpu_threads=1)
        for _ in range(10):  # the context read, then warm-up
            next(stream)
        started = time.perf_counter()
        for _ in range(steps):
            next(stream)
        wall = (time.perf_counter() - started) / steps * 1e6
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
        with profile(activities=activities) as profiler:
            started = time.perf_counter()
            for _ in range(steps):
                next(stream)
            profiled = (time.perf_counter() - started) / steps * 1e6
        stream.close()
    finally:
        for hook in hooks:
            hook.remove()
        if original is not None:
            Decoder.step, CapturedStep.__call__ = original[Decoder], original[CapturedStep]
    events = sorted(profiler.events(), key=lambda event: event.time_range.start)
    windows = [(event.time_range.start, event.time_range.end) for event in events if event.name == STEP]
    times = defaultdict(float)
    gpu, window, products = 0.0, -1, 0
    for event in events:
        if event.device_type == torch.autograd.DeviceType.CUDA:
            gpu += event.device_time
            continue
        parent = event.cpu_parent
        if not event.name.startswith("aten::") or parent is not None and parent.name.startswith("aten::"):
            continue  # each top-level operation once, its own children included
        start = event.time_range.start
        while window + 1 < len(windows) and windows[window + 1][0] <= start:
            window, products = window + 1, 0
        in_step = window >= 0 and start <= windows[window][1]
        times[_kind(event.name, in_step, products)] += event.cpu_time_total
        products += in_step and event.name in PRODUCTS
    per_token = {kind: times[kind] / steps for kind in KINDS[:-1]}
    per_token["Python and dispatch"] = max(0.0, profiled - sum(per_token.values()))
    result = {kind: round(value, 1) for kind, value in per_token.items()}
    result["profiled_step_us"] = round(profiled, 1)
    result["step_us"] = round(wall, 1)  # without the profiler
    if device == "cuda":
        result["gpu_busy_us"] = round(gpu / steps, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    """Profiles both paths, prints a table and, with --json, one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--context", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = MusicTransformer(ModelConfig(n_layers=args.layers, d_model=256, n_heads=8, d_ff=1024, dropout=0.0,
                                         max_relative_distance=1024, train_length=args.context))
    model = model.to(args.device).eval()
    primer = _primer(args.context)
    paths = {"forward passes (before)": True, "decoder (now)": False}
    results = {name: profile_path(model, primer, args.steps, forward, args.device) for name, forward in paths.items()}
    print(f"\nOne token, {args.layers} x 256 at a {args.context}-token context on {args.device}, one thread "
          f"(microseconds per token; share of the step):")
    print(f"{'':<22}" + "".join(f"{name:>26}" for name in results))
    for kind in (*KINDS, "profiled_step_us", "step_us", *(("gpu_busy_us",) if args.device == "cuda" else ())):
        cells = []
        for result in results.values():
            share = f" ({result[kind] / result['profiled_step_us']:>4.0%})" if kind in KINDS else ""
            cells.append(f"{result[kind]:>19.0f}{share:>7}")
        print(f"{kind:<22}" + "".join(f"{cell:>26}" for cell in cells))
    if args.json:
        print(json.dumps({"context": args.context, "layers": args.layers, "device": args.device, **{
            name.split(" (")[0]: result for name, result in results.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
