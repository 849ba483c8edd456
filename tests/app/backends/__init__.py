"""Tests of app/backends/."""
