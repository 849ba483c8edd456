"""The model on a CUDA GPU: the attention kernel, the cached decoder (static, captured in a CUDA graph, bfloat16),
bf16 training, streaming generation and variations.

CI has no GPU, so these skip there; they run on a lent GPU machine (`bench/jsb_gpu.sh` runs them first).
"""

import warnings

import pytest
import torch

from music_transformer import VOCAB_SIZE, generate, generate_variations
from music_transformer.attention import relative_attention
from music_transformer.decoder import CapturedStep

from .helpers import PRIMER, assert_valid_stream, decode_rows, decode_step_by_step, direct_attention, small_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.double().cpu(), want.double().cpu()
    return float((got - want).norm() / want.norm())


@pytest.mark.parametrize("block_size,window", [(None, None), (64, None), (48, 100)])
def test_relative_attention_and_its_gradients_on_cuda_match_float64(block_size, window):
    generator = torch.Generator().manual_seed(11)
    tensors = [torch.randn(2, 4, 300, 32, dtype=torch.float64, generator=generator) for _ in range(3)]
    tensors.append(torch.randn(4, 200, 32, dtype=torch.float64, generator=generator))
    weights = torch.randn(2, 4, 300, 32, dtype=torch.float64, generator=generator)

    reference = [t.clone().requires_grad_() for t in tensors]
    want = direct_attention(*reference, window=window)
    (want * weights).sum().backward()

    on_gpu = [t.float().cuda().requires_grad_() for t in tensors]
    got = relative_attention(*on_gpu, window=window, block_size=block_size)
    (got * weights.float().cuda()).sum().backward()
    assert torch.isfinite(got).all()
    assert relative_error(got, want) < 1e-3
    for fused, direct in zip(on_gpu, reference, strict=True):
        assert relative_error(fused.grad, direct.grad) < 1e-3


@pytest.mark.parametrize("positional", ["relative", "absolute"])
def test_cached_decoding_on_cuda_matches_a_full_pass(positional):
    model = small_model(positional, train_length=512, max_relative_distance=200).cuda()
    tokens = torch.randint(0, VOCAB_SIZE, (2, 300), generator=torch.Generator().manual_seed(1)).cuda()
    with torch.no_grad():
        full = model(tokens)
    cached, _ = decode_step_by_step(model, tokens, prefill=40)
    assert relative_error(cached, full) < 1e-3
    with torch.no_grad():  # and the GPU computes what the CPU does
        on_cpu = model.cpu()(tokens.cpu())
    assert relative_error(full, on_cpu) < 1e-3


def test_bf16_autocast_training_on_cuda_learns_and_stays_close_to_float32():
    model = small_model(dropout=0.1).cuda().train()
    tokens = torch.tensor([[389] + [60, 300, 188, 62, 300, 190] * 40]).cuda()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        low = model.eval()(tokens)
    with torch.no_grad():
        high = model(tokens)
    assert relative_error(low.float(), high) < 3e-2
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(tokens[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), tokens[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0] / 3


def test_generation_streams_on_cuda_and_a_seed_repeats_it():
    model = small_model().cuda()
    runs = [list(generate(model, PRIMER, max_tokens=200, seed=5)) for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0]) == 200
    assert_valid_stream(runs[0])


@pytest.mark.parametrize("rows", [1, 3])
def test_the_static_decoder_on_cuda_steps_every_row_like_a_full_pass(rows):
    model = small_model(train_length=512, max_relative_distance=200).cuda()
    generator = torch.Generator().manual_seed(rows)
    context = torch.randint(0, VOCAB_SIZE, (1, 40), generator=generator).cuda()
    continuations = torch.randint(0, VOCAB_SIZE, (rows, 300), generator=generator).cuda()
    got, decoder = decode_rows(model, context, continuations, window=128)
    assert decoder.static  # fixed shapes on a GPU: what a CUDA graph needs
    for row in range(rows):
        with torch.no_grad():
            full = model(torch.cat([context[0], continuations[row]])[None], window=128)[0, 40:]
        assert relative_error(got[row], full) < 1e-3


def test_the_decoder_in_bfloat16_holds_the_logits_within_tolerance():
    model = small_model(train_length=512, max_relative_distance=200).cuda()
    context = torch.randint(0, VOCAB_SIZE, (1, 40)).cuda()
    continuation = torch.randint(0, VOCAB_SIZE, (1, 200)).cuda()
    got, _ = decode_rows(model, context, continuation, dtype=torch.bfloat16)
    with torch.no_grad():
        full = model(torch.cat([context, continuation], 1))[0, 40:]
    assert relative_error(got[0], full) < 3e-2


def test_a_step_on_cuda_is_one_captured_graph_that_draws_what_the_uncaptured_step_draws(monkeypatch):
    model = small_model().cuda()
    replays = []
    replay = CapturedStep.__call__
    monkeypatch.setattr(CapturedStep, "__call__", lambda step, tokens: replays.append(1) or replay(step, tokens))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        captured = list(generate(model, PRIMER, max_tokens=150, seed=4, top_p=0.9))
    assert not [w for w in caught if "CUDA graph" in str(w.message)]  # no fall-back to uncaptured steps
    assert len(replays) >= 100

    def refuse(*_):
        raise RuntimeError("no graph")

    monkeypatch.setattr(CapturedStep, "__init__", refuse)
    with pytest.warns(UserWarning, match="without a CUDA graph"):
        uncaptured = list(generate(model, PRIMER, max_tokens=150, seed=4, top_p=0.9))
    assert captured == uncaptured
    assert_valid_stream(captured)


def test_variations_on_cuda_are_valid_music_and_the_same_seeds_repeat_them():
    model = small_model().cuda()
    runs = []
    for _ in range(2):
        written = {}
        for variation, token in generate_variations(model, PRIMER, seeds=[1, 2, 3, 4, 5, 6, 7, 8], seconds=3.0):
            written.setdefault(variation, []).append(token)
        runs.append(written)
    assert runs[0] == runs[1] and len(runs[0]) == 8
    for tokens in runs[0].values():
        assert_valid_stream(tokens)
