/* One decoding step on the CPU in float32, as one call: what `decoder.Decoder` does for its rows (the
 * streams, or the variations of one continuation, that continue one context).
 *
 * A step reads every weight and every key once. With one row it does little arithmetic on each, so its
 * speed is the speed at which memory streams in; MKL's products with one row, and a batch of small per-head
 * products for the attention, reach about half of that on the CPUs measured (bench/README.md), while these
 * loops read each weight row and each run of keys straight through. With several rows each weight row and
 * each of the context's keys is read once for all of them. `native.py` compiles this file with the
 * machine's C compiler on first use; without one the decoder takes torch's operations.
 *
 * Layouts are the decoder's (attention.StreamCache): weights (out, in) row-major, the query rows of the
 * fused QKV projection already scaled by 1/sqrt(D); per layer the context's keys (H, D, P) and values
 * (H, P, D), read by every row, and each row's ring of keys (H, rows, D, span) and values
 * (H, rows, span, D); the relative embeddings transposed, E^T (H, D, M), column M-1-d holding distance d.
 * A row's scores run over the context's columns it sees, then its ring's; the plan's offsets (the relative
 * term's runs, the hidden runs) count in that order.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const float *norm1_w, *norm1_b;
    const float *qkv_w, *qkv_b;
    const float *out_w, *out_b;
    const float *norm2_w, *norm2_b;
    const float *up_w, *up_b;
    const float *down_w, *down_b;
    const float *relative_t; /* NULL: no relative term */
    const float *context_keys, *context_values; /* NULL: no context apart from the rings (one row) */
    float *keys, *values; /* the rings */
    float norm1_eps, norm2_eps;
} mt_layer;

typedef struct {
    int32_t n_layers, d_model, heads, head_dim, d_ff, vocab, span, distances, rows, context;
    const mt_layer *layers;
    const float *final_w, *final_b;
    const float *head_w;
    float *work; /* rows (5 d_model + d_ff + context + span + distances) floats */
    float final_eps;
} mt_model;

/* The columns a step reads: the context's first..first+context_seen-1, then the ring's
 * ring_first..ring_first+ring_seen-1; the new token's key and value go to ring column `column`. */
typedef struct {
    int32_t first, context_seen, ring_first, ring_seen, column, needed, n_terms, n_hidden;
    int32_t terms[6];  /* (score column, column of E^T, width) of each run taking the relative term */
    int32_t hidden[4];  /* (score column, width) of each run out of sight */
} mt_plan;

/* exp for x <= 0 (and a little above), vectorisable: 2^n * p(r), r = x - n ln 2; relative error under 1e-7. */
static inline float exp_neg(float x)
{
    x = x < -87.0f ? -87.0f : x;
    const float n = floorf(x * 1.44269504f + 0.5f);
    const float r = x - n * 0.693145752f - n * 1.42860677e-6f;
    float p = 1.98756912e-4f;
    p = p * r + 1.39819994e-3f;
    p = p * r + 8.33345205e-3f;
    p = p * r + 4.16664411e-2f;
    p = p * r + 1.66666672e-1f;
    p = p * r + 5.00000000e-1f;
    p = p * r * r + r + 1.0f;
    union { float f; int32_t i; } scale;
    scale.i = ((int32_t)n + 127) << 23;
    return p * scale.f;
}

/* erf by Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7), for the exact GELU. */
static inline float erf_approx(float x)
{
    const float a = fabsf(x);
    const float t = 1.0f / (1.0f + 0.3275911f * a);
    const float y = 1.0f - (((((1.061405429f * t - 1.453152027f) * t) + 1.421413741f) * t - 0.284496736f) * t
                            + 0.254829592f) * t * exp_neg(-a * a);
    return copysignf(y, x);
}

static void layer_norm(int n, const float *x, const float *w, const float *b, float eps, float *y)
{
    float mean = 0.0f, var = 0.0f;
    for (int i = 0; i < n; i++) mean += x[i];
    mean /= (float)n;
    for (int i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
    const float inv = 1.0f / sqrtf(var / (float)n + eps);
    for (int i = 0; i < n; i++) y[i] = (x[i] - mean) * inv * w[i] + b[i];
}

/* Sixteen floats as one value (GCC's and Clang's vector extension): the compiler maps it onto the machine's
 * vectors (one AVX-512 register, two AVX ones, four NEON ones). Loads and stores need no alignment. */
typedef float vec __attribute__((vector_size(64), aligned(4)));
#define LANES 16

static inline vec load(const float *p) { return *(const vec *)p; }
static inline void store(float *p, vec v) { *(vec *)p = v; }
static inline float total_of(vec v)
{
    float s = 0.0f;
    for (int j = 0; j < LANES; j++) s += v[j];
    return s;
}

/* y[r, o] (=, or += when add) b[o] + W[o, :] . x[r, :] for `nr` (at most 4) rows and four outputs o..o+3:
 * each weight row and each row's x read once, sixteen sums kept in registers. */
static inline void linear_block(const int nr, int in, const float *x, const float *w, const float *b, float *y,
                                int out, int o, int add)
{
    vec acc[4][4] = {{{0}}};
    const float *w0 = w + (int64_t)o * in;
    int i = 0;
    for (; i + LANES <= in; i += LANES) {
        const vec k0 = load(w0 + i), k1 = load(w0 + in + i), k2 = load(w0 + 2 * in + i), k3 = load(w0 + 3 * in + i);
        for (int r = 0; r < nr; r++) {
            const vec v = load(x + (int64_t)r * in + i);
            acc[r][0] += k0 * v;
            acc[r][1] += k1 * v;
            acc[r][2] += k2 * v;
            acc[r][3] += k3 * v;
        }
    }
    for (int r = 0; r < nr; r++)
        for (int k = 0; k < 4; k++) {
            float s = total_of(acc[r][k]);
            for (int t = i; t < in; t++) s += w0[(int64_t)k * in + t] * x[(int64_t)r * in + t];
            float *target = y + (int64_t)r * out + o + k;
            *target = (add ? *target : 0.0f) + (b ? b[o + k] : 0.0f) + s;
        }
}

/* y[r, o] (=, or += when add) b[o] + W[o, :] . x[r, :] for every row, W (out, in) row-major (b NULL: none). */
static void linear(int rows, int in, int out, const float *x, const float *w, const float *b, float *y, int add)
{
    int o = 0;
    /* one row is memory, not arithmetic: one weight row straight through at a time (the loop after this
     * one; 18 % faster than four at a time) */
    for (; rows > 1 && o + 4 <= out; o += 4)
        for (int r = 0; r < rows; r += 4) {
            const float *xr = x + (int64_t)r * in;
            float *yr = y + (int64_t)r * out;
            switch (rows - r >= 4 ? 4 : rows - r) {  /* constant row counts: the compiler unrolls each */
            case 4: linear_block(4, in, xr, w, b, yr, out, o, add); break;
            case 3: linear_block(3, in, xr, w, b, yr, out, o, add); break;
            case 2: linear_block(2, in, xr, w, b, yr, out, o, add); break;
            default: linear_block(1, in, xr, w, b, yr, out, o, add); break;
            }
        }
    for (; o < out; o++) {
        const float *row = w + (int64_t)o * in;
        for (int r = 0; r < rows; r++) {
            const float *xr = x + (int64_t)r * in;
            float s = 0.0f;
            for (int i = 0; i < in; i++) s += row[i] * xr[i];
            float *target = y + (int64_t)r * out + o;
            *target = (add ? *target : 0.0f) + (b ? b[o] : 0.0f) + s;
        }
    }
}

/* out[r, c] = q[r] . K[:, c] for c < count and `nr` (at most 8) rows: sixteen columns at a time, their sums
 * kept in registers while the D rows of keys (`stride` apart) go by. */
static inline void products_block(const int nr, int dim, const float *q, int64_t q_stride, const float *keys,
                                  int64_t stride, int count, float *out, int64_t out_stride)
{
    int c = 0;
    for (; c + LANES <= count; c += LANES) {
        vec acc[8] = {0};
        for (int d = 0; d < dim; d++) {
            const vec k = load(keys + (int64_t)d * stride + c);
            for (int r = 0; r < nr; r++) acc[r] += q[r * q_stride + d] * k;
        }
        for (int r = 0; r < nr; r++) store(out + r * out_stride + c, acc[r]);
    }
    for (; c < count; c++)
        for (int r = 0; r < nr; r++) {
            float s = 0.0f;
            for (int d = 0; d < dim; d++) s += q[r * q_stride + d] * keys[(int64_t)d * stride + c];
            out[r * out_stride + c] = s;
        }
}

/* out[r, c] = q[r] . K[:, c] for every row and c < count, K's D rows `stride` apart. `streaming`: one
 * stream's step, which reads memory more than it computes: each row of keys straight through, in turn. */
static void products(int rows, int dim, const float *q, int64_t q_stride, const float *keys, int64_t stride,
                     int count, float *out, int64_t out_stride, int streaming)
{
    if (streaming) {
        for (int c = 0; c < count; c++) out[c] = 0.0f;
        for (int d = 0; d < dim; d++) {
            const float qd = q[d];
            const float *row = keys + (int64_t)d * stride;
            for (int c = 0; c < count; c++) out[c] += qd * row[c];
        }
        return;
    }
    for (int r = 0, nr; r < rows; r += nr) {  /* eight rows at a time, then four, then what is left */
        nr = rows - r >= 8 ? 8 : rows - r >= 4 ? 4 : rows - r;
        const float *qr = q + r * q_stride;
        float *target = out + r * out_stride;
        switch (nr) {  /* constant row counts: the compiler unrolls each */
        case 8: products_block(8, dim, qr, q_stride, keys, stride, count, target, out_stride); break;
        case 4: products_block(4, dim, qr, q_stride, keys, stride, count, target, out_stride); break;
        case 3: products_block(3, dim, qr, q_stride, keys, stride, count, target, out_stride); break;
        case 2: products_block(2, dim, qr, q_stride, keys, stride, count, target, out_stride); break;
        default: products_block(1, dim, qr, q_stride, keys, stride, count, target, out_stride); break;
        }
    }
}

/* out[r, :] += sum over c < count of p[r, c] V[c, :] for `nr` (at most 8) rows and dim = 16 `parts`: the
 * sums kept in registers, each value row read once for all the rows. */
static inline void weighted_block(const int nr, const int parts, const float *p, int64_t p_stride,
                                  const float *values, int count, float *out, int64_t out_stride)
{
    vec acc[8][4] = {{{0}}};
    for (int c = 0; c < count; c++) {
        const float *v = values + (int64_t)c * parts * LANES;
        for (int k = 0; k < parts; k++) {
            const vec part = load(v + k * LANES);
            for (int r = 0; r < nr; r++) acc[r][k] += p[r * p_stride + c] * part;
        }
    }
    for (int r = 0; r < nr; r++)
        for (int k = 0; k < parts; k++) {
            float *o = out + r * out_stride + k * LANES;
            store(o, load(o) + acc[r][k]);
        }
}

#define WEIGHTED(nr, parts) weighted_block(nr, parts, pr, p_stride, values, count, target, out_stride)
#define WEIGHTED_ROWS(nr) \
    switch (parts) { case 1: WEIGHTED(nr, 1); break; case 2: WEIGHTED(nr, 2); break; \
                     case 3: WEIGHTED(nr, 3); break; default: WEIGHTED(nr, 4); break; }

/* out[r, :] += sum over c < count of p[r, c] V[c, :] for every row, V (count, dim) row-major. */
static void weighted_values(int rows, int dim, const float *p, int64_t p_stride, const float *values, int count,
                            float *out, int64_t out_stride)
{
    if (dim % LANES == 0 && dim <= 4 * LANES) {  /* the usual head widths (16, 32, 48, 64): in registers */
        const int parts = dim / LANES;
        for (int r = 0, nr; r < rows; r += nr) {
            nr = rows - r >= 8 ? 8 : rows - r >= 4 ? 4 : rows - r;
            const float *pr = p + r * p_stride;
            float *target = out + r * out_stride;
            switch (nr) {
            case 8: WEIGHTED_ROWS(8) break;
            case 4: WEIGHTED_ROWS(4) break;
            case 3: WEIGHTED_ROWS(3) break;
            case 2: WEIGHTED_ROWS(2) break;
            default: WEIGHTED_ROWS(1) break;
            }
        }
        return;
    }
    for (int c = 0; c < count; c++)
        for (int r = 0; r < rows; r++) {
            const float weight = p[r * p_stride + c];
            float *o = out + r * out_stride;
            for (int d = 0; d < dim; d++) o[d] += weight * values[(int64_t)c * dim + d];
        }
}

/* Softmax of one row of scores in place, hidden runs (-inf) given a weight of 0. */
static void softmax(int count, float *scores)
{
    float top = -INFINITY;
    for (int c = 0; c < count; c++) top = scores[c] > top ? scores[c] : top;
    float total = 0.0f;
    for (int c = 0; c < count; c++) {
        const float e = scores[c] == -INFINITY ? 0.0f : exp_neg(scores[c] - top);
        scores[c] = e;
        total += e;
    }
    const float inv = 1.0f / total;
    for (int c = 0; c < count; c++) scores[c] *= inv;
}

/* The new tokens' attention in one head, every row: queries q (rows, stride q_stride), outputs out (rows,
 * stride out_stride). */
static void attend_head(const mt_model *m, const mt_layer *layer, const mt_plan *plan, int head, const float *q,
                        int64_t q_stride, float *scores, float *relative, float *out, int64_t out_stride)
{
    const int rows = m->rows, dim = m->head_dim, span = m->span, distances = m->distances, P = m->context;
    const int seen = plan->context_seen, count = plan->context_seen + plan->ring_seen;
    const int streaming = rows == 1;
    if (seen > 0)  /* the context: every row's product with the same keys */
        products(rows, dim, q, q_stride, layer->context_keys + ((int64_t)head * dim * P + plan->first), P, seen,
                 scores, count, streaming);
    for (int r = 0; r < rows; r++)  /* each row's own ring */
        products(1, dim, q + r * q_stride, q_stride,
                 layer->keys + (((int64_t)head * rows + r) * dim * span + plan->ring_first), span, plan->ring_seen,
                 scores + (int64_t)r * count + seen, count, streaming);
    if (layer->relative_t != NULL && plan->needed > 0) {  /* q E^T for the distances seen, added by run */
        const int from = distances - plan->needed;
        products(rows, dim, q, q_stride, layer->relative_t + (int64_t)head * dim * distances + from, distances,
                 plan->needed, relative + from, distances, streaming);
        for (int r = 0; r < rows; r++)
            for (int t = 0; t < plan->n_terms; t++) {
                float *s = scores + (int64_t)r * count + plan->terms[3 * t];
                const float *e = relative + (int64_t)r * distances + plan->terms[3 * t + 1];
                for (int c = 0; c < plan->terms[3 * t + 2]; c++) s[c] += e[c];
            }
    }
    for (int r = 0; r < rows; r++) {
        float *s = scores + (int64_t)r * count;
        for (int t = 0; t < plan->n_hidden; t++)
            for (int c = 0; c < plan->hidden[2 * t + 1]; c++) s[plan->hidden[2 * t] + c] = -INFINITY;
        softmax(count, s);
        float *o = out + r * out_stride;
        for (int d = 0; d < dim; d++) o[d] = 0.0f;
        weighted_values(1, dim, s + seen, count, layer->values + (((int64_t)head * rows + r) * span + plan->ring_first)
                        * dim, plan->ring_seen, o, out_stride);
    }
    if (seen > 0)  /* the context's values, each read once for every row */
        weighted_values(rows, dim, scores, count, layer->context_values + ((int64_t)head * P + plan->first) * dim, seen,
                        out, out_stride);
}

/* x (rows, d_model): each row's token embedding (and timing signal), overwritten; logits (rows, vocab). */
void mt_step(const mt_model *m, float *x, float *logits, const mt_plan *plan)
{
    const int rows = m->rows, d = m->d_model, heads = m->heads, dim = m->head_dim, span = m->span, ff = m->d_ff;
    float *h = m->work, *qkv = h + (int64_t)rows * d, *y = qkv + (int64_t)rows * 3 * d;
    float *hidden = y + (int64_t)rows * d, *scores = hidden + (int64_t)rows * ff;
    float *relative = scores + (int64_t)rows * (m->context + span);
    for (int l = 0; l < m->n_layers; l++) {
        const mt_layer *layer = &m->layers[l];
        for (int r = 0; r < rows; r++)
            layer_norm(d, x + (int64_t)r * d, layer->norm1_w, layer->norm1_b, layer->norm1_eps, h + (int64_t)r * d);
        linear(rows, d, 3 * d, h, layer->qkv_w, layer->qkv_b, qkv, 0);
        for (int head = 0; head < heads; head++) {
            for (int r = 0; r < rows; r++) {  /* the new keys and values into each row's ring */
                const float *k = qkv + (int64_t)r * 3 * d + d + head * dim, *v = k + d;
                float *keys = layer->keys + ((int64_t)head * rows + r) * dim * span + plan->column;
                float *values = layer->values + (((int64_t)head * rows + r) * span + plan->column) * dim;
                for (int i = 0; i < dim; i++) {
                    keys[(int64_t)i * span] = k[i];
                    values[i] = v[i];
                }
            }
            attend_head(m, layer, plan, head, qkv + head * dim, 3 * d, scores, relative, y + head * dim, d);
        }
        linear(rows, d, d, y, layer->out_w, layer->out_b, x, 1);
        for (int r = 0; r < rows; r++)
            layer_norm(d, x + (int64_t)r * d, layer->norm2_w, layer->norm2_b, layer->norm2_eps, h + (int64_t)r * d);
        linear(rows, d, ff, h, layer->up_w, layer->up_b, hidden, 0);
        for (int64_t i = 0; i < (int64_t)rows * ff; i++)
            hidden[i] = 0.5f * hidden[i] * (1.0f + erf_approx(hidden[i] * 0.70710678f));
        linear(rows, ff, d, hidden, layer->down_w, layer->down_b, x, 1);
    }
    for (int r = 0; r < rows; r++)
        layer_norm(d, x + (int64_t)r * d, m->final_w, m->final_b, m->final_eps, h + (int64_t)r * d);
    linear(rows, d, m->vocab, h, m->head_w, NULL, logits, 0);
}
