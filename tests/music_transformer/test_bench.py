"""The benchmark's pieces measure what they say (sizes small enough for the test suite)."""

from music_transformer import bench


def test_decode_speed_compares_the_cache_with_recomputing():
    row = bench.decode_speed(context=64, cached_steps=8, recompute_steps=1)
    assert row["context"] == 64
    assert row["cached_tokens_per_s"] > 0 and row["recompute_tokens_per_s"] > 0
    assert row["speedup"] == row["cached_tokens_per_s"] / row["recompute_tokens_per_s"]


def test_shaws_formula_needs_far_more_memory_than_skewing():
    shaw = bench.layer_memory("shaw", 512)
    skew = bench.layer_memory("blocked skew", 512)
    assert shaw > 100 * 2**20  # its (L, L, D) tensor alone is 256 MB here
    assert skew < shaw / 4


def test_training_speed_reports_both_models():
    row = bench.train_speed(length=64, batch=1, steps=1)
    assert row["relative_tokens_per_s"] > 0 and row["absolute_tokens_per_s"] > 0


def test_training_step_memory_and_time_come_from_a_fresh_process():
    local = bench.training_memory(512, 64, 64)
    full = bench.training_memory(512, None, 64)
    for row in (local, full):
        assert row["peak_bytes"] > 1_000_000 and row["seconds"] > 0
    assert local["peak_bytes"] < 1.5 * full["peak_bytes"]  # the local pattern never needs more than global
