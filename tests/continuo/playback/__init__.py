"""Tests of continuo/playback/."""
