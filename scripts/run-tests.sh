#!/usr/bin/env bash
# Runs the test suite with the services it needs: a JACK server on the dummy driver gives real MIDI ports.
# Each run starts its own server under its own name, so runs side by side (or a musician's own JACK
# session) never share ports or lose their server when another run ends.
set -uo pipefail
PY=${1:-.venv/bin/python}
export QT_QPA_PLATFORM=${QT_QPA_PLATFORM:-offscreen}
export JACK_NO_AUDIO_RESERVATION=1
started_jack=""
if command -v jackd >/dev/null; then
    export JACK_DEFAULT_SERVER="continuo-test-$$"
    log="${TMPDIR:-/tmp}/continuo-jackd-$$.log"
    # 128 frames (2.9 ms): the graph delivers MIDI once a period, and recorded onsets must be within 5 ms.
    # Real-time where the user may (root, the audio group), as a musician runs JACK: on a busy machine a server
    # at normal priority misses periods and drops MIDI. Without the right it says so and runs at normal priority.
    jackd --realtime -P 70 -n "$JACK_DEFAULT_SERVER" -d dummy -r 44100 -p 128 >"$log" 2>&1 &
    started_jack=$!
    for _ in $(seq 50); do
        command -v jack_wait >/dev/null && jack_wait -s "$JACK_DEFAULT_SERVER" -c >/dev/null 2>&1 && break
        sleep 0.1
    done
fi
"$PY" -m pytest "${@:2}"
status=$?
if [ -n "$started_jack" ]; then
    kill "$started_jack" 2>/dev/null
    wait "$started_jack" 2>/dev/null
    if [ $status -eq 0 ]; then rm -f "$log"; else echo "the JACK server's log: $log" >&2; fi
fi
exit $status
