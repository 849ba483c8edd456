"""The C step (music_transformer/step.c, native.py): compiled into the package when it is built (hatch_build.py),
one variant for each level of the processor's vector instructions, the best one this processor runs loaded at
run time, and a clean fallback to torch's operations with one warning wherever there is none to load. Nothing
is compiled, written or read outside the package when a model decodes. That it computes the model's step is
held to full passes in test_model.py (one row through both paths, every positional kind, windows, local
attention) and here for every variant."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import hatch_build
from music_transformer import VOCAB_SIZE, native
from music_transformer.decoder import Decoder

from .helpers import decode_rows, needs_the_c_step, small_model

ROOT = Path(__file__).resolve().parents[2]
BUILT_HERE = [name for name, _, _ in hatch_build.VARIANTS.get(hatch_build.architecture(), hatch_build.OTHER)]


@pytest.fixture
def fresh(monkeypatch):
    """No library loaded yet and no variant asked for; the next test finds the usual one again."""
    monkeypatch.delenv("CONTINUO_NATIVE", raising=False)
    native.library.cache_clear()
    yield
    native.library.cache_clear()


@pytest.fixture
def copy_of_the_build(fresh, monkeypatch, tmp_path):
    """The package's built variants copied to a folder of their own, which native.py then loads from."""
    needs_the_c_step()
    native.library.cache_clear()
    folder = tmp_path / "_native"
    shutil.copytree(native.FOLDER, folder)
    monkeypatch.setattr(native, "FOLDER", folder)
    monkeypatch.setattr(native, "MANIFEST", folder / native.MANIFEST.name)
    return folder


def step_logits(model, native_choice=None):
    generator = torch.Generator().manual_seed(4)
    context = torch.randint(0, VOCAB_SIZE, (1, 30), generator=generator)
    continuation = torch.randint(0, VOCAB_SIZE, (1, 40), generator=generator)
    got, decoder = decode_rows(model, context, continuation, native=native_choice)
    with torch.no_grad():
        full = model(torch.cat([context, continuation], 1))[0, 30:]
    assert (got[0] - full).abs().max().item() <= 1e-4
    return decoder


def level_from_cpuinfo():
    """x86-64's level by Linux's feature flags (4: AVX-512 F/BW/CD/DQ/VL, 3: AVX2, FMA, BMI, 1: the rest)."""
    lines = native.cpuinfo_lines() or []
    flags = set(next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), []))
    v3 = {"avx", "avx2", "fma", "bmi1", "bmi2"} <= flags
    return 4 if v3 and {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"} <= flags else 3 if v3 else 1


def test_the_package_carries_its_variants_and_loads_the_best_this_processor_runs(fresh):
    needs_the_c_step()
    built = native.variants()
    assert [variant["name"] for variant in built] == BUILT_HERE
    for variant in built:
        path = native.FOLDER / variant["file"]
        assert path.parent == ROOT / "music_transformer" / "_native"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == variant["sha256"]
    level = native.cpu_level(built)
    if hatch_build.architecture() == "x86_64" and sys.platform == "linux":
        assert level == level_from_cpuinfo()  # step.c's mt_cpu_level agrees with Linux
    best = next(variant["name"] for variant in built if variant["level"] <= level)
    assert native.library().variant == best and step_logits(small_model()).native


def runnable_variants():
    if native.library() is None:
        return BUILT_HERE  # needs_the_c_step says why each is not run
    level = native.cpu_level(native.variants())
    return [variant["name"] for variant in native.variants() if variant["level"] <= level]


@pytest.mark.parametrize("variant", BUILT_HERE)
@pytest.mark.parametrize("head_dim", [8, 24, 32, 64])
def test_every_variant_head_width_and_row_count_steps_like_a_full_pass(fresh, monkeypatch, variant, head_dim):
    # step.c keeps its sums in registers a machine vector at a time (16 floats with AVX-512, 8 with AVX,
    # 4 on the baseline x86 target and on Arm) and picks its blocks of rows by how many fit: head widths
    # of one vector or several, or not a whole number of them, with 9 rows (blocks of 8, 4, 3 and 1).
    needs_the_c_step()
    if variant not in runnable_variants():
        pytest.skip(f"this processor cannot run the {variant} variant")
    monkeypatch.setenv("CONTINUO_NATIVE", variant)
    native.library.cache_clear()
    assert native.library().variant == variant  # forced through the environment
    model = small_model(d_model=2 * head_dim, n_heads=2, d_ff=3 * head_dim)
    generator = torch.Generator().manual_seed(head_dim)
    context = torch.randint(0, VOCAB_SIZE, (1, 45), generator=generator)
    continuations = torch.randint(0, VOCAB_SIZE, (9, 150), generator=generator)  # past the window: rings wrap
    got, decoder = decode_rows(model, context, continuations, window=100, native=True)
    for row in range(9):
        with torch.no_grad():
            full = model(torch.cat([context[0], continuations[row]])[None], window=100)[0, 45:]
        assert (got[row] - full).abs().max().item() <= 1e-4


def falls_back_with_one_warning(match):
    """library() says why once, however often it is asked, and the decoder computes the step through torch."""
    native.library.cache_clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert native.library() is None and native.library() is None
        assert not step_logits(small_model()).native
    said = [str(warning.message) for warning in caught if "torch's operations" in str(warning.message)]
    assert len(said) == 1 and match in said[0], said


def test_a_variant_this_processor_cannot_run_is_refused_with_one_warning(copy_of_the_build, monkeypatch):
    manifest = json.loads(native.MANIFEST.read_text())
    level = native.cpu_level(manifest["variants"])
    best = manifest["variants"][0]
    if len(manifest["variants"]) > 1 and best["level"] <= level:  # a machine beyond this one's
        best["level"] = level + 1
        native.MANIFEST.write_text(json.dumps(manifest))
    if best["level"] <= level:
        pytest.skip("one variant only, and this processor runs it")
    monkeypatch.setenv("CONTINUO_NATIVE", best["name"])
    falls_back_with_one_warning("this processor cannot run that variant")
    monkeypatch.delenv("CONTINUO_NATIVE")
    native.library.cache_clear()
    assert native.library().variant == manifest["variants"][1]["name"]  # unforced: the next one down


def test_a_variant_not_built_here_is_refused_with_one_warning(fresh, monkeypatch):
    needs_the_c_step()
    monkeypatch.setenv("CONTINUO_NATIVE", "avx-1024")
    falls_back_with_one_warning("names no variant built here")


def test_a_package_without_the_c_step_decodes_through_torch_with_one_warning(copy_of_the_build):
    shutil.rmtree(copy_of_the_build)  # built where there was no C compiler
    falls_back_with_one_warning("has no C step")


@pytest.mark.parametrize("damage", ["truncated", "40 bytes flipped"])
def test_a_damaged_library_is_refused_before_it_is_loaded(copy_of_the_build, damage):
    chosen = copy_of_the_build / Path(native.library().__dict__["_name"]).name
    native.library.cache_clear()
    data = bytearray(chosen.read_bytes())
    if damage == "truncated":
        data = data[:4096]  # loaded, this was a bus error at the first step
    else:
        for offset in range(len(data) // 2, len(data) // 2 + 40):
            data[offset] ^= 0xFF
    chosen.unlink()  # a new file: the loaded library's pages stay as they were
    chosen.write_bytes(bytes(data))
    falls_back_with_one_warning("is not the file that was built")


def test_a_manifest_naming_a_library_outside_the_package_folder_is_refused(copy_of_the_build, tmp_path):
    manifest = json.loads(native.MANIFEST.read_text())
    outside = tmp_path / "planted.so"  # a real library with the right SHA-256, one folder up
    shutil.copy(copy_of_the_build / manifest["variants"][0]["file"], outside)
    for variant in manifest["variants"]:
        variant["file"] = f"../{outside.name}"
    native.MANIFEST.write_text(json.dumps(manifest))
    falls_back_with_one_warning("names a file outside _native/")


def test_a_build_from_another_step_c_is_refused(copy_of_the_build, monkeypatch, tmp_path):
    edited = tmp_path / "step.c"
    edited.write_text(native.SOURCE.read_text() + "\n/* edited */\n")
    monkeypatch.setattr(native, "SOURCE", edited)
    falls_back_with_one_warning("built from another step.c")


DECODE = """
import os, subprocess, torch
from music_transformer import ModelConfig, MusicTransformer, native
from music_transformer.decoder import Decoder
def refused(*args, **kwargs):
    raise AssertionError("a process was started")
subprocess.Popen.__init__ = refused
model = MusicTransformer(ModelConfig(n_layers=2, d_model=64, n_heads=4, d_ff=128, dropout=0.0,
                                     max_relative_distance=64, train_length=128)).eval()
with torch.no_grad():
    cache = model.new_cache()
    model(torch.zeros(1, 5, dtype=torch.long), cache=cache)
    decoder = Decoder(model, cache, 1)
    for token in range(20):
        decoder.step(torch.tensor([token]))
print(decoder.native, native.library().variant)
"""


def test_decoding_runs_no_compiler_and_writes_nothing_outside_the_package(tmp_path):
    needs_the_c_step()
    home, temporary, tools = tmp_path / "home", tmp_path / "tmp", tmp_path / "bin"
    for folder in (home, temporary, tools):
        folder.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in ("CONTINUO_NATIVE", "CC")}
    # PATH holds no compiler at all; HOME, the cache and the temporary folder are empty folders of their own
    env.update(PATH=str(tools), HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), TMPDIR=str(temporary),
               PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", DECODE], env=env, capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "True", done.stdout + done.stderr  # through the C step
    assert "torch's operations" not in done.stderr
    assert list(home.rglob("*")) == [] and list(temporary.rglob("*")) == []


def test_continuo_native_0_switches_it_off(fresh, monkeypatch):
    monkeypatch.setenv("CONTINUO_NATIVE", "0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # asked for: no warning
        assert native.library() is None
        assert not step_logits(small_model()).native


def test_the_build_hook_without_a_compiler_builds_no_c_step_and_says_so(tmp_path, monkeypatch):
    (tmp_path / "music_transformer").mkdir()
    shutil.copy(ROOT / hatch_build.SOURCE, tmp_path / hatch_build.SOURCE)
    said = []
    for compiler in ("false", "/no/such/compiler"):
        monkeypatch.setenv("CC", compiler)
        assert hatch_build.build(tmp_path, say=said.append) == []
        assert not (tmp_path / hatch_build.FOLDER / hatch_build.MANIFEST).exists()
    monkeypatch.delenv("CC")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert hatch_build.build(tmp_path, say=said.append) == []
    assert "no C compiler" in said[-1] and all("torch's operations" in line for line in said if "built" in line)


def test_asking_for_the_c_step_where_it_cannot_run_is_an_error():
    needs_the_c_step()
    model = small_model()
    with torch.no_grad():
        cache = model.new_cache()
        model(torch.zeros(1, 5, dtype=torch.long), cache=cache)
        for rows, settings in ((1, dict(dtype=torch.bfloat16)), (3, dict(static=True))):
            with pytest.raises(RuntimeError, match="on the CPU in float32 .not static."):
                Decoder(model, cache, rows, native=True, **settings)
        for rows in (1, 3):
            assert Decoder(model, cache, rows).native and not Decoder(model, cache, rows, native=False).native


def test_a_plan_outside_the_buffers_is_refused_before_the_c_step_reads_it():
    needs_the_c_step()
    model = small_model()
    with torch.no_grad():
        cache = model.new_cache(window=48)
        model(torch.zeros(1, 20, dtype=torch.long), cache=cache)
        decoder = Decoder(model, cache, 1)
        decoder.cache.begin_step()
        plan = decoder.cache.plan
        for bad in (plan._replace(column=48), plan._replace(ring=(0, 49)), plan._replace(needed=65),
                    plan._replace(terms=[(0, 0, 999)]), plan._replace(hidden=[(-1, 2)])):
            with pytest.raises(AssertionError, match="outside its buffers"):
                decoder._native(decoder._x, decoder._logits, bad)
        decoder._native(decoder._x, decoder._logits, plan)  # the real one is fine


def test_weights_the_c_step_cannot_read_leave_torchs_operations_with_a_warning():
    needs_the_c_step()
    model = small_model()
    norm = model.blocks[0].attention_norm
    with torch.no_grad():  # a parameter that is a view with gaps: the C step reads packed tensors only
        norm.weight = torch.nn.Parameter(torch.randn(2 * norm.weight.numel())[::2])
    with pytest.warns(UserWarning, match="torch's operations"):
        assert not step_logits(model).native  # and still the model's logits
    with pytest.raises(RuntimeError, match="cannot run this model"):
        step_logits(model, native_choice=True)
