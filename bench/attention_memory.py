"""The attention's memory: `python bench/attention_memory.py [--quick] [--local] [--block-size N] [--json]`.

1. Peak memory of one relative-attention layer, forward and backward, at L = 1024, 2048, 4096: our
   blocked skewing, the paper's single skew, Shaw et al.'s direct formula (`shaw_relative_logits`, which
   gathers the (L, L, D) tensor skewing avoids), and plain causal attention (F.scaled_dot_product_attention,
   no relative term), each in a fresh process (`_layer_memory_child`).
2. With --local: peak memory and time of one training step at 4,096 and 8,192 tokens, relative local
   attention vs. global (`training_memory`, in a fresh process each).

The model is `music-transformer bench`'s (6 layers, 256 wide, 8 heads). Our kernel holds one block of
`--block-size` queries' logits at a time: 64 by default, the block bench/README.md's figures were measured
with; the library trains with `music_transformer.attention.BLOCK_SIZE` (256).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from music_transformer.attention import Visibility, relative_attention, relative_table  # noqa: E402
from music_transformer.bench import BENCH_CONFIG, _model  # noqa: E402

METHODS = ("blocked skew", "single skew", "shaw", "sdpa")
SHAW_LIMIT_BYTES = 12 * 2**30  # Shaw's gathered tensor past this is reported from its size, not run
README_BLOCK_SIZE = 64  # the query block of bench/README.md's figures


def shaw_relative_logits(q: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
    """S_rel by Shaw et al.'s direct formula, gathering an (L, L, D) tensor.

    q: (..., H, L, D); embeddings: (H, M, D). Returns (..., H, L, L) with q_i . e_(j-i) for j <= i and
    zero above the diagonal.
    """
    length = q.shape[-2]
    table = relative_table(embeddings, length)  # row r: distance r-(L-1)
    positions = torch.arange(length, device=q.device)
    distance = positions[None, :] - positions[:, None]  # j - i
    index = (distance + length - 1).clamp(max=length - 1)
    gathered = table[:, index]  # (H, L, L, D): the O(L^2 D) tensor skewing avoids
    logits = torch.einsum("...hid,hijd->...hij", q, gathered)
    return logits.masked_fill(distance > 0, 0.0)


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def _layer_memory_child(method: str, length: str, block_size: str) -> None:
    """In a fresh process: one attention layer forward and backward; prints the peak memory it added.

    The process runs with MALLOC_MMAP_THRESHOLD_ low, so every tensor of note is its own mapping that
    is returned to the system when freed: resident memory then follows live tensors, and the peak
    (VmHWM, reset through /proc/self/clear_refs) is the peak of what the layer held at once.
    """
    length = int(length)
    d_model, heads = BENCH_CONFIG["d_model"], BENCH_CONFIG["n_heads"]
    head_dim = d_model // heads
    torch.manual_seed(0)
    qkv = torch.nn.Linear(d_model, 3 * d_model)
    out = torch.nn.Linear(d_model, d_model)
    embeddings = torch.nn.Parameter(torch.randn(heads, length, head_dim) * head_dim ** -0.5)

    def layer(size: int) -> None:
        x = torch.randn(1, size, d_model, requires_grad=True)
        q, k, v = qkv(x).view(1, size, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
        if method == "sdpa":
            y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif method == "shaw":
            logits = (q @ k.transpose(-1, -2) + shaw_relative_logits(q, embeddings)) / head_dim ** 0.5
            logits = logits.masked_fill(~Visibility().mask(size, size), float("-inf"))
            y = torch.softmax(logits, -1) @ v
        else:
            y = relative_attention(q, k, v, embeddings,
                                   block_size=int(block_size) if method == "blocked skew" else None)
        out(y.transpose(1, 2).reshape(1, size, d_model)).sum().backward()

    layer(64)  # load every kernel first
    for parameter in (*qkv.parameters(), *out.parameters(), embeddings):
        parameter.grad = torch.zeros_like(parameter)  # weight gradients exist in every method alike
    _print_peak(lambda: layer(length))


def _training_memory_child(length: str, local_block: str, block_size: str) -> None:
    """In a fresh process: one training step of the benchmark model; prints the peak memory it added."""
    length, local_block, block_size = int(length), int(local_block), int(block_size)
    model = _model("relative", length, max_relative_distance=min(length, 1024),
                   local_block=local_block or None).train()
    for block in model.blocks:
        block.attention.block_size = block_size or None  # None: the paper's single skew
    tokens = torch.randint(0, 388, (1, length + 1), generator=torch.Generator().manual_seed(3))

    def step(size: int) -> None:
        logits = model(tokens[:, :size])
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:size + 1].flatten()).backward()

    step(64)
    _print_peak(lambda: step(length))


CHILDREN = {"layer": _layer_memory_child, "training": _training_memory_child}


def _print_peak(run) -> None:
    """Runs `run()` and prints, as JSON, the peak resident memory it added (VmHWM reset first) and its time."""
    before = _status_bytes("VmRSS")
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # reset the peak
    started = time.perf_counter()
    run()
    seconds = time.perf_counter() - started
    print(json.dumps({"peak_bytes": _status_bytes("VmHWM") - before, "seconds": seconds}))


def _peak_in_fresh_process(child: str, *args, timeout: float) -> dict:
    """Runs CHILDREN[child](*args) in a fresh process whose allocator returns freed tensors: its peak in bytes
    ("peak_bytes") and the seconds the measured part took ("seconds")."""
    result = subprocess.run([sys.executable, __file__, "--child", child, *map(str, args)],
                            capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536",
                                 "OMP_NUM_THREADS": str(torch.get_num_threads())})
    if result.returncode != 0:
        raise RuntimeError(f"memory benchmark {child}{args} failed: {result.stderr[-500:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def layer_memory(method: str, length: int, block_size: int = README_BLOCK_SIZE) -> float | None:
    """Peak bytes one attention layer adds in forward and backward (None: too big to run here)."""
    if method == "shaw" and 3 * length * length * BENCH_CONFIG["d_model"] * 4 > SHAW_LIMIT_BYTES:
        return None
    return float(_peak_in_fresh_process("layer", method, length, block_size, timeout=600)["peak_bytes"])


def training_memory(length: int, local_block: int | None, block_size: int | None) -> dict:
    """One training step (6 x 256 model, batch 1), local or global relative attention: the peak bytes
    it adds ("peak_bytes") and its seconds ("seconds")."""
    return _peak_in_fresh_process("training", length, local_block or 0, block_size or 0, timeout=1800)


def main(argv: list[str] | None = None) -> int:
    """Measures the attention's memory, prints a table and, with --json, one JSON line."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:  # a fresh process measuring one case
        CHILDREN[argv[1]](*argv[2:])
        return 0
    parser = argparse.ArgumentParser(prog="bench/attention_memory.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument("--quick", action="store_true", help="one length, 512 (a smoke run)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--block-size", type=int, default=README_BLOCK_SIZE,
                        help=f"queries per block of our kernel (default {README_BLOCK_SIZE}, bench/README.md's)")
    parser.add_argument("--local", action="store_true",
                        help="also training memory at 4,096 and 8,192 tokens, local vs. global attention")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results: dict = {"torch": torch.__version__, "threads": torch.get_num_threads(), "block_size": args.block_size}

    lengths = (1024, 2048, 4096) if not args.quick else (512,)
    print(f"Peak memory of one attention layer, forward + backward (MB), d_model 256, 8 heads, "
          f"blocks of {args.block_size} queries:")
    print(f"{'L':>6} " + " ".join(f"{m:>13}" for m in METHODS))
    memory = {}
    for length in lengths:
        memory[length] = {method: layer_memory(method, length, args.block_size) for method in METHODS}
        cells = [f"{v / 2**20:>13.1f}" if v is not None else f"{'(too big)':>13}" for v in memory[length].values()]
        print(f"{length:>6} " + " ".join(cells))
        for method, value in memory[length].items():
            if value is not None:
                results[f"memory_mb_{method.replace(' ', '_')}_{length}"] = round(value / 2**20, 1)
    reference = 2048 if 2048 in memory else lengths[-1]
    row = memory[reference]
    if row["shaw"]:
        results[f"skew_over_shaw_memory_{reference}"] = round(row["blocked skew"] / row["shaw"], 4)
    results[f"skew_over_sdpa_memory_{reference}"] = \
        round(row["blocked skew"] / row["sdpa"], 2) if row["sdpa"] else None  # too small to see at --quick
    results[f"single_skew_over_shaw_memory_{reference}"] = \
        round(row["single skew"] / row["shaw"], 4) if row["shaw"] else None

    if args.local:
        print("\nA training step, 6 x 256, batch 1, relative attention: peak memory (MB) / seconds:")
        print(f"{'L':>6} {'local (512)':>16} {'global, blocked':>16} {'global, single skew':>20}")
        for length in (4096, 8192):
            row = {"local": training_memory(length, 512, args.block_size),
                   "global": training_memory(length, None, args.block_size),
                   "single": training_memory(length, None, None)}
            print(f"{length:>6} " + " ".join(f"{row[k]['peak_bytes'] / 2**20:>{w - 7}.1f} / {row[k]['seconds']:>4.1f}"
                                            for k, w in (("local", 16), ("global", 16), ("single", 20))))
            for key, value in row.items():
                results[f"train_memory_mb_{key}_{length}"] = round(value["peak_bytes"] / 2**20, 1)
                results[f"train_step_seconds_{key}_{length}"] = round(value["seconds"], 2)
            results[f"local_over_global_memory_{length}"] = round(row["local"]["peak_bytes"]
                                                                  / row["global"]["peak_bytes"], 3)
            results[f"local_over_single_skew_memory_{length}"] = round(row["local"]["peak_bytes"]
                                                                       / row["single"]["peak_bytes"], 3)
            results[f"local_over_global_step_time_{length}"] = round(row["local"]["seconds"]
                                                                     / row["global"]["seconds"], 3)
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
