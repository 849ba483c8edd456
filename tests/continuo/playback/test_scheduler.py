"""The scheduler thread with a recorder sink: order, timing, stop, loops, the live feed of a continuation being
written, and events replaced while playing."""

from __future__ import annotations

import threading
import time

import mido
import pytest

from continuo.playback import LiveFeed, RecorderSink, Scheduler, note_events
from music_transformer import Note
from tests.continuo.helpers import MELODY, onsets, wait_until

pytestmark = pytest.mark.timeout(60)


def test_scheduler_sends_notes_in_order_on_time_and_stops_with_all_notes_off():
    recorder = RecorderSink()
    scheduler = Scheduler([recorder])
    try:
        scheduler.play(note_events(MELODY), 0.0)
        assert recorder.wait_for(lambda m: sum(x.type == "note_off" for _, x in m) == 4, 5)
        played = recorder.notes()
        assert [(kind, pitch) for _, kind, pitch, _ in played] == [
            ("on", 60),
            ("off", 60),
            ("on", 64),
            ("off", 64),
            ("on", 67),
            ("off", 67),
            ("on", 72),
            ("off", 72),
        ]
        for (at, _pitch), note in zip(onsets(played), MELODY, strict=True):
            assert at == pytest.approx(note.start, abs=0.03)  # correctness, not the benchmark's 3 ms
        assert [v for _, kind, _, v in played if kind == "on"] == [90, 80, 70, 100]
        # A held note is ended by stop, followed by all-notes-off on every channel.
        recorder.clear()
        scheduler.play(note_events([Note(48, 90, 0.0, 30.0)]), 0.0)
        assert recorder.wait_for(lambda m: len(m) == 1, 5)
        scheduler.stop()
        messages = [m for _, m in recorder.messages]
        assert messages[1] == mido.Message("note_off", note=48, velocity=0)
        assert sum(m.type == "control_change" and m.control == 123 for m in messages) == 16
        assert not recorder.sounding()
    finally:
        scheduler.close()


def test_scheduler_starts_from_a_position_loops_and_reports_the_end():
    recorder = RecorderSink()
    finished = threading.Event()
    scheduler = Scheduler([recorder], on_finished=finished.set)
    try:
        scheduler.play(note_events(MELODY), 0.4)  # from the third note
        assert finished.wait(5)
        assert [pitch for _, kind, pitch, _ in recorder.notes() if kind == "on"] == [67, 72]
        recorder.clear()
        scheduler.play(note_events(MELODY), 0.0, loop=(0.0, 0.4))
        assert recorder.wait_for(lambda m: sum(x.type == "note_on" for _, x in m) >= 6, 5)
        scheduler.stop()
        ons = [pitch for _, kind, pitch, _ in recorder.notes() if kind == "on"]
        assert ons[:6] == [60, 64, 60, 64, 60, 64]
        times = [at for at, pitch in onsets(recorder.notes())[:5]]
        assert times[2] == pytest.approx(0.4, abs=0.03) and times[4] == pytest.approx(0.8, abs=0.03)
    finally:
        scheduler.close()


def test_playback_waits_for_a_live_feed_instead_of_running_ahead():
    recorder = RecorderSink()
    scheduler = Scheduler([recorder])
    feed = LiveFeed(start=2.0)
    try:
        scheduler.play([], 2.0, live=feed)
        assert wait_until(lambda: scheduler.waiting, 2)  # nothing is written yet
        assert scheduler.position() == pytest.approx(2.0)
        feed.extend([(2.0, 1, 60, 90, 0)], 2.1)
        assert recorder.wait_for(lambda m: len(m) == 1, 2)
        # The model is "slow": playback reaches the horizon and holds the note there, sending nothing more.
        assert wait_until(lambda: scheduler.waiting, 2)
        assert not recorder.wait_for(lambda m: len(m) > 1, 0.2)
        assert scheduler.waiting and scheduler.position() == pytest.approx(2.1)
        assert recorder.sounding() == [(0, 60)]
        resumed = time.perf_counter()
        feed.extend([(2.3, 0, 60, 0, 0), (2.3, 1, 62, 90, 0), (2.5, 0, 62, 0, 0)], 2.5)
        feed.finish()
        assert recorder.wait_for(lambda m: len(m) == 4, 2)
        # The music resumed where it stopped: 2.3 s comes 0.2 s after 2.1 s, counted from the resume.
        off_time = recorder.notes()[1][0]
        assert off_time - resumed == pytest.approx(0.2, abs=0.03)
        assert [(kind, pitch) for _, kind, pitch, _ in recorder.notes()] == [
            ("on", 60),
            ("off", 60),
            ("on", 62),
            ("off", 62),
        ]
    finally:
        scheduler.close()


def test_events_replaced_while_playing_leave_no_note_hanging():
    recorder = RecorderSink()
    scheduler = Scheduler([recorder])
    try:
        scheduler.play(note_events([Note(60, 90, 0.0, 5.0), Note(64, 90, 0.0, 0.6), Note(67, 90, 0.5, 1.0)]), 0.0)
        assert recorder.wait_for(lambda m: len(m) == 2, 2)
        # The long note is deleted and 64 stays: 60 ends now, 64 ends on time, 67 still comes.
        scheduler.set_events(note_events([Note(64, 90, 0.0, 0.6), Note(67, 90, 0.5, 1.0)]))
        assert recorder.wait_for(lambda m: any(x.type == "note_off" and x.note == 60 for _, x in m), 1)
        assert recorder.wait_for(lambda m: sum(x.type == "note_off" for _, x in m) == 3, 3)
        assert [(kind, pitch) for _, kind, pitch, _ in recorder.notes()] == [
            ("on", 60),
            ("on", 64),
            ("off", 60),
            ("on", 67),
            ("off", 64),
            ("off", 67),
        ]
    finally:
        scheduler.close()
