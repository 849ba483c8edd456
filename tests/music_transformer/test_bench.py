"""`music-transformer bench --quick --json`: one run prints its tables and a JSON line whose figures say what
bench/README.md reads from them. Only ratios that a busy machine cannot turn around are checked."""

import json

from music_transformer import bench, native

from .helpers import small_model


def test_a_quick_run_prints_the_tables_and_a_json_line_with_the_readmes_keys(capsys):
    assert bench.main(["--quick", "--json"]) == 0
    printed = capsys.readouterr().out
    for heading in ("Decoding (tokens/s)", "Peak memory of one attention layer", "Training (tokens/s)"):
        assert heading in printed
    result = json.loads(printed.strip().splitlines()[-1])
    assert result["device"] == "cpu" and result["threads"] >= 1
    assert result["cpu"] and f"CPU: {result['cpu']}" in printed  # the ratios depend on it: recorded with them
    # --quick measures one size of each: a context of 512, layers of 512 tokens, training at 256
    for key in ("decode_speedup_512", "skew_over_shaw_memory_512", "single_skew_over_shaw_memory_512",
                "relative_over_absolute_train_speed"):
        assert result[key] > 0, key
    assert "skew_over_sdpa_memory_512" in result  # None when plain attention's peak is too small to see

    # The cache decodes each token from the keys it holds; recomputing runs all 512 positions again.
    assert result["decode_cached_tokens_per_s_512"] > result["decode_recompute_tokens_per_s_512"]
    assert result["decode_speedup_512"] > 3
    # the decoder through the C step where it is built (c_step), and through torch's operations beside it
    assert result["decode_torch_ops_tokens_per_s_512"] > result["decode_recompute_tokens_per_s_512"]
    assert result["native_over_torch_decode_512"] > 0 and result["c_step"] == (native.library() is not None)
    # generate's own figures (sampling and the rules included), through the decoder and through forward passes
    assert result["decode_tokens_per_s_512"] > result["decode_recompute_tokens_per_s_512"]
    assert result["decode_forward_tokens_per_s_512"] > 0 and result["variations8_over_1_time"] > 0
    # Shaw et al. gather an (L, L, D) tensor (256 MB here); the paper's single skew holds the (L, L)
    # logits of every head at once; our blocked kernel one block of them.
    memory = {method: result[f"memory_mb_{method.replace(' ', '_')}_512"] for method in bench.MEMORY_METHODS}
    assert memory["blocked skew"] < memory["single skew"] < memory["shaw"]
    assert memory["shaw"] > 256 and result["skew_over_shaw_memory_512"] < 0.1
    assert result["train_relative_tokens_per_s"] > 0 and result["train_absolute_tokens_per_s"] > 0


def test_the_gpu_sessions_decode_figures_run_anywhere():
    figures = bench.device_decode("cpu", model=small_model(), tokens=20, rows=3)
    assert figures["device_tokens_per_s"] > 0 and figures["gpu_over_cpu_decode"] > 0
    assert figures["variations3_over_1_time"] > 0 and figures["cpu"]  # the CPU that one stream is measured against
