"""Relative attention: skewing equals Shaw et al.'s direct formula; blocks, windows and gradients agree."""

import math

import pytest
import torch

from music_transformer.attention import (
    KVCache,
    Visibility,
    relative_attention,
    relative_logits,
    relative_table,
    skew,
    skew_view,
)
from music_transformer.stream_cache import StreamCache

from .helpers import direct_attention, shaw_relative_logits


@pytest.mark.parametrize("length,heads,max_distance", [(1, 1, 4), (2, 1, 8), (7, 2, 7), (16, 4, 32),
                                                       (33, 8, 12), (128, 3, 64)])
def test_skewed_relative_logits_equal_shaws_formula(length, heads, max_distance):
    generator = torch.Generator().manual_seed(length * 31 + heads)
    q = torch.randn(2, heads, length, 16, dtype=torch.float64, generator=generator)
    embeddings = torch.randn(heads, max_distance, 16, dtype=torch.float64, generator=generator)
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    skewed = relative_logits(q, embeddings, length).masked_fill(~causal, 0.0)
    torch.testing.assert_close(skewed, shaw_relative_logits(q, embeddings), atol=1e-6, rtol=0)


def test_skew_is_the_papers_pad_reshape_drop_first_row():
    length = 5
    by_distance = torch.arange(length * length, dtype=torch.float64).view(length, length)
    padded = torch.nn.functional.pad(by_distance, (1, 0)).reshape(length + 1, length)[1:]
    torch.testing.assert_close(skew(by_distance), padded)
    for i in range(length):  # entry (i, j) is distance j - i, read from column (j - i) + (L - 1)
        for j in range(i + 1):
            assert skew(by_distance)[i, j] == by_distance[i, j - i + length - 1]


@pytest.mark.parametrize("queries,keys", [(1, 1), (5, 5), (3, 8), (256, 256), (7, 300)])
def test_the_copy_free_skew_agrees_with_the_papers_wherever_a_query_may_look(queries, keys):
    by_distance = torch.randn(2, 3, queries, keys, dtype=torch.float64)
    visible = torch.ones(queries, keys, dtype=torch.bool).tril(keys - queries)
    view = skew_view(by_distance)
    assert view.shape == by_distance.shape and view.data_ptr() == by_distance.data_ptr() + (queries - 1) * 8
    torch.testing.assert_close(view[..., visible], skew(by_distance)[..., visible], atol=0, rtol=0)
    folded = by_distance.transpose(0, 1).contiguous().transpose(0, 1)  # a batch-folded matmul's layout
    torch.testing.assert_close(skew_view(folded)[..., visible], skew(by_distance)[..., visible], atol=0, rtol=0)


def test_distances_past_the_maximum_get_no_relative_term():
    q = torch.randn(1, 2, 10, 4, dtype=torch.float64)
    embeddings = torch.randn(2, 3, 4, dtype=torch.float64)
    logits = relative_logits(q, embeddings, 10)
    distance = torch.arange(10)[None, :] - torch.arange(10)[:, None]
    assert torch.all(logits[..., (distance <= -3)] == 0)
    assert torch.all(logits[..., (distance > -3) & (distance <= 0)] != 0)
    assert relative_table(embeddings, 10).shape == (2, 10, 4)


@pytest.mark.parametrize("block_size,window", [(None, None), (16, None), (7, None), (16, 20), (None, 9)])
def test_blocked_attention_equals_the_direct_formula(block_size, window):
    generator = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 4, 70, 8, dtype=torch.float64, generator=generator) for _ in range(3))
    embeddings = torch.randn(4, 40, 8, dtype=torch.float64, generator=generator)
    got = relative_attention(q, k, v, embeddings, window=window, block_size=block_size)
    torch.testing.assert_close(got, direct_attention(q, k, v, embeddings, window), atol=1e-10, rtol=0)


@pytest.mark.parametrize("block_size,window,max_distance", [(None, None, 30), (8, None, 30), (8, 13, 30),
                                                             (16, None, 80), (7, 20, 5)])
def test_fused_backward_gives_the_gradients_of_the_direct_formula(block_size, window, max_distance):
    generator = torch.Generator().manual_seed(5)
    tensors = [torch.randn(2, 2, 50, 8, dtype=torch.float64, generator=generator) for _ in range(3)]
    tensors.append(torch.randn(2, max_distance, 8, dtype=torch.float64, generator=generator))
    weights = torch.randn(2, 2, 50, 8, dtype=torch.float64, generator=generator)
    gradients = []
    for attend in (lambda *t: relative_attention(*t, window=window, block_size=block_size),
                   lambda *t: direct_attention(*t, window=window)):
        inputs = [t.clone().requires_grad_() for t in tensors]
        (attend(*inputs) * weights).sum().backward()
        gradients.append([t.grad for t in inputs])
    for fused, direct in zip(*gradients, strict=True):
        torch.testing.assert_close(fused, direct, atol=1e-10, rtol=0)


def test_under_cpu_autocast_relative_attention_runs_in_float32():
    """bfloat16 projections in, the relative term, softmax and fused backward computed in float32."""
    generator = torch.Generator().manual_seed(7)
    tensors = [torch.randn(2, 2, 40, 8, generator=generator).bfloat16() for _ in range(3)]
    tensors.append(torch.randn(2, 24, 8, generator=generator))
    results = []
    for autocast in (True, False):
        inputs = [t.clone().requires_grad_() for t in tensors]
        torch.manual_seed(0)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = relative_attention(*(t if autocast else t.float() for t in inputs), block_size=16)
        (out * torch.arange(8.0)).sum().backward()
        results.append((out, [t.grad for t in inputs]))
    (low, low_grads), (high, high_grads) = results
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, high, atol=0, rtol=0)
    for got, expected in zip(low_grads, high_grads, strict=True):
        torch.testing.assert_close(got, expected, atol=0, rtol=0)


def test_one_query_needs_no_skew():
    q = torch.randn(1, 2, 1, 8, dtype=torch.float64)
    k = torch.randn(1, 2, 12, 8, dtype=torch.float64)
    embeddings = torch.randn(2, 20, 8, dtype=torch.float64)
    rel = relative_logits(q, embeddings, 12)
    for j in range(12):  # the newest query is at position 11: distance j - 11
        assert rel[0, 0, 0, j] == pytest.approx(float(q[0, 0, 0] @ embeddings[0, 19 + j - 11]))
    out = relative_attention(q, k, k, embeddings)
    assert out.shape == (1, 2, 1, 8)
    torch.testing.assert_close(out, direct_attention(torch.cat([k[:, :, :-1], q], 2), k, k, embeddings)[:, :, -1:],
                               atol=1e-10, rtol=0)


@pytest.mark.parametrize("block_size,local", [(None, 16), (8, 16), (16, 16), (5, 7), (64, 32)])
def test_relative_local_attention_equals_full_attention_masked_to_blocks(block_size, local):
    generator = torch.Generator().manual_seed(11)
    q, k, v = (torch.randn(2, 3, 90, 8, dtype=torch.float64, generator=generator) for _ in range(3))
    embeddings = torch.randn(3, 2 * local, 8, dtype=torch.float64, generator=generator)
    got = relative_attention(q, k, v, embeddings, block_size=block_size, local=local)
    torch.testing.assert_close(got, direct_attention(q, k, v, embeddings, local=local), atol=1e-6, rtol=0)
    inputs = [t.clone().requires_grad_() for t in (q, k, v, embeddings)]
    relative_attention(*inputs, block_size=block_size, local=local).sum().backward()
    reference = [t.clone().requires_grad_() for t in (q, k, v, embeddings)]
    direct_attention(*reference, local=local).sum().backward()
    for fused, direct in zip(inputs, reference, strict=True):
        torch.testing.assert_close(fused.grad, direct.grad, atol=1e-6, rtol=0)


def test_local_blocks_follow_absolute_positions():
    rule = Visibility(local=4, offset=6)  # keys 6..13
    mask = rule.mask(queries=2, keys=8)  # queries at 12 and 13: their block starts at 12, the previous at 8
    assert mask.tolist() == [[False, False, True, True, True, True, True, False],
                             [False, False, True, True, True, True, True, True]]
    assert rule.first_visible(12) == 8 and rule.first_visible(11) == 4


@pytest.mark.parametrize("rows,static,window,local,max_distance", [
    (1, False, 20, None, 30), (3, False, 20, None, 8), (1, True, 20, None, 8), (3, True, 20, None, 30),
    (1, False, None, 6, 40), (3, False, None, 6, 40), (3, True, None, 6, 5)])
def test_the_stream_cache_attends_like_the_direct_formula_while_its_ring_wraps(rows, static, window, local,
                                                                              max_distance):
    # Rows share a context of 15 positions, then each writes 55 of its own: the context slides out of the
    # window and each row's ring wraps more than twice; the table of distances is shorter or longer than it.
    generator = torch.Generator().manual_seed(rows + 10 * static)
    heads, dim, context, total = 3, 8, 15, 70
    q, k, v = (torch.randn(rows, heads, total, dim, dtype=torch.float64, generator=generator) for _ in range(3))
    k[:, :, :context], v[:, :, :context] = k[:1, :, :context], v[:1, :, :context]
    embeddings = torch.randn(heads, max_distance, dim, dtype=torch.float64, generator=generator)
    want = direct_attention(q, k, v, embeddings, window=window, local=local)
    read = KVCache(1, window=window, local=local)
    read.update(0, k[:1, :, :context], v[:1, :, :context])
    read.position = context
    stream = StreamCache(read, rows, read.span, max_distance, static=static)
    relative_t = embeddings.transpose(1, 2).contiguous()
    for t in range(context, total):
        stream.begin_step()
        heads_first = [x[:, :, t].transpose(0, 1) for x in (q / math.sqrt(dim), k, v)]  # (H, rows, D)
        got = stream.attend(0, heads_first[0].contiguous(), *heads_first[1:], relative_t)
        stream.end_step()
        stream.moved_on()
        torch.testing.assert_close(got.transpose(0, 1), want[:, :, t], atol=1e-9, rtol=0)
    # storage stays what it was at the start: one row (not static) holds the context in its ring
    assert len(stream) == (0 if rows == 1 and not static else min(context, read.span - 1)) + read.span
