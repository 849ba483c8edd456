"""Tests of app/piano_roll/."""
