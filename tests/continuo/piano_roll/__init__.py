"""Tests of continuo/piano_roll/."""
