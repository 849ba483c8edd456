#!/usr/bin/env bash
# The first thing a session runs when it is lent a GPU: one prepared script, results under one folder.
#
#   bash bench/gpu_session.sh [OUT]            (OUT: default $OUT, else runs/gpu-session)
#   CONFIG=smoke DEVICE=cpu bash bench/gpu_session.sh /tmp/gpu-dry-run     (a dry run anywhere, < 1 minute)
#
# 1. the model on CUDA (tests/music_transformer/test_cuda.py);
# 2. trains the piano model (config $CONFIG, default `piano-gpu`) for $TRAIN_MINUTES (default 8) on the
#    token pack $PACK (default data-cache/piano.tokens.npz, made here by
#    `music-transformer pack --data pop-piano=../shared/data/pop909/midi classical=../shared/data/pianolatron/midi
#    corpus --out data-cache/piano.tokens.npz` and carried to the machine: ../shared does not travel), keeping
#    weights to average. It goes on from the weights of $INIT_FROM (default the bundled model,
#    assets/default.safetensors; INIT_FROM=runs/memory3/averaged.pt, carried, goes on from a CPU stage;
#    INIT_FROM= starts from scratch) with its own schedule: peak learning rate $LR
#    (default 5e-4 from a model, the config's from scratch), no dropout; growing it into the memory recipe
#    ($GROW, default: 2,048-token crops, 512 relative buckets with a shared far row up to 2,048, the
#    sounding-pitches input; a model that has them already keeps them), a quarter of the plain windows
#    restated passage after passage ($RESTATE, default 0.25: the copying lesson of bench/README's "Can the
#    model copy?"; RESTATE=0 leaves it out);
# 3. scores it on the held-out pieces (`music-transformer eval`, by style and position) and times the
#    streaming decoder on the device for it and for the bundled model; then the bundled model's decoding on
#    the device against one CPU thread, and 8 variations in one batch against 1 (device-decode.json);
# 4. if at least $LEVERS_MINUTES (default 5) of $SESSION_MINUTES (default 13) are left, issue 45's levers side
#    by side (bench/levers.py: six arms of $LEVER_STEPS steps, default 400, from the bundled model on $PACK,
#    each scored by window as soon as it is trained; levers.txt);
# 5. if at least $JSB_MINUTES (default 4) are still left, the JSB sweep (bench/jsb_gpu.sh) in what remains, on
#    $JSB_DATA (default data-cache/jsb16: a copy of ../shared/data/jsb16, carried too).
# OUT gets: session.log, the training log and summary, eval and decode figures, and the averaged model in
# half precision (piano-model-fp16.pt: a few MB; every file under 16 MB), to commit from the session.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-${OUT:-$here/runs/gpu-session}}
device=${DEVICE:-cuda}
config=${CONFIG:-piano-gpu}
pack=${PACK:-$here/data-cache/piano.tokens.npz}
python=${PYTHON:-python3}
started=$(date +%s)
export PYTHONPATH=$here${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
mkdir -p "$out"
exec > >(tee -a "$out/session.log") 2>&1
step() { echo; echo "=== $* ($(date -u +%T), $(( $(date +%s) - started )) s in)"; }
mt() { "$python" -m music_transformer.cli "$@"; }

# The C step is compiled with the package now, not at run time: a bare copy of the checkout has no build, and
# the CPU figures beside the GPU's would be torch's operations. hatch_build.py needs no hatchling.
[ -f "$here/music_transformer/_native/variants.json" ] || "$python" "$here/hatch_build.py" >/dev/null \
    || echo "no C step built here (no C compiler): the CPU figures are torch's operations"

grow=${GROW---train-length 2048 --relative-buckets 512 --sounding-input}
if [ "$config" = smoke ]; then
    config=tiny
    minutes=${TRAIN_MINUTES:-0.15}
    grow=${GROW---train-length 64 --relative-buckets 16 --sounding-input}
    if [ -z "${PACK:-}" ]; then  # a small pack of its own, so that the dry run needs nothing prepared
        pack=$out/smoke.tokens.npz
        mt pack --data "pop-piano=$here/../shared/data/pop909/midi" "classical=$here/../shared/data/pianolatron/midi" \
            --limit 30 --out "$pack" || exit 1
    fi
else
    minutes=${TRAIN_MINUTES:-8}
fi
[ -f "$pack" ] || { echo "no token pack at $pack: make it with 'music-transformer pack' (see the top of this script)"; exit 1; }
init=${INIT_FROM-$here/assets/default.safetensors}
if [ "$config" = tiny ] && [ -z "${INIT_FROM+set}" ]; then  # the dry run: start from a tiny model of its own
    step "a tiny model to start from"
    rm -rf "$out/smoke-start"
    mt train --data "$pack" --config tiny --out "$out/smoke-start" --steps 3 --device "$device" --no-progress || exit 1
    init=$out/smoke-start/model.pt
fi
start=()
if [ -n "$init" ]; then
    [ -f "$init" ] || { echo "no model at $init to start from (INIT_FROM= starts from scratch)"; exit 1; }
    # shellcheck disable=SC2206  # (the growth flags are words on purpose)
    start=(--init-from "$init" --dropout 0 --lr "${LR:-5e-4}" --warmup-steps "${WARMUP:-100}" $grow)
elif [ -n "${LR:-}" ]; then
    start=(--lr "$LR")
fi

if [ "$device" != cpu ]; then
    step "device"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || exit 1
    "$python" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))" || exit 1
    step "the model on CUDA"
    timeout 180 "$python" -m pytest -q -p no:cacheprovider "$here/tests/music_transformer/test_cuda.py" || exit 1
fi

run=$out/piano
rm -rf "$run"
step "training $config for $minutes minutes on $device ($(basename "$pack"))${init:+, from $(basename "$init")}"
timeout $(( ${minutes%.*} * 60 + 240 )) "$python" -m music_transformer.cli train --data "$pack" --config "$config" \
    --out "$run" --max-minutes "$minutes" --device "$device" --keep-every-steps "${KEEP_EVERY:-100}" \
    --checkpoint-minutes 2 --restate-rate "${RESTATE:-0.25}" --no-progress "${start[@]}" || echo "training stopped early (status $?); what it kept is scored below"
[ -f "$run/model.pt" ] || { echo "no model was written"; exit 1; }

step "averaging the last kept weights"
mapfile -t kept < <(ls "$run"/step*.pt 2>/dev/null | sort -V | tail -n 5)
model=$run/model.pt
if [ "${#kept[@]}" -ge 2 ]; then
    mt average "${kept[@]}" "$run/model.pt" --out "$run/averaged.pt" && model=$run/averaged.pt
fi
"$python" - "$model" "$out/piano-model-fp16.pt" <<'EOF' || exit 1
import sys, torch
from music_transformer.checkpoint import read_checkpoint
state = read_checkpoint(sys.argv[1])
state.pop("training", None)
state["model"] = {name: tensor.half() if tensor.is_floating_point() else tensor for name, tensor in state["model"].items()}
torch.save(state, sys.argv[2])
print(f"wrote {sys.argv[2]} (half precision)")
EOF
cp "$run/log.jsonl" "$out/train-log.jsonl" 2>/dev/null

step "held-out NLL by style and position"
timeout 600 "$python" -m music_transformer.cli eval --checkpoint "$out/piano-model-fp16.pt" --data "$pack" \
    --device "$device" | tee "$out/eval.txt"

step "streaming decoder on $device: the new model and the bundled one"
timeout 180 "$python" - "$device" "$out/piano-model-fp16.pt" <<'EOF' | tee "$out/decode.txt"
import json, sys, time
import torch
from music_transformer import generate, load_checkpoint
device, new = sys.argv[1], sys.argv[2]
for name, path in (("new", new), ("bundled", None)):
    model = load_checkpoint(path, device=device)
    for _ in range(2):  # the first run warms the kernels up
        started = time.perf_counter()
        tokens = list(generate(model, [], max_tokens=600, seed=0))
        seconds = time.perf_counter() - started
    print(json.dumps({"model": name, "device": device, "window": model.config.train_length,
                      "tokens": len(tokens), "tokens_per_s": round(len(tokens) / seconds, 1)}))
EOF

step "decoding on $device against one CPU thread: the bundled model, one stream each, and 8 variations against 1"
# gpu_over_cpu_decode (goal >= 5) and variations8_over_1_time on the device (goal <= 1.3), one JSON line
decode_tokens=$([ "$device" = cpu ] && echo 100 || echo 600)
timeout 240 "$python" -c 'import json, sys; from music_transformer import bench
print(json.dumps(bench.device_decode(sys.argv[1], tokens=int(sys.argv[2]))))' "$device" "$decode_tokens" \
    | tee "$out/device-decode.json"
if [ "$device" != cpu ]; then  # where a step's time goes on the device (the CPU's split is in bench/README.md)
    timeout 180 "$python" "$here/bench/decode_profile.py" --device "$device" --context 1024 --layers 4 --steps 40 \
        --json | tee "$out/decode-profile.txt"
fi

left=$(( ${SESSION_MINUTES:-13} * 60 - ($(date +%s) - started) ))
if [ "$config" = tiny ] || { [ "$device" != cpu ] && [ "$left" -ge $(( ${LEVERS_MINUTES:-5} * 60 )) ]; }; then
    step "issue 45's levers side by side in the $left s left (bench/levers.py)"
    if [ "$config" = tiny ]; then levers=(--smoke --data "$pack" --arms L 2L+buckets+sounding); else
        levers=(--data "$pack" --steps "${LEVER_STEPS:-400}"); fi
    timeout $(( left > 120 ? left - 60 : 60 )) "$python" "$here/bench/levers.py" "${levers[@]}" --device "$device" \
        --out "$out/levers-runs" --json | tee "$out/levers.txt" || echo "the levers stopped early; what they scored is above"
    rm -rf "$out/levers-runs"
fi

left=$(( ${SESSION_MINUTES:-13} * 60 - ($(date +%s) - started) ))
if [ "$device" != cpu ] && [ "$left" -ge $(( ${JSB_MINUTES:-4} * 60 )) ]; then
    step "the JSB sweep in the $left s left"
    bash "$here/bench/jsb_gpu.sh" "${JSB_DATA:-$here/data-cache/jsb16}" "$out/jsb-runs" $(( left - 120 )) "$out/jsb" || true
    rm -rf "$out/jsb-runs"
fi
rm -rf "$run" "$out/smoke.tokens.npz" "$out/smoke-start"
step "done: $out"
ls -la "$out"
