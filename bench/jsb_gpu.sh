#!/usr/bin/env bash
# The JSB benchmark's `gpu` config on one CUDA GPU, as one prepared run (bench/README.md, "JSB Chorales").
#
#   bash bench/jsb_gpu.sh [DATA_DIR] [RUN_DIR] [TRAIN_SECONDS] [REPORT_DIR]
#
# 1. checks the model on the GPU (tests/music_transformer/test_cuda.py);
# 2. probes the speed: relative, absolute, relative-timing-bar and relative-timing-bar-all-keys (or
#    $RUNS) side by side for 84 steps;
# 3. trains them side by side from scratch, all with the same number of steps, as many as the
#    probe says fit in TRAIN_SECONDS (at most the config's 4,000; a time guard stops a slow run);
# 4. prints the table (valid NLL of the final and the averaged weights, and of the averaged weights'
#    predictions averaged over 7 keys, --transpositions 3) and the decoder's speed on the GPU.
# Checkpoints stay in RUN_DIR; REPORT_DIR (if given) gets the report, the summaries with their
# validation curves, and the best relative model in half precision, cut into parts of 15 MB.
#
# TEACHERS=DIR (a RUN_DIR this script filled before, e.g. on the same warm machine): each run is
# distilled from its namesake's averaged weights there (`bench/jsb.py --teachers`), RUNS naming runs
# that DIR holds.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
data=${1:-$here/../shared/data/jsb16}
runs=${2:-$here/runs/jsb-gpu}
budget=${3:-300}
report=${4:-}
export PYTHONPATH=$here${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
device=${DEVICE:-cuda}  # DEVICE=cpu CONFIG=smoke: a dry run of this script without a GPU
# RUNS (comma-separated) and CONFIG (a name or a JSON file): another sweep
runs_list=${RUNS:-relative,absolute,relative-timing-bar,relative-timing-bar-all-keys}
IFS=, read -r -a names <<<"$runs_list"
jsb=("$python" "$here/bench/jsb.py" --config "${CONFIG:-gpu}" --runs "$runs_list" --jobs "${#names[@]}"
     --device "$device" --data "$data" --transpositions 3)
if [ -n "${TEACHERS:-}" ]; then
    # the runs below start by removing their folders in RUN_DIR: the teachers must live elsewhere
    [ "$(realpath -m "$TEACHERS")" != "$(realpath -m "$runs")" ] || { echo "TEACHERS must not be RUN_DIR"; exit 1; }
    jsb+=(--teachers "$TEACHERS")
fi
step() { echo; echo "=== $* ($(date -u +%T))"; }

if [ "$device" != cpu ]; then
    step "device"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || exit 1
    "$python" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))" || exit 1

    step "the model on CUDA"
    timeout 120 "$python" -m pytest -q -p no:cacheprovider "$here/tests/music_transformer/test_cuda.py" || exit 1
fi

mkdir -p "$runs"
step "speed probe: 84 steps of each of $runs_list, side by side"
rm -rf "$runs/probe"
timeout 240 "${jsb[@]}" --steps 84 --out "$runs/probe" --keep-every 0 >"$runs/probe.log" 2>&1 \
    || { tail -40 "$runs/probe.log"; exit 1; }
read -r steps keep seconds_per_step < <("$python" - "$runs/probe" "$budget" <<'EOF'
import json, sys
from pathlib import Path
per_step = []
for log in Path(sys.argv[1]).glob("*/log.jsonl"):
    points = [json.loads(line) for line in log.read_text().splitlines()]
    first, last = points[1], points[-1]  # after the first epoch: start-up and warm-up excluded
    per_step.append((last["elapsed_seconds"] - first["elapsed_seconds"]) / (last["step"] - first["step"]))
slowest = max(per_step)
steps = min(4000, int(float(sys.argv[2]) / slowest) // 10 * 10)
print(steps, max(10, steps // 40), f"{slowest:.4f}")
EOF
)
[ -n "${steps:-}" ] && [ "$steps" -gt 0 ] || { echo "the probe gave no speed"; tail -40 "$runs/probe.log"; exit 1; }
echo "slowest run: $seconds_per_step s/step side by side -> $steps steps each, weights kept every $keep"

guard=$("$python" -c "print(round($budget * 1.2 / 60, 2))")
step "training: $steps steps each, side by side (time guard $guard min)"
for name in "${names[@]}"; do rm -rf "${runs:?}/$name"; done
timeout $((budget * 6 / 5 + 90)) "${jsb[@]}" --steps "$steps" --max-minutes "$guard" --keep-every "$keep" \
    --out "$runs" --json 2>"$runs/train.err" | tee "$runs/train.log"
status=${PIPESTATUS[0]}
[ "$status" = 0 ] || tail -40 "$runs/train.err"

step "streaming decoder on $device (the bundled model, sampling 2,000 tokens, window 2,048)"
timeout 90 "$python" - "$device" <<'EOF' || true
import sys, time
from music_transformer import Note, generate, load_checkpoint
model = load_checkpoint(device=sys.argv[1])
primer = [Note(60 + 2 * i, 80, 0.25 * i, 0.25 * i + 0.25) for i in range(8)]
list(generate(model, primer, max_tokens=50, seed=0, window=2048))  # warm-up
started = time.perf_counter()
tokens = list(generate(model, primer, max_tokens=2000, seed=1, window=2048))
print(f"{sys.argv[1]} decoding: {len(tokens) / (time.perf_counter() - started):.0f} tokens/s")
EOF

if [ -n "$report" ]; then
    step "report to $report"
    mkdir -p "$report"
    cp "$runs/train.log" "$report/train.log" 2>/dev/null
    "$python" - "$runs" "$report" "${names[@]}" <<'EOF'
import json, sys
from pathlib import Path
from bench.jsb import load_model
from music_transformer import ModelConfig, save_checkpoint
runs, report = Path(sys.argv[1]), Path(sys.argv[2])
summaries = {}
for run in sys.argv[3:]:
    folder = runs / run
    summary = json.loads((folder / "summary.json").read_text()) if (folder / "summary.json").exists() else {}
    if (folder / "log.jsonl").exists():  # the validation curve, also of a run that did not finish
        summary["curve"] = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
    summaries[run] = summary
# The best relative-attention model comes back in half precision, in parts the transfer accepts.
scored = [(summary.get(key), run, name) for run, summary in summaries.items()
          if "model" in summary and ModelConfig.from_dict(summary["model"]).relative_attention
          for key, name in (("valid_nll", "model.pt"), ("averaged_valid_nll", "averaged.pt")) if summary.get(key)]
if scored:
    nll, run, name = min(scored)
    model = load_model(runs / run / name, "cpu").half()
    save_checkpoint(model, report / "best.pt", run=run, source=name, valid_nll=nll)
    data = (report / "best.pt").read_bytes()
    (report / "best.pt").unlink()
    part = 15 * 2**20
    for index in range(0, len(data), part):
        (report / f"best.pt.part{index // part}").write_bytes(data[index:index + part])
    summaries["exported"] = {"run": run, "weights": name, "valid_nll": nll, "dtype": "float16"}
(report / "summaries.json").write_text(json.dumps(summaries, indent=1))
print(json.dumps(summaries.get("exported")))
EOF
fi
exit "$status"
