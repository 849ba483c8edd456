"""Tests of continuo/midi_input/."""
