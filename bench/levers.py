"""Issue 45's levers side by side: one start, one data set, one number of steps and one seed, a lever at a time.

    PYTHONPATH=. .venv/bin/python bench/levers.py --data data-cache/piano3.tokens.npz [--from MODEL]
        [--steps 300] [--arms 1024 1024+buckets ...] [--out runs/levers] [--threads 2] [--device cpu]
        [--pieces 12] [--json]
    PYTHONPATH=. .venv/bin/python bench/levers.py --smoke --out /tmp/levers     (a dry run in a minute)

Each arm is `music-transformer train --init-from MODEL` (default the bundled model) with the same schedule
(peak learning rate 3e-4 after 30 warm-up steps, batch 4, no dropout, no accompaniment windows, seed 45) and
`--steps` steps, plus its levers; L is the start's training length (1,024 for the bundled model):

- `L`: its own crops, one relative row per distance below L and no term past it (the bundled recipe, going on);
- `L+buckets`: L/2 relative buckets, the nearest L/4 distances exact, log-spaced up to L, one far row past it;
- `L+sounding`: the sounding-pitches input (`model.sounding_pitches`);
- `2L+buckets`: crops of 2L tokens, the buckets log-spaced up to 2L (a model without buckets cannot reach past
  its rows: `model.grown_state`);
- `2L+buckets+sounding`: all three, the memory recipe of stages 1 to 3;
- `L+restate`: every plain window plays passage after passage again right after itself
  (`data.restated_window`; half the samples, the other half being fill-in-the-middle as in every arm), a
  lesson in copying: the densest lesson, the one that moved the copy test (bench/README, "Can the model
  copy?"), at every arm's share of fill-in-the-middle.

Every model, the start among them, is then scored on each source's first `--pieces` held-out pieces of 36 s or
more (the pack's valid split by style: POP909 as `pop-piano`, the pianolatron rolls as `classical`; bench/memory.py
takes the same pieces from the MIDI folders) with each window of L/4 to 2L, each piece up to 8L tokens for every
model (`evaluation.position_nll`'s span), as bench/memory.py does. The table gives the NLL per token and the
gain of far context: W = L/2 less W = 2L (positive: the far context helps), and the copy test's gain
(bench/memory.py's `copy_test`: a 10 s passage of each piece heard again at once, NLL per token of the first
hearing less that of the second). An arm whose model is already in
`--out` (its `model.pt` and a finished log) is scored without training again, so a stopped sweep goes on.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import memory  # noqa: E402 - bench/memory.py: the held-out pieces and the NLL by window

from music_transformer import data, load_checkpoint  # noqa: E402
from music_transformer.train import load_config  # noqa: E402

ARMS = ("L", "L+buckets", "L+sounding", "2L+buckets", "2L+buckets+sounding", "L+restate")
RESTATE_RATE = "1.0"  # the `restate` lever's share of plain windows with passages played again at once
SOURCES = ("pop-piano", "classical")
SCHEDULE = ("--dropout", "0", "--lr", "3e-4", "--warmup-steps", "30", "--batch-size", "4", "--accompany-rate", "0",
            "--seed", "45")


def lever_flags(arm: str, length: int) -> list[str]:
    """The training flags of an arm for a start of training length `length`."""
    levers = arm.split("+")
    flags = ["--train-length", str(2 * length)] if levers[0] == "2L" else []
    if "buckets" in levers:
        flags += ["--relative-buckets", str(length // 2)]
    if "sounding" in levers:
        flags += ["--sounding-input"]
    if "restate" in levers:
        flags += ["--restate-rate", RESTATE_RATE]
    return flags


def finished(run: Path) -> bool:
    """Whether `run` holds a finished training (its model and the log's last line)."""
    log = run / "log.jsonl"
    return (run / "model.pt").exists() and log.exists() and bool(log.read_text().strip())


def train_arm(arm: str, start: str | None, config: str, length: int, pack: str, steps: int, run: Path,
              threads: int, device: str) -> float:
    """Trains one arm into `run` (as the command line does, its output in `run`/train.txt); returns the minutes
    it took."""
    command = [sys.executable, "-m", "music_transformer.cli", "train", "--data", pack, "--config", config,
               "--out", str(run), "--steps", str(steps), "--threads", str(threads), "--device", device,
               "--no-progress", *SCHEDULE, *lever_flags(arm, length)]
    if start:
        command += ["--init-from", start]
    began = time.perf_counter()
    shutil.rmtree(run, ignore_errors=True)  # an arm stopped half-way starts again
    run.mkdir(parents=True)
    with open(run / "train.txt", "w") as log:  # the run's own lines, apart from the table
        subprocess.run(command, check=True, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    return (time.perf_counter() - began) / 60


def held_out(pack: str, pieces: int) -> dict[str, list[data.Piece]]:
    """Each source's first `pieces` held-out pieces of 36 s or more, from the pack's valid split."""
    valid = data.load_dataset(pack).valid
    return {source: memory.long_enough([p for p in valid if p.style == source])[:pieces] for source in SOURCES}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="a token pack of POP909 (pop-piano) and the rolls (classical)")
    parser.add_argument("--from", dest="start", default=str(ROOT / "assets" / "default.safetensors"),
                        help="the model every arm starts from (default: the bundled model)")
    parser.add_argument("--steps", type=int, default=300, help="steps for every arm (default 300)")
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--out", default=str(ROOT / "runs" / "levers"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--pieces", type=int, default=12, help="held-out pieces per source (default 12)")
    parser.add_argument("--smoke", action="store_true", help="a dry run: the tiny config from scratch, 2 steps")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config, start, steps, pieces = "piano", args.start, args.steps, args.pieces
    if args.smoke:
        config, start, steps, pieces = "tiny", None, 2, 2
        if not args.data:
            args.data = str(out / "smoke.tokens.npz")
            folders = [f"pop-piano={memory.SHARED / 'pop909' / 'midi'}",
                       f"classical={memory.SHARED / 'pianolatron' / 'midi'}"]
            subprocess.run([sys.executable, "-m", "music_transformer.cli", "pack", "--data", *folders,
                            "--limit", "40", "--out", args.data], check=True, cwd=ROOT)
    if not args.data:
        parser.error("--data: a token pack (music-transformer pack --data pop-piano=... classical=...)")
    length = (load_checkpoint(start).config if start else load_config(config)[0]).train_length
    windows = [length // 4, length // 2, length, 2 * length]
    groups = held_out(args.data, pieces)
    result: dict = {"data": Path(args.data).name, "from": Path(start).name if start else None, "steps": steps,
                    "length": length, "windows": windows, "span": 8 * length, "schedule": " ".join(SCHEDULE),
                    "pieces": {source: [p.piece_id for p in picked] for source, picked in groups.items()},
                    "arms": {}}
    print(f"NLL per token by window ({steps} steps an arm; each piece's first {8 * length:,} tokens)", flush=True)
    print(f"{'arm':<22}{'source':<11}" + "".join(f"{f'W={w}':>9}" for w in windows) + f"{'far gain':>10}"
          + f"{'copy gain':>11}")
    for name in (["start"] if start else []) + list(args.arms):  # each scored as soon as it is trained
        entry = result["arms"].setdefault(name, {})
        path = start
        if name != "start":
            run = out / name
            entry.update(flags=" ".join(lever_flags(name, length)), train_minutes=None)
            if not finished(run):
                entry["train_minutes"] = train_arm(name, start, config, length, args.data, steps, run, args.threads,
                                                   args.device)
            path = str(run / "model.pt")
        model = load_checkpoint(path, device=args.device)
        for source, picked in groups.items():
            if not picked:
                continue
            style = memory.model_style(source, model.config.vocab_size)
            scores = memory.nll_by_window(model, picked, style, windows, 8 * length)
            gain = scores[length // 2] - scores[2 * length]
            copy = memory.copy_test(model, picked, style, 0)
            entry[source] = {"nll": {str(w): v for w, v in scores.items()}, "far_gain": gain, "copy": copy}
            print(f"{name:<22}{source:<11}" + "".join(f"{v:>9.3f}" for v in scores.values()) + f"{gain:>+10.3f}"
                  + f"{copy['gain']:>+11.3f}", flush=True)
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
