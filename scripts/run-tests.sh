#!/usr/bin/env bash
# Runs the test suite with the services it needs: a JACK server on the dummy driver gives real MIDI ports.
set -uo pipefail
PY=${1:-.venv/bin/python}
export QT_QPA_PLATFORM=${QT_QPA_PLATFORM:-offscreen}
export JACK_NO_AUDIO_RESERVATION=1
started_jack=""
if command -v jackd >/dev/null && ! pgrep -x jackd >/dev/null; then
    # 128 frames (2.9 ms): the graph delivers MIDI once a period, and recorded onsets must be within 5 ms.
    jackd --no-realtime -d dummy -r 44100 -p 128 >/tmp/continuo-jackd.log 2>&1 &
    started_jack=$!
    for _ in $(seq 50); do
        command -v jack_wait >/dev/null && jack_wait -c >/dev/null 2>&1 && break
        sleep 0.1
    done
fi
"$PY" -m pytest "${@:2}"
status=$?
[ -n "$started_jack" ] && kill "$started_jack" 2>/dev/null
exit $status
