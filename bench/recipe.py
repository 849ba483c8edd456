"""The training recipe measured: NLL with and without each technique, the same budget for every run.

    python bench/recipe.py --data corpus --steps 250 [--out runs/recipe-corpus] [--jobs 2]
    python bench/recipe.py --data jsb --steps 400 [--out runs/recipe-jsb] [--jobs 2]

Each run starts from the data set's baseline recipe and changes one thing (label smoothing, relative
local attention); checkpoint averaging needs no run of its own: the baseline keeps
its weights every `--keep-every` steps and the mean of the last five is scored beside it. Every run
has the same seed and the same number of optimizer steps, so it sees the same batches. (Attention
dropout's variants left with it: no gain at 1.7x the time, bench/README.md; their code is at 79d63de.)

- `corpus`: the bundled model's data and shape (the `small` preset, music21 corpus); the score is
  the valid NLL per token of `music_transformer.train` (held-out pieces in windows of L).
- `jsb`: the JSB Chorales benchmark's `cpu` config (`bench/jsb.py`); the score is the NLL per token
  of whole valid chorales.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import jsb  # noqa: E402

from music_transformer import train as train_module  # noqa: E402
from music_transformer.checkpoint import load_checkpoint  # noqa: E402
from music_transformer.evaluation import validation_nll  # noqa: E402
from music_transformer.train import load_config  # noqa: E402

# name -> (what it changes in the model config, in the training config); "baseline" changes nothing.
VARIANTS = {
    "corpus": {
        "baseline": ({}, {}),  # the small preset: dropout 0.1, no label smoothing
        "label smoothing 0.1": ({}, {"label_smoothing": 0.1}),
        "local attention (64)": ({"local_block": 64}, {}),
    },
    "jsb": {
        "baseline": ({}, {}),  # bench/jsb.py's cpu config: dropout 0.1
        "label smoothing 0.1": ({}, {"label_smoothing": 0.1}),
        "local attention (256)": ({"local_block": 256}, {}),
    },
}


def _configs(data: str, steps: int, warmup: int | None):
    if data == "jsb":
        model_config, train_config, _ = jsb.run_configs("cpu", "relative", steps)
    else:
        model_config, train_config = load_config("small")
        train_config = replace(train_config, steps=steps)
    if warmup is not None:
        train_config = replace(train_config, warmup_steps=warmup)
    return model_config, replace(train_config, checkpoint_minutes=60.0, seed=0)


def _score(data: str, checkpoint: Path) -> float:
    if data == "jsb":
        return jsb.score(checkpoint, jsb.JSBData.load().valid, "cpu")
    from music_transformer import data as data_module

    model = load_checkpoint(checkpoint, device="cpu")
    dataset = data_module.load_dataset("corpus", progress=False)
    batches = train_module.EventData(dataset, "corpus", 256).validation_batches(model.config.train_length, 32)
    return validation_nll(model, batches, model.device)


def run_variant(data: str, name: str, steps: int, warmup: int | None, out: Path, threads: int,
                keep_every: int) -> dict:
    """Trains one variant; returns its valid NLL (and, for the baseline, that of the averaged weights)."""
    model_config, train_config = _configs(data, steps, warmup)
    model_changes, train_changes = VARIANTS[data][name]
    model_config = replace(model_config, **model_changes)
    train_config = replace(train_config, **train_changes)
    run_dir = out / name.replace(" ", "-").replace("(", "").replace(")", "")
    if data == "jsb":
        source = jsb.JSBData.load()
    else:
        source = "corpus"
    started = time.monotonic()
    summary = train_module.train(source, run_dir, config=(model_config, train_config), threads=threads,
                                 device="cpu", keep_every_steps=keep_every if name == "baseline" else None,
                                 progress=False, resume=(run_dir / "last.pt").exists())
    result = {"variant": name, "steps": summary["step"], "minutes": round((time.monotonic() - started) / 60, 1),
              "valid_nll": summary["valid_nll"]}  # the loop's last validation, of model.pt
    if name == "baseline":
        kept = jsb.average_last(run_dir)
        if kept:
            result["averaged_valid_nll"] = _score(data, run_dir / "averaged.pt")
            result["averaged"] = [p.name for p in kept]
    (run_dir / "result.json").write_text(json.dumps(result, indent=1))
    return result


def _job(arguments: tuple) -> dict:
    return run_variant(*arguments)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=sorted(VARIANTS), required=True)
    parser.add_argument("--steps", type=int, required=True, help="optimizer steps of every run")
    parser.add_argument("--warmup", type=int, help="warm-up steps (default: the config's)")
    parser.add_argument("--variants", help="comma-separated subset (default: all)")
    parser.add_argument("--out", type=Path, help="run directories (default runs/recipe-DATA)")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once, each on cores/jobs threads")
    parser.add_argument("--keep-every", type=int, help="baseline weights kept every N steps (default steps/10)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.variants.split(",")] if args.variants else list(VARIANTS[args.data])
    unknown = [n for n in names if n not in VARIANTS[args.data]]
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r}; variants: {', '.join(VARIANTS[args.data])}")
    out = args.out or Path(f"runs/recipe-{args.data}")
    keep_every = args.keep_every or max(1, args.steps // 10)
    jobs = max(1, min(args.jobs, len(names)))
    threads = max(1, (os.cpu_count() or 1) // jobs)
    work = [(args.data, name, args.steps, args.warmup, out, threads, keep_every) for name in names]
    results = jsb.map_in_processes(_job, work, jobs)
    print(f"\n{args.data}: valid NLL per token (nats), {args.steps} steps each, seed 0")
    print(f"{'run':<28}{'NLL':>8}{'vs baseline':>13}{'minutes':>9}")
    base = next((r["valid_nll"] for r in results if r["variant"] == "baseline"), None)
    rows = [(r["variant"], r["valid_nll"], r["minutes"]) for r in results]
    for r in results:
        if "averaged_valid_nll" in r:
            rows.append((f"averaged ({len(r['averaged'])} ckpts)", r["averaged_valid_nll"], 0.0))
    for name, nll, minutes in rows:
        delta = f"{nll - base:+.4f}" if base is not None else ""
        print(f"{name:<28}{nll:>8.4f}{delta:>13}{minutes:>9.1f}")
    if args.json:
        print(json.dumps({"data": args.data, "steps": args.steps, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
