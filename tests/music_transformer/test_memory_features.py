"""The model's long-memory features: relative buckets with a shared far row, the sounding-pitches input, and
growing a trained model into them (and into a new style token) without changing what it computes."""

import json

import pytest
import torch

from music_transformer import events
from music_transformer.attention import relative_buckets
from music_transformer.checkpoint import load_checkpoint, save_checkpoint
from music_transformer.events import END, MIDDLE, PREFIX, START, SUFFIX, note_off, note_on, time_shift
from music_transformer.model import ModelConfig, MusicTransformer, grown_state, sounding_after, sounding_pitches

from .helpers import decode_rows, decode_step_by_step, small_model


def test_buckets_are_exact_near_log_spaced_after_and_one_row_for_every_far_distance():
    distances = torch.arange(0, 10_000)
    rows = relative_buckets(distances, 64, 512)
    assert rows[:32].tolist() == list(range(32))  # the nearest half: a row each
    assert rows.max() == 63 and set(rows.tolist()) == set(range(64))  # every row is some distance's
    assert (rows[512:] == 63).all() and (rows[:512] < 63).all()  # the far row: every distance from M on
    assert (rows[1:] >= rows[:-1]).all()  # farther never maps nearer
    widths = torch.bincount(rows[32:512])[32:63]
    assert widths[0] < widths[-1]  # log-spaced: buckets widen with distance


@pytest.mark.parametrize("bad", [dict(relative_buckets=3), dict(relative_buckets=7),
                                 dict(relative_buckets=64, max_relative_distance=32),
                                 dict(sounding_input=1)])
def test_a_config_with_unusable_buckets_or_input_is_refused(bad):
    settings = dict(n_layers=1, d_model=16, n_heads=2, d_ff=32, max_relative_distance=64)
    settings.update(bad)
    with pytest.raises(ValueError, match="relative_buckets|sounding_input"):
        ModelConfig(**settings)


def test_sounding_pitches_follow_note_ons_offs_and_the_tokens_that_silence():
    tokens = [START, note_on(60), note_on(64), note_off(60), time_shift(10), note_on(60), note_off(64),
              note_off(99), END, note_on(70), SUFFIX, note_on(71), PREFIX, note_on(72), MIDDLE, note_on(73)]
    state = sounding_pitches(torch.tensor([tokens]))[0]
    sounding = [state[t].nonzero().flatten().tolist() for t in range(len(tokens))]
    assert sounding == [[], [60], [60, 64], [64], [64], [60, 64], [60], [60], [], [70], [], [71], [], [72], [72],
                        [72, 73]]
    before = torch.zeros(1, 128, dtype=torch.uint8)
    before[0, 40] = 1
    carried = sounding_pitches(torch.tensor([tokens[1:4]]), before)[0]
    assert [carried[t].nonzero().flatten().tolist() for t in range(3)] == [[40, 60], [40, 60, 64], [40, 64]]


def _random_tokens(length, seed=0):
    generator = torch.Generator().manual_seed(seed)
    body = torch.randint(0, events.NUM_EVENTS, (length - 2,), generator=generator)
    return torch.cat((torch.tensor([START, events.style_token("any")]), body)).view(1, -1)


@pytest.mark.parametrize("settings", [dict(relative_buckets=16, max_relative_distance=24),
                                      dict(sounding_input=True),
                                      dict(relative_buckets=16, max_relative_distance=24, sounding_input=True)])
def test_the_cache_and_the_decoder_compute_what_a_full_pass_does(settings):
    model = small_model(**settings)
    if model.config.sounding_input:
        torch.nn.init.normal_(model.sounding.weight, std=0.5)  # trained: not the zeros it grows from
    tokens = _random_tokens(90)
    with torch.no_grad():
        full = model(tokens)
        windowed = model(tokens, window=40)
    stepped, cache = decode_step_by_step(model, tokens, prefill=30)
    torch.testing.assert_close(stepped, full, atol=2e-5, rtol=1e-4)
    if model.config.sounding_input:
        assert torch.equal(cache.sounding, sounding_pitches(tokens)[:, -1])
    for native in (False, None):  # torch's operations, and the C step where it is built
        rows = tokens[:, 30:].expand(3, -1)  # three rows of one continuation: each must match the pass
        logits, _ = decode_rows(model, tokens[:, :30], rows, window=40, native=native)
        for row in range(3):
            torch.testing.assert_close(logits[row], windowed[0, 30:], atol=2e-5, rtol=1e-4)


def test_beam_reordering_carries_each_rows_sounding_pitches():
    model = small_model(sounding_input=True)
    torch.nn.init.normal_(model.sounding.weight, std=0.5)
    context = _random_tokens(20)
    first = torch.tensor([note_on(60), note_on(61)])
    with torch.no_grad():
        cache = model.new_cache()
        model(context, cache=cache)
        from music_transformer.decoder import Decoder

        decoder = Decoder(model, cache, 2, native=False)
        decoder.step(first)
        decoder.reorder(torch.tensor([1, 1]))  # both rows now continue the row that struck 61
        logits = decoder.step(torch.tensor([time_shift(5), time_shift(5)])).clone()
        expected = model(torch.cat((context, torch.tensor([[note_on(61), time_shift(5)]])), 1))[0, -1]
    torch.testing.assert_close(logits[0], expected, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(logits[1], expected, atol=2e-5, rtol=1e-4)


def test_a_model_grown_into_a_new_style_and_the_sounding_input_computes_what_it_did():
    old = small_model(vocab_size=events.STYLES_VOCAB_SIZE)
    grown_config = ModelConfig(**dict(old.config.to_dict(), vocab_size=events.VOCAB_SIZE, sounding_input=True))
    grown = MusicTransformer(grown_config).eval()
    grown.load_state_dict(grown_state(old.state_dict(), old.config, grown_config))
    tokens = _random_tokens(100, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(grown(tokens)[..., :events.STYLES_VOCAB_SIZE], old(tokens), atol=1e-5, rtol=1e-5)
        classical = grown.embedding.weight[events.style_token("classical")]
    assert torch.equal(classical, grown.embedding.weight[events.style_token("any")])  # starts as "any"


def test_grown_buckets_keep_the_near_rows_and_start_the_far_ones_with_no_term():
    old = small_model(max_relative_distance=32)
    grown_config = ModelConfig(**dict(old.config.to_dict(), relative_buckets=32, max_relative_distance=128))
    state = grown_state(old.state_dict(), old.config, grown_config)
    grown = MusicTransformer(grown_config).eval()
    grown.load_state_dict(state)
    old_rows = old.blocks[0].attention.relative_embeddings.detach().flip(1)  # row d: distance d
    table = grown.blocks[0].attention.relative_table(200).detach().flip(1)
    torch.testing.assert_close(table[:, :16], old_rows[:, :16])  # exact rows: the same
    buckets = relative_buckets(torch.arange(200), 32, 128)
    for bucket in buckets[16:32].unique().tolist():  # buckets within the old reach: the mean of their rows
        members = [d for d in range(32) if buckets[d] == bucket]
        torch.testing.assert_close(table[:, members[0]], old_rows[:, members].mean(1))
    assert (table[:, 32:] == 0).all()  # past the old M: no term, as before
    tokens = _random_tokens(120, seed=2)
    with torch.no_grad():  # a window within the exact rows computes exactly what the old model did
        torch.testing.assert_close(grown(tokens, window=16), old(tokens, window=16), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("change", [dict(d_model=32), dict(n_layers=3), dict(max_relative_distance=48),
                                    dict(vocab_size=391)])
def test_growing_refuses_what_would_not_be_the_same_model(change):
    old = small_model(vocab_size=events.STYLES_VOCAB_SIZE)
    new_config = ModelConfig(**dict(old.config.to_dict(), **change))
    with pytest.raises(ValueError, match="can grow its vocabulary"):
        grown_state(old.state_dict(), old.config, new_config)


def test_a_model_with_the_new_features_ships_and_loads(tmp_path):
    model = small_model(relative_buckets=16, max_relative_distance=24, sounding_input=True)
    torch.nn.init.normal_(model.sounding.weight, std=0.5)
    save_checkpoint(model, tmp_path / "memory.safetensors")
    config = json.loads((tmp_path / "memory.json").read_text())["config"]
    assert (config["relative_buckets"], config["sounding_input"]) == (16, True)
    loaded = load_checkpoint(tmp_path / "memory.safetensors")
    tokens = _random_tokens(60, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens), model(tokens))
    assert loaded.config.parameter_count() == loaded.num_parameters()


def test_what_sounds_after_a_long_primer_is_read_in_one_pass_as_the_model_reads_it():
    tokens = _random_tokens(3000, seed=4)[0].tolist()
    tokens[1500:1500] = [END, START, note_on(50)]  # a piece's end silences everything before it
    assert torch.equal(sounding_after(tokens), sounding_pitches(torch.tensor([tokens]))[0, -1])
    assert sounding_after([]).sum() == 0


def test_a_primer_longer_than_the_window_starts_the_cache_with_what_sounds_where_the_window_starts():
    from music_transformer import continuation

    model = small_model(sounding_input=True)
    torch.nn.init.normal_(model.sounding.weight, std=0.5)
    primer = [note_on(40)] + [time_shift(10)] * 100  # struck before the window of 32, still sounding
    seen = []
    original = model.forward

    def watching(tokens, cache=None, window=None):  # what the cache held when the primer's last window was read
        if cache is not None and not seen:
            seen.append(None if cache.sounding is None else cache.sounding.clone())
        return original(tokens, cache=cache, window=window)

    model.forward = watching
    list(continuation.generate(model, primer, max_tokens=2, seed=0, window=32))
    assert seen[0] is not None and seen[0][0].nonzero().flatten().tolist() == [40]


def test_the_bucket_rows_worked_out_while_decoding_serve_training_after_it():
    model = small_model(relative_buckets=16, max_relative_distance=24)
    tokens = _random_tokens(40, seed=5)
    with torch.inference_mode():  # decoding first: the rows of each length are worked out once, then kept
        model(tokens)
    model.train()
    model(tokens).sum().backward()  # an inference tensor could not be kept for this backward
    assert model.blocks[0].attention.relative_embeddings.grad.abs().sum() > 0
