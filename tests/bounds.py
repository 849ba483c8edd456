"""What one fuzzed input may cost, shared by the engine's and the studio's fuzz tests."""

import resource
import time
from contextlib import contextmanager

CPU_SECONDS = 5.0  # the most one input may cost (CPU time: the tests may share the machine)
MEMORY_BYTES = 1024**3  # the most the process's peak may rise for one input


@contextmanager
def bounded(what: str, cpu_seconds: float = CPU_SECONDS, memory_bytes: int = MEMORY_BYTES):
    """Asserts that the block costs at most `cpu_seconds` of CPU time and raises the process's peak memory
    by at most `memory_bytes` (the peak only rises, so a block that allocated more than that shows)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.process_time()
    yield
    spent = time.process_time() - started
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - peak
    assert spent < cpu_seconds, f"{what} took {spent:.1f} s"
    assert grown < memory_bytes, f"{what} raised the peak memory by {grown / 2**20:.0f} MB"
