"""Tests of app/midi_input/."""
