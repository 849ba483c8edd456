"""The model: shapes, the positional kinds (relative, absolute), and the cached decoder against full
forward passes."""

import pytest
import torch

from music_transformer import VOCAB_SIZE, ModelConfig, MusicTransformer, events
from music_transformer.attention import BLOCK_SIZE
from music_transformer.decoder import fast_path

from .helpers import decode_rows, decode_step_by_step, needs_the_c_step, small_model


@pytest.mark.parametrize("positional", ["relative", "absolute"])
def test_logits_have_one_row_per_position(positional):
    model = small_model(positional)
    assert model(torch.randint(0, VOCAB_SIZE, (3, 17))).shape == (3, 17, VOCAB_SIZE)


def test_config_rejects_nonsense():
    with pytest.raises(ValueError, match="positional"):
        ModelConfig(positional="rotary")
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(d_model=100, n_heads=8)
    # relative attention plus the timing signal is bench/jsb.py's research model, named where it lives
    with pytest.raises(ValueError, match='"both".*bench/jsb.py'):
        ModelConfig(positional="both")


def test_the_config_holds_the_shape_and_nothing_a_kernel_tunes():
    config = ModelConfig()
    assert "block_size" not in config.to_dict() and "attention_dropout" not in config.to_dict()
    # what earlier versions wrote beside the shape is read and left out: it changes nothing a model computes
    written = {**config.to_dict(), "block_size": 32, "attention_dropout": 0.1}
    assert ModelConfig.from_dict(written) == config
    # the kernel's query block is the attention's own: another block gives the same logits
    model = small_model(train_length=512)
    assert all(block.attention.block_size == BLOCK_SIZE for block in model.blocks)
    tokens = torch.randint(0, VOCAB_SIZE, (1, BLOCK_SIZE + 70), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        blocked = model(tokens)
        for block in model.blocks:
            block.attention.block_size = 32
        assert (model(tokens) - blocked).abs().max().item() <= 1e-5


def test_relative_model_is_causal():
    model = small_model()
    tokens = torch.randint(0, VOCAB_SIZE, (1, 40))
    changed = tokens.clone()
    changed[0, 30:] = (changed[0, 30:] + 1) % VOCAB_SIZE
    with torch.no_grad():
        torch.testing.assert_close(model(tokens)[:, :30], model(changed)[:, :30])


def test_relative_model_has_no_absolute_position():
    # The same tokens, shifted right behind other tokens, get the same logits when the window hides the
    # past: nothing in the relative model depends on where a sequence starts. (One layer, so that the
    # window is the whole receptive field.)
    model = small_model(n_layers=1)
    tokens = torch.randint(0, VOCAB_SIZE, (1, 30))
    with torch.no_grad():
        alone = model(tokens, window=30)[0]
        shifted = model(torch.cat([torch.randint(0, VOCAB_SIZE, (1, 50)), tokens], 1), window=30)[0, 50:]
    # Only the last position sees exactly the same 30 tokens in both.
    torch.testing.assert_close(alone[-1], shifted[-1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("positional", ["relative", "absolute"])
def test_cached_decoding_matches_full_forward_over_300_steps(positional):
    model = small_model(positional, train_length=512, max_relative_distance=200)
    tokens = torch.randint(0, VOCAB_SIZE, (2, 321), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(tokens)
    cached, _ = decode_step_by_step(model, tokens, prefill=21)
    assert (cached - full).abs().max().item() <= 1e-4


@pytest.mark.parametrize("positional", ["relative", "absolute"])
def test_windowed_cache_matches_a_windowed_forward_pass(positional):
    model = small_model(positional)
    tokens = torch.randint(0, VOCAB_SIZE, (1, 260), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(tokens, window=48)
    cached, cache = decode_step_by_step(model, tokens, prefill=100, window=48)  # a prefill past the window
    assert (cached - full).abs().max().item() <= 1e-4
    assert len(cache) <= 2 * 48  # memory bounded by the window


def test_training_step_reduces_the_loss_on_a_repeated_phrase():
    model = small_model(dropout=0.1).train()
    tokens = torch.tensor([[389] + [60, 300, 188, 62, 300, 190] * 10])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        logits = model(tokens[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 3


@pytest.mark.parametrize("positional", ["relative", "absolute"])
def test_local_attention_model_decodes_with_the_cache_like_a_full_pass(positional):
    model = small_model(positional, local_block=16, train_length=64)
    tokens = torch.randint(0, VOCAB_SIZE, (1, 150), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        full = model(tokens)
    cached, cache = decode_step_by_step(model, tokens, prefill=37)
    assert (cached - full).abs().max().item() <= 1e-4
    assert len(cache) < 2 * 2 * 16  # only the previous block and this one are kept


def test_local_model_trains_on_long_sequences():
    model = small_model(local_block=32, train_length=512).train()
    tokens = torch.randint(0, VOCAB_SIZE, (1, 513))
    logits = model(tokens[:, :-1])
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten()).backward()
    assert model.blocks[0].attention.relative_embeddings.grad is not None


@pytest.mark.parametrize("positional", ["relative", "absolute"])
@pytest.mark.parametrize("rows,static,native", [(1, False, True), (1, False, False), (3, False, True),
                                                (9, False, True), (3, False, False), (1, True, None),
                                                (3, True, None)])
@pytest.mark.parametrize("window,overrides", [(None, {}), (48, {}), (100, dict(max_relative_distance=30)),
                                              (None, dict(local_block=16, train_length=64))])
def test_the_decoder_steps_every_row_like_a_full_pass_of_that_row(positional, rows, static, native, window,
                                                                   overrides):
    # Each row continues the shared context with its own tokens, past the window (the ring wraps) and,
    # for the context of 100, past the table of relative distances (M = 30). Steps on the CPU go through
    # the C step (native) and through torch's operations.
    if native:
        needs_the_c_step()
    model = small_model(positional, **overrides)
    generator = torch.Generator().manual_seed(rows)
    context = torch.randint(0, VOCAB_SIZE, (1, 37), generator=generator)
    continuations = torch.randint(0, VOCAB_SIZE, (rows, 180), generator=generator)
    got, decoder = decode_rows(model, context, continuations, window, static, native=native)
    assert decoder.native == bool(native)
    span = model.new_cache(window).span or model.config.train_length
    for row in range(rows):
        with torch.no_grad():
            full = model(torch.cat([context[0], continuations[row]])[None], window=span)[0, 37:]
        assert (got[row] - full).abs().max().item() <= 1e-4
    # context and ring (one row, not static: the context in the ring): flat however long rows grow
    assert len(decoder.cache) == (0 if rows == 1 and not static else min(37, span - 1)) + span


def test_the_decoder_reads_models_made_before_styles():
    model = small_model(vocab_size=events.LEGACY_VOCAB_SIZE)
    context, continuation = torch.randint(0, events.LEGACY_VOCAB_SIZE, (2, 40)).split(1)
    got, _ = decode_rows(model, context, continuation)
    with torch.no_grad():
        full = model(torch.cat([context, continuation], 1))[0, 40:]
    assert got.shape == (1, 40, events.LEGACY_VOCAB_SIZE) and (got[0] - full).abs().max().item() <= 1e-4


def test_the_decoder_keeps_only_rows_asked_for():
    model = small_model()
    context = torch.randint(0, VOCAB_SIZE, (1, 20))
    continuations = torch.randint(0, VOCAB_SIZE, (3, 10))
    got, decoder = decode_rows(model, context, continuations)
    with torch.no_grad():
        decoder.reorder(torch.tensor([2, 2, 0]))
        logits = decoder.step(torch.tensor([5, 6, 7]))
        for row, (source, token) in enumerate([(2, 5), (2, 6), (0, 7)]):
            tokens = torch.cat([context[0], continuations[source], torch.tensor([token])])
            assert (logits[row] - model(tokens[None])[0, -1]).abs().max().item() <= 1e-4


def test_hooks_or_a_changed_forward_pass_keep_decoding_through_the_modules():
    model = small_model()
    assert fast_path(model)
    handle = model.blocks[1].feed_forward.register_forward_hook(lambda *_: None)
    assert not fast_path(model)
    handle.remove()

    class Changed(MusicTransformer):
        def forward(self, tokens, cache=None, window=None):
            return super().forward(tokens, cache, window)

    assert fast_path(model) and not fast_path(Changed(model.config))


def test_the_decoder_follows_weights_changed_since_the_last_stream():
    model = small_model()
    context, continuation = torch.randint(0, VOCAB_SIZE, (2, 30)).split(1)
    decode_rows(model, context, continuation)
    with torch.no_grad():  # a training step, load_state_dict: the weights change in place
        model.blocks[0].feed_forward.up.weight.mul_(1.5)
        model.head.weight.add_(0.01)
    got, _ = decode_rows(model, context, continuation)
    with torch.no_grad():
        full = model(torch.cat([context, continuation], 1))[0, 30:]
    assert (got[0] - full).abs().max().item() <= 1e-4
