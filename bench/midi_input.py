"""Benchmark of live MIDI input: keyboard-to-thru latency on a real JACK graph, the duet's answer time, a flood
of messages into a studio window, with every message counted at each hop, and how exactly notes are stamped
while the model writes. Prints a table; with --json, one JSON line.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/midi_input.py [--json] [--checkpoint PATH]
        [--period 64] [--flood-period 128] [--notes 1000] [--duet-runs 5] [--flood-seconds 10] [--onset-notes 300]
        [--burst-notes 5000] [--queue-size N]

It starts its own JACK server (`jackd -n continuo-bench -d dummy -p PERIOD`, no real-time rights needed)
so that the period is known, and stops it at the end.

1. thru_latency_p99_ms: a test client plays notes (200 a second) into the studio's input; another client
   listens to the thru output. Latency = time the listener got each note minus the time the keyboard sent
   it, both on the same clock, so it includes the JACK graph (one period to reach the studio, up to one
   more to leave it). `thru_studio_p99_ms` is the studio's own part: message read to thru sent.
2. duet_answer_ms: the studio's Duet with the default model (assets/default.safetensors) on this CPU, fed an
   8-note phrase; from the end of the 600 ms pause to the first answering note reaching the output; median
   of several phrases (`duet_answer_max_ms`: the slowest).
3. flood: 1,000 messages a second for 10 seconds into a real studio window on JACK; the longest stall of
   the GUI's event loop (a 5 ms timer) and how many notes did not land in the roll.
4. onset_*: another process plays notes while the model writes in this one; how far each note's stamp is
   from the time it was sent, stamped when read (as before `ArrivalClock`) and when it arrived (now).
5. burst_*: 5,000 notes sent as fast as the client takes them into a studio window recording, beside a witness
   whose queue holds any burst: what the graph lost, what the studio read fewer than the witness, the notes
   in the take (`--queue-size` sets the studio's rtmidi queue, e.g. the old 8,192).

Every message is counted at each hop, so a loss is placed where it happens:

    thru:  sent ─> [JACK graph] ─> witness read  (a second client on the keyboard's port, read as the studio reads)
                               └─> studio read ─> handed (to thru) ─> thru sent ─> [JACK graph] ─> listener read
    flood: sent ─> [JACK graph] ─> witness read
                               └─> studio read ─> handed ─> drained (to the recorder) ─> notes in the roll

`*_read` counts what a client took from rtmidi's queue (filled in C++ on JACK's thread); a message the
witness read and the studio did not was lost in the studio's client (rtmidi's queue or our reader); one
neither read was lost in the graph. The listening clients read rtmidi's queue from a thread, as the
studio does: a Python callback on JACK's thread waits for the GIL and makes the graph itself miss deadlines
(an earlier version of this bench listened that way, and lost notes it then blamed on the studio).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from itertools import pairwise
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SERVER = "continuo-bench"
WITNESS_QUEUE_SIZE = 1 << 17  # the burst's witness: room for any burst


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of the values lie."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@contextlib.contextmanager
def jack_server(period: int, realtime: bool = True):
    """A private JACK server on the dummy driver with a known period, for the `with` block; the environment
    points clients at it. It runs real-time where the user may (root, the audio group), as a musician's JACK
    and the tests' server do: at normal priority on a busy machine the graph misses periods and drops MIDI
    before any client sees it. Yields whether it got real-time scheduling."""
    import tempfile

    os.environ["JACK_DEFAULT_SERVER"] = SERVER
    os.environ["JACK_NO_AUDIO_RESERVATION"] = "1"
    log = tempfile.TemporaryFile("w+")
    priority = ["--realtime", "-P", "70"] if realtime else ["--no-realtime"]
    server = subprocess.Popen(["jackd", *priority, "-n", SERVER, "-d", "dummy", "-r", "48000", "-p", str(period)],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):
            if subprocess.run(["jack_wait", "-c"], capture_output=True).returncode == 0:
                break
            time.sleep(0.05)
        else:
            raise SystemExit("jackd did not start (install jackd2)")
        log.seek(0)
        yield realtime and "Cannot use real-time scheduling" not in log.read()
    finally:
        server.terminate()
        server.wait(5)
        log.close()


def wait_for(condition, timeout: float) -> bool:
    """Polls a condition until it holds or the timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


def paced(port, messages: list[list[int]], rate: float) -> list[float]:
    """Sends raw messages at `rate` a second (sleep, then spin); returns when each left."""
    sent = []
    origin = time.perf_counter()
    for index, data in enumerate(messages):
        deadline = origin + index / rate
        while (left := deadline - time.perf_counter()) > 0.002:
            time.sleep(left - 0.002)
        while time.perf_counter() < deadline:
            pass
        port.send_message(data)
        sent.append(time.perf_counter())
    return sent


def port_named(fragment: str, timeout: float = 5.0) -> str:
    """The full name of the JACK MIDI output port whose name contains `fragment` (waiting for it to appear)."""
    import rtmidi

    scanner = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="bench scan")
    try:
        deadline = time.monotonic() + timeout
        while True:
            names = [name for name in scanner.get_ports() if fragment in name]
            if names:
                return names[0]
            if time.monotonic() > deadline:
                raise SystemExit(f"no port named like {fragment!r} appeared")
            time.sleep(0.05)
    finally:
        scanner.delete()


def thru_latency(notes: int, callback_listener: bool = False) -> dict:
    """Keyboard client -> studio input -> thru -> listening client, on the running JACK server; every hop
    counted. `callback_listener`: the listener hears through a Python callback on JACK's thread (how this
    bench listened before it counted each hop), not by reading its queue from a thread."""
    import rtmidi

    from continuo.midi_input import MidiInput
    from continuo.playback import MidiPortSink

    thru = MidiPortSink(virtual=True, client_name="Continuo bench thru")
    studio_part: list[float] = []
    thru_sent = [0]

    def through(at: float, message) -> None:
        thru.send(message)
        thru_sent[0] += 1
        studio_part.append(time.perf_counter() - at)

    received: list[float] = []
    if callback_listener:
        listener = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="bench listener")
        listener.set_callback(lambda event, data=None: received.append(time.perf_counter()))
        listener.open_port(listener.get_ports().index(port_named("Continuo bench thru")))
    else:
        listener = MidiInput(port_named("Continuo bench thru"), lambda at, message: received.append(at),
                             client_name="bench listener")
    keyboard = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="bench keys")
    keyboard.open_virtual_port("out")
    keys = port_named("bench keys")
    witnessed: list[float] = []
    witness = MidiInput(keys, lambda at, message: witnessed.append(at), client_name="bench witness")
    studio_input = MidiInput(keys, through)
    try:
        time.sleep(0.3)  # the connections settle before the first note
        messages = []
        for index in range(notes):
            messages.append([0x90, 36 + index % 64, 100])
        sent = paced(keyboard, messages, 200.0)
        wait_for(lambda: len(received) >= notes and len(witnessed) >= notes, 5)
    finally:
        studio_input.close()
        witness.close()
        keyboard.close_port()
        keyboard.delete()
        if callback_listener:
            listener.cancel_callback()
            listener.close_port()
            listener.delete()
        else:
            listener.close()
        thru.close()
    latencies = [(got - left) * 1000 for got, left in zip(received, sent, strict=False)]
    graph = [(got - left) * 1000 for got, left in zip(witnessed, sent, strict=False)]
    return {"thru_latency_p50_ms": round(percentile(latencies, 0.5), 2),
            "thru_latency_p99_ms": round(percentile(latencies, 0.99), 2),
            "thru_latency_max_ms": round(max(latencies), 2),
            "thru_graph_p99_ms": round(percentile(graph, 0.99), 2),
            "thru_studio_p99_ms": round(percentile([s * 1000 for s in studio_part], 0.99), 3),
            "thru_notes_lost": notes - len(received),
            "thru_sent": len(sent), "thru_witness_read": witness.counts["read"],
            "thru_studio_read": studio_input.counts["read"], "thru_handed": studio_input.counts["handed"],
            "thru_thru_sent": thru_sent[0], "thru_listener_read": len(received)}


def duet_answer(checkpoint: str | None, runs: int) -> dict:
    """The Duet's answer time with the model on this CPU, fed phrases directly (no MIDI system needed)."""
    import mido

    from continuo.duet import DEFAULT_PAUSE, Duet
    from continuo.generation import GenerationWorker, ModelLoaded
    from continuo.playback import RecorderSink
    from music_transformer.checkpoint import DEFAULT_CHECKPOINT

    path = checkpoint or (str(DEFAULT_CHECKPOINT) if DEFAULT_CHECKPOINT.exists() else None)
    if path is None:
        raise SystemExit("no model: pass --checkpoint or add assets/default.safetensors")
    worker = GenerationWorker()  # the studio's worker: the duet asks it for its answers
    worker.load(path, "cpu")
    loaded = worker.outbox.get(timeout=120)
    if not isinstance(loaded, ModelLoaded):
        raise SystemExit(f"cannot load the model: {loaded}")
    output = RecorderSink()
    answers: list[list] = []
    duet = Duet(worker, lambda: [output], answers.append, pause=DEFAULT_PAUSE, seed=0)
    try:
        for run in range(runs):
            before = len(answers)
            for pitch in (60, 62, 64, 65, 67, 65, 64, 62):
                now = time.perf_counter()
                duet.feed(now, mido.Message("note_on", note=pitch + run, velocity=80))
                time.sleep(0.12)
                duet.feed(time.perf_counter(), mido.Message("note_off", note=pitch + run, velocity=0))
                time.sleep(0.03)
            wait_for(lambda: len(answers) > before, 60)  # noqa: B023 - called before the loop moves on
    finally:
        duet.close()
        worker.stop()
    latencies = [answer.latency * 1000 for answer in answers]
    return {"duet_answer_ms": round(statistics.median(latencies), 1), "duet_answer_max_ms": round(max(latencies), 1),
            "duet_runs": len(latencies), "duet_model": Path(path).name}


def flood(seconds: float) -> dict:
    """1,000 messages a second into a studio window on JACK: the GUI's longest stall and the notes lost."""
    import rtmidi
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    import continuo  # noqa: F401
    from continuo.main_window import MainWindow

    application = QApplication.instance() or QApplication([])
    import tempfile

    home = tempfile.mkdtemp(prefix="continuo-bench-")
    window = MainWindow(home=Path(home), use_autosave=False)
    window.player.use_sinks([])
    from continuo.midi_input import MidiInput

    keyboard = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="flood keys")
    keyboard.open_virtual_port("out")
    midi = window.midi
    deadline = time.monotonic() + 10
    while "flood keys:out" not in midi.available and time.monotonic() < deadline:
        application.processEvents()
        time.sleep(0.01)
    midi.open_input("flood keys:out", wait=True)
    while midi.input is None and time.monotonic() < deadline:
        application.processEvents()
    witness = MidiInput("flood keys:out", lambda at, message: None, client_name="flood witness")
    time.sleep(0.3)
    midi.start_recording()
    drained_before = midi.drained
    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(5)
    count = int(seconds * 1000) // 2
    messages = []
    for index in range(count):
        pitch = 36 + index % 60
        messages += [[0x90, pitch, 1 + index % 127], [0x80, pitch, 0]]
    thread = threading.Thread(target=paced, args=(keyboard, messages, 1000.0))
    thread.start()
    while thread.is_alive():
        application.processEvents()
        time.sleep(0.001)
    studio = midi.input
    end = time.monotonic() + 5
    while (studio.counts["read"] < 2 * count or len(window.song) < count) and time.monotonic() < end:
        application.processEvents()
        time.sleep(0.001)
    timer.stop()
    landed = midi.stop_recording()
    drained = midi.drained - drained_before
    gaps = [b - a for a, b in pairwise(ticks)]
    witness.close()
    keyboard.close_port()
    keyboard.delete()
    window.song.undo_stack.setClean()
    window.close()
    return {"flood_messages": 2 * count, "flood_witness_read": witness.counts["read"],
            "flood_messages_read": studio.counts["read"], "flood_handed": studio.counts["handed"],
            "flood_drained": drained, "flood_notes_lost": count - landed,
            "flood_gui_max_stall_ms": round(max(gaps) * 1000 - 5, 1) if gaps else None}


def burst(notes: int) -> dict:
    """`notes` notes (note-on and note-off each) sent in one burst, as fast as the keyboard's client takes them,
    into a recording studio window on JACK, with a witness client in this process on the same port: what the
    graph delivered (the witness), what the studio read, and the notes that landed in the roll."""
    import rtmidi
    from PySide6.QtWidgets import QApplication

    import continuo  # noqa: F401
    from continuo.main_window import MainWindow
    from continuo.midi_input import MidiInput

    application = QApplication.instance() or QApplication([])
    import tempfile

    window = MainWindow(home=Path(tempfile.mkdtemp(prefix="continuo-bench-")), use_autosave=False)
    window.player.use_sinks([])
    keyboard = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="burst keys")
    keyboard.open_virtual_port("out")
    midi = window.midi
    deadline = time.monotonic() + 10
    while "burst keys:out" not in midi.available and time.monotonic() < deadline:
        application.processEvents()
        time.sleep(0.01)
    midi.open_input("burst keys:out", wait=True)
    while midi.input is None and time.monotonic() < deadline:
        application.processEvents()
    # The witness keeps any burst whatever the studio's queue is (--queue-size), so that what it misses is the graph's.
    witness = MidiInput("burst keys:out", lambda at, message: None, client_name="burst witness",
                        queue_size=WITNESS_QUEUE_SIZE)
    time.sleep(0.3)
    midi.start_recording()
    messages = []
    for index in range(notes):
        pitch = 36 + index % 60
        messages += [[0x90, pitch, 1 + index % 127], [0x80, pitch, 0]]

    def send() -> None:
        for data in messages:
            keyboard.send_message(data)

    thread = threading.Thread(target=send)
    started = time.perf_counter()
    thread.start()
    while thread.is_alive():
        application.processEvents()
        time.sleep(0.001)
    sent_seconds = time.perf_counter() - started
    studio = midi.input
    settled, last = time.monotonic() + 5, -1
    while time.monotonic() < settled:  # until nothing more comes for half a second
        application.processEvents()
        now = (studio.counts["read"], witness.counts["read"])
        if now != last:
            last, settled = now, min(settled, time.monotonic() + 0.5)
        time.sleep(0.005)
    landed = midi.stop_recording()
    witness.close()
    keyboard.close_port()
    keyboard.delete()
    window.song.undo_stack.setClean()
    window.close()
    return {"burst_messages": 2 * notes, "burst_send_ms": round(sent_seconds * 1000, 1),
            "burst_witness_read": witness.counts["read"], "burst_studio_read": studio.counts["read"],
            "burst_graph_lost": 2 * notes - witness.counts["read"],
            "burst_studio_short": witness.counts["read"] - studio.counts["read"],
            "burst_notes_landed": landed, "burst_notes_lost": notes - landed}


PLAYER = """
import random, sys, time
import rtmidi
port = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=sys.argv[1])
port.open_virtual_port("out")
print("ready", flush=True)
sys.stdin.readline()
rng = random.Random(0)
for index in range(int(sys.argv[2])):
    time.sleep(rng.uniform(0.01, 0.06))
    port.send_message([0x90, 36 + index % 60, 100])
    print(repr(time.perf_counter()), flush=True)
"""


def onset_under_load(checkpoint: str | None, notes: int) -> dict:
    """How far from the time it was played each note is stamped while the model writes in the same process
    (a duet: the user plays on while the model answers), on the running JACK server. The player is another
    process, so its own times are exact. Side by side on the same notes: the stamp taken when our reader got
    to the message (the studio before `ArrivalClock`) and the arrival time the studio stamps now."""
    import torch

    from continuo.midi_input import MidiInput
    from music_transformer import generate, load_checkpoint
    from music_transformer.checkpoint import DEFAULT_CHECKPOINT

    model = load_checkpoint(checkpoint or str(DEFAULT_CHECKPOINT), device="cpu")
    torch.set_num_threads(1)
    writing = threading.Event()
    writing.set()

    def write() -> None:  # the model writing, over and over, for as long as the notes come
        while writing.is_set():
            for _ in generate(model, [], max_tokens=400, seed=len(stamps), cancel=lambda: not writing.is_set()):
                pass

    stamps: list[tuple[float, float]] = []  # (arrival stamp, read time)
    player = subprocess.Popen([sys.executable, "-c", PLAYER, "bench player", str(notes)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    midi_input = None
    try:
        assert player.stdout.readline().strip() == "ready"
        midi_input = MidiInput(port_named("bench player"), lambda at, _: stamps.append((at, time.perf_counter())))
        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        time.sleep(1.0)  # the model is writing before the first note
        player.stdin.write("go\n")
        player.stdin.flush()
        sent = [float(player.stdout.readline()) for _ in range(notes)]
        wait_for(lambda: len(stamps) >= notes, 10)
    finally:
        writing.clear()
        player.wait(10)
        if midi_input is not None:
            midi_input.close()
    read_error = [(read - when) * 1000 for (_, read), when in zip(stamps, sent, strict=True)]
    arrival_error = [(at - when) * 1000 for (at, _), when in zip(stamps, sent, strict=True)]
    result = {"onset_notes": len(sent)}
    for name, errors in (("read", read_error), ("arrival", arrival_error)):
        result[f"onset_{name}_p50_ms"] = round(percentile(errors, 0.5), 2)
        result[f"onset_{name}_p99_ms"] = round(percentile(errors, 0.99), 2)
        result[f"onset_{name}_max_ms"] = round(max(errors), 2)
    return result


def main() -> None:
    """Runs the four measurements and prints the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--checkpoint", help="model for the duet (default: assets/default.safetensors)")
    parser.add_argument("--period", type=int, default=64, help="JACK period in frames at 48 kHz")
    parser.add_argument("--flood-period", type=int, default=128, help="JACK period for the flood")
    parser.add_argument("--notes", type=int, default=1000)
    parser.add_argument("--duet-runs", type=int, default=5)
    parser.add_argument("--flood-seconds", type=float, default=10.0)
    parser.add_argument("--onset-notes", type=int, default=300, help="notes played while the model writes")
    parser.add_argument("--burst-notes", type=int, default=5000, help="notes sent in one burst (0: none)")
    parser.add_argument("--queue-size", type=int,
                        help="rtmidi's input queue, in messages (default: the studio's, ports.QUEUE_SIZE)")
    parser.add_argument("--no-realtime", action="store_true",
                        help="run the JACK server at normal priority (as this bench did before it counted each hop)")
    parser.add_argument("--callback-listener", action="store_true",
                        help="listen to the thru through a Python callback on JACK's thread (as before)")
    args = parser.parse_args()
    from continuo.midi_input import ports

    if args.queue_size:
        ports.QUEUE_SIZE = args.queue_size
    results: dict = {"jack_period_ms": round(args.period / 48.0, 2), "cpu_count": os.cpu_count(),
                     "queue_size": ports.QUEUE_SIZE}
    with jack_server(args.period, not args.no_realtime) as realtime:
        results["jack_realtime"] = realtime
        if args.notes > 0:
            results.update(thru_latency(args.notes, args.callback_listener))
        if args.onset_notes > 0:
            results.update(onset_under_load(args.checkpoint, args.onset_notes))
    if args.flood_seconds > 0:
        # The flood runs a whole studio window (and its synth) on the graph: on a server without real-time
        # rights and two shared cores, a 64-frame period misses deadlines and JACK drops a few messages.
        results["flood_jack_period_ms"] = round(args.flood_period / 48.0, 2)
        with jack_server(args.flood_period, not args.no_realtime) as realtime:
            results["flood_jack_realtime"] = realtime
            results.update(flood(args.flood_seconds))
    if args.burst_notes > 0:
        results["burst_jack_period_ms"] = round(args.flood_period / 48.0, 2)
        with jack_server(args.flood_period, not args.no_realtime) as realtime:
            results["burst_jack_realtime"] = realtime
            results.update(burst(args.burst_notes))
    if args.duet_runs > 0:
        results.update(duet_answer(args.checkpoint, args.duet_runs))
    if args.json:
        print(json.dumps(results))
        return
    width = max(len(key) for key in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
