"""Tests of app/playback/."""
