"""The C step (music_transformer/step.c, native.py): built once per machine and kept, and a clean fallback to
torch's operations wherever it cannot be built. That it computes the model's step is held to full passes in
test_model.py (one row through both paths, every positional kind, windows, local attention)."""

import pytest
import torch

from music_transformer import VOCAB_SIZE, native
from music_transformer.decoder import Decoder

from .helpers import decode_rows, needs_the_c_step, small_model


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """A cache folder of its own and no library loaded yet; the next test finds the usual one again."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("CONTINUO_NATIVE", raising=False)
    native.library.cache_clear()
    yield tmp_path
    native.library.cache_clear()


def step_logits(model, native_choice=None):
    generator = torch.Generator().manual_seed(4)
    context = torch.randint(0, VOCAB_SIZE, (1, 30), generator=generator)
    continuation = torch.randint(0, VOCAB_SIZE, (1, 40), generator=generator)
    got, decoder = decode_rows(model, context, continuation, native=native_choice)
    with torch.no_grad():
        full = model(torch.cat([context, continuation], 1))[0, 30:]
    assert (got[0] - full).abs().max().item() <= 1e-4
    return decoder


def test_the_c_step_is_built_once_for_the_machine_and_kept(fresh):
    needs_the_c_step()
    native.library.cache_clear()
    compiler = native._compiler()
    built = native.build(compiler, fresh / "continuo")
    made = built.stat().st_mtime_ns
    assert native.build(compiler, fresh / "continuo") == built and built.stat().st_mtime_ns == made
    assert [path.name for path in (fresh / "continuo").iterdir()] == [built.name]  # no partial file left
    assert native.library() is not None and step_logits(small_model()).native


@pytest.mark.parametrize("compiler", ["false", "/no/such/compiler"])
def test_a_compiler_that_fails_or_is_missing_leaves_torchs_operations_with_a_warning(fresh, monkeypatch, compiler):
    monkeypatch.setenv("CC", compiler)
    with pytest.warns(UserWarning, match="torch's operations"):
        assert native.library() is None
    assert not step_logits(small_model()).native  # the same step, through torch
    assert not any(path.suffix in (".so", ".dylib", ".dll") for path in fresh.rglob("*"))


def test_a_cache_folder_that_cannot_be_made_builds_in_the_temporary_folder(fresh, monkeypatch, tmp_path_factory):
    needs_the_c_step()
    blocked = fresh / "a-file"
    blocked.write_text("a file where the cache folder would be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    spare = tmp_path_factory.mktemp("spare")
    monkeypatch.setattr(native.tempfile, "gettempdir", lambda: str(spare))
    native.library.cache_clear()  # needs_the_c_step loaded it from the usual folder
    assert native.library() is not None
    assert len(list(spare.rglob("step-*"))) == 1


def test_a_compiler_that_cannot_build_for_this_processor_builds_for_its_default_target(fresh, monkeypatch):
    needs_the_c_step()
    monkeypatch.setenv("CC", str(picky_compiler(fresh)))
    native.library.cache_clear()
    assert native.library() is not None and step_logits(small_model()).native
    assert len(list((fresh / "continuo").glob("step-*"))) == 1


def picky_compiler(folder):
    """A compiler that refuses -march=native and -mcpu=native, as some compilers do on some machines."""
    real = native._compiler()
    picky = folder / "picky-cc"
    picky.write_text(f'#!/bin/sh\nfor a in "$@"; do case "$a" in -march=*|-mcpu=*) exit 1;; esac; done\n'
                     f'exec "{real}" "$@"\n')
    picky.chmod(0o755)
    return picky


@pytest.mark.parametrize("target", ["this processor", "the default target"])
@pytest.mark.parametrize("head_dim", [8, 24, 32, 64])
def test_every_head_width_and_row_count_steps_like_a_full_pass(fresh, monkeypatch, target, head_dim):
    # step.c keeps its sums in registers a machine vector at a time (16 floats with AVX-512, 8 with AVX,
    # 4 on the default x86 target and on Arm) and picks its blocks of rows by how many fit: head widths
    # of one vector or several, or not a whole number of them, with 9 rows (blocks of 8, 4, 3 and 1).
    needs_the_c_step()
    if target == "the default target":
        monkeypatch.setenv("CC", str(picky_compiler(fresh)))
        native.library.cache_clear()
        assert native.library() is not None
    model = small_model(d_model=2 * head_dim, n_heads=2, d_ff=3 * head_dim)
    generator = torch.Generator().manual_seed(head_dim)
    context = torch.randint(0, VOCAB_SIZE, (1, 45), generator=generator)
    continuations = torch.randint(0, VOCAB_SIZE, (9, 150), generator=generator)  # past the window: rings wrap
    got, decoder = decode_rows(model, context, continuations, window=100, native=True)
    for row in range(9):
        with torch.no_grad():
            full = model(torch.cat([context[0], continuations[row]])[None], window=100)[0, 45:]
        assert (got[row] - full).abs().max().item() <= 1e-4


def test_continuo_native_0_switches_it_off(fresh, monkeypatch):
    monkeypatch.setenv("CONTINUO_NATIVE", "0")
    assert native.library() is None
    assert not step_logits(small_model()).native
    assert not any(fresh.iterdir())  # nothing was built


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
