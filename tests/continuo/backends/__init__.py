"""Tests of continuo/backends/."""
