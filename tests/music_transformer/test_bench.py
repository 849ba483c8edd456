"""`music-transformer bench --quick --json` and bench/attention_memory.py: each run prints its tables and a JSON
line with the keys bench/README.md reads. The figures themselves are the benchmarks' to report, beside one
another in one run; a test on a shared machine checks only that they are there and make sense (no ratio of
times is asserted: a busy machine can turn any of them around)."""

import json
import sys
from pathlib import Path

from music_transformer import bench, native

from .helpers import small_model

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import attention_memory  # noqa: E402


def test_a_quick_run_prints_the_tables_and_a_json_line_with_the_readmes_keys(capsys):
    assert bench.main(["--quick", "--json"]) == 0
    printed = capsys.readouterr().out
    for heading in ("Decoding (tokens/s)", "Variations", "The bundled model", "Training (tokens/s)"):
        assert heading in printed
    result = json.loads(printed.strip().splitlines()[-1])
    assert result["device"] == "cpu" and result["threads"] >= 1
    assert result["cpu"] and f"CPU: {result['cpu']}" in printed  # the ratios depend on it: recorded with them
    assert result["c_step"] == (native.library() is not None)
    # --quick measures one size of each: a context of 512, training at 256
    for key in ("decode_cached_tokens_per_s_512", "decode_torch_ops_tokens_per_s_512", "native_over_torch_decode_512",
                "decode_recompute_tokens_per_s_512", "decode_speedup_512", "decode_tokens_per_s_512",
                "decode_forward_tokens_per_s_512", "variations8_over_1_time", "bundled_decode_tokens_per_s",
                "bundled_real_time_dense_piano", "train_relative_tokens_per_s", "train_absolute_tokens_per_s",
                "relative_over_absolute_train_speed"):
        assert result[key] > 0, key
    assert not any(key.startswith("memory_mb_") for key in result)  # the attention's memory: bench/attention_memory.py


def test_the_attention_memory_benchmark_measures_shaws_formula_the_skews_and_plain_attention(capsys):
    assert attention_memory.main(["--quick", "--json"]) == 0
    printed = capsys.readouterr().out
    assert "Peak memory of one attention layer" in printed
    result = json.loads(printed.strip().splitlines()[-1])
    memory = {method: result[f"memory_mb_{method.replace(' ', '_')}_512"] for method in attention_memory.METHODS}
    # Shaw et al. gather an (L, L, D) tensor (256 MB here); the paper's single skew holds the (L, L)
    # logits of every head at once; our blocked kernel one block of them (memory, not time: steady)
    assert memory["blocked skew"] < memory["single skew"] < memory["shaw"]
    assert memory["shaw"] > 256 and result["skew_over_shaw_memory_512"] < 0.1
    assert "skew_over_sdpa_memory_512" in result  # None when plain attention's peak is too small to see


def test_the_gpu_sessions_decode_figures_run_anywhere():
    figures = bench.device_decode("cpu", model=small_model(), tokens=20, rows=3)
    assert figures["device_tokens_per_s"] > 0 and figures["gpu_over_cpu_decode"] > 0
    assert figures["variations3_over_1_time"] > 0 and figures["cpu"]  # the CPU that one stream is measured against
