/* One decoding step on the CPU in float32, as one call: what `decoder.Decoder` does for its rows (the
 * streams, or the variations of one continuation, that continue one context).
 *
 * A step reads every weight and every key once. With one row it does little arithmetic on each, so its
 * speed is the speed at which memory streams in; MKL's products with one row, and a batch of small per-head
 * products for the attention, reach about half of that on the CPUs measured (bench/README.md), while these
 * loops read each weight row and each run of keys straight through. With several rows each weight row and
 * each of the context's keys is read once for all of them. hatch_build.py compiles this file when the wheel
 * is built (or `make native` in a checkout), once for each level of the processor's vector instructions;
 * `native.py` loads the best one this machine runs (`mt_cpu_level`). Without them the decoder takes torch's
 * operations.
 *
 * Layouts are the decoder's (stream_cache.StreamCache): weights in panels (`linear`), the query rows of the
 * fused QKV projection already scaled by 1/sqrt(D); per layer the context's keys (H, D, P) and values
 * (H, P, D), read by every row, and each row's ring of keys in blocks of LANES columns
 * (H, rows, span / LANES, D, LANES) and of values (H, rows, span, D); the relative embeddings transposed,
 * E^T (H, D, M), column M-1-d holding distance d. The rows of the context's keys and of E^T lie
 * `context_stride` and `relative_stride` floats apart, an odd number of cache lines
 * (stream_cache.padded_rows).
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
    int32_t context_stride, relative_stride;  /* how far apart the rows of the context's keys and of E^T lie */
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

/* The machine's vectors: VEC floats as one value (GCC's and Clang's vector extension), and the registers it
 * has for them. A vector type wider than the machine's is no longer one register but several, which GCC
 * moves through memory at nearly every operation: with 16-float vectors on an AVX2 CPU a step of one row
 * took 1.7 - 1.9x the time of torch's operations, and of eight rows 4.2 - 4.4x (measured; bench/README.md).
 * Loads and stores need no alignment. */
#if defined(__AVX512F__)
#define VEC 16
#define REGISTERS 32
#elif defined(__AVX__)
#define VEC 8
#define REGISTERS 16
#elif defined(__aarch64__)
#define VEC 4
#define REGISTERS 32
#else
#define VEC 4
#define REGISTERS 16
#endif
typedef float vec __attribute__((vector_size(VEC * 4), aligned(4)));
typedef int32_t lanes __attribute__((vector_size(VEC * 4), aligned(4)));  /* comparisons' masks, and bits */
/* How many sums a kernel keeps in registers at most: the rest hold what it multiplies them by. */
#define SUMS (REGISTERS * 3 / 4)

static inline vec load(const float *p) { return *(const vec *)p; }
static inline void store(float *p, vec v) { *(vec *)p = v; }

/* The layouts' widths, the same on every machine (the decoder lays the data out so): LANES columns of keys
 * to a block of a ring, PANEL outputs to a panel of a weight matrix (native.py asks for both). */
#define LANES 16
#define PANEL 32
#define BLOCK_VECTORS (LANES / VEC)
#define PANEL_VECTORS (PANEL / VEC)

int mt_panel_width(void) { return PANEL; }
int mt_key_block(void) { return LANES; }

/* The vector instructions this processor and its operating system run, asked of the baseline build before
 * any other is loaded: on x86-64 4 (AVX-512 F, BW, CD, DQ, VL: x86-64-v4), 3 (AVX2, FMA, BMI: x86-64-v3)
 * or 1 (SSE2, every x86-64); 0 elsewhere (Arm's NEON is in every arm64 processor). GCC's and Clang's
 * feature checks count a register set the operating system does not save as missing. */
int mt_cpu_level(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    const int v3 = __builtin_cpu_supports("avx") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
                   && __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
    const int v4 = v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
                   && __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq")
                   && __builtin_cpu_supports("avx512vl");
    return v4 ? 4 : v3 ? 3 : 1;
#else
    return 0;
#endif
}

/* The kernels below are written for constant row counts, which only inlining gives them. */
#define INLINE inline __attribute__((always_inline))

/* GCC folds a weight vector's load into each row's multiply-add; with four rows or fewer those repeated
 * loads made the products 1.8x slower on AVX-512 (measured), so there the vectors are pinned in registers,
 * of which AVX-512 has enough for it. */
#if defined(__AVX512F__) && defined(__GNUC__)
#define IN_REGISTER(v) __asm__("" : "+v"(v))
#else
#define IN_REGISTER(v) ((void)0)
#endif

/* The rows of a block: 8, 4, 3, 2 or 1, at most `left` and at most `most`. */
static int block_rows(int left, int most)
{
    const int n = left < most ? left : most;
    return n >= 8 ? 8 : n >= 4 ? 4 : n;
}

/* The weights' layout: W (out, in) cut into panels of PANEL outputs, each (in, PANEL) row-major, the last
 * one padded with zeros. A step reads each panel straight through, and every input i gives PANEL outputs
 * one multiply-add per row, with no sums across a vector left to do at the end. PANEL_ROWS rows at a time
 * keep their sums in registers: 8 with AVX-512, 3 with AVX2. */
#define PANEL_ROWS (SUMS / PANEL_VECTORS >= 8 ? 8 : SUMS / PANEL_VECTORS >= 1 ? SUMS / PANEL_VECTORS : 1)

/* acc[r] = the products of `nr` rows of x with one panel (x[r, i] times the panel's row i, summed over i). */
static INLINE void panel_block(const int nr, int in, const float *x, const float *panel, vec acc[8][PANEL_VECTORS])
{
    for (int r = 0; r < nr; r++)
        for (int v = 0; v < PANEL_VECTORS; v++) acc[r][v] = (vec){0};
    for (int i = 0; i < in; i++, panel += PANEL) {
        vec w[PANEL_VECTORS];
        for (int v = 0; v < PANEL_VECTORS; v++) {
            w[v] = load(panel + v * VEC);
            IN_REGISTER(w[v]);
        }
        for (int r = 0; r < nr; r++) {
            const float xi = x[(int64_t)r * in + i];
            for (int v = 0; v < PANEL_VECTORS; v++) acc[r][v] += xi * w[v];
        }
    }
}

#define PANEL_CASE(n) case n: if (n <= PANEL_ROWS) panel_block(n, in, xr, panels, acc); break;

/* y[r, o] (=, or += when add) b[o] + W[o, :] . x[r, :] for every row, W in panels (b NULL: none). */
static void linear(int rows, int in, int out, const float *x, const float *panels, const float *b, float *y,
                   int add)
{
    for (int o = 0; o < out; o += PANEL, panels += (int64_t)in * PANEL) {
        const int width = out - o < PANEL ? out - o : PANEL;
        for (int r = 0, nr; r < rows; r += nr) {  /* each panel row read once for PANEL_ROWS rows */
            nr = rows - r < PANEL_ROWS ? rows - r : PANEL_ROWS;
            const float *xr = x + (int64_t)r * in;
            vec acc[8][PANEL_VECTORS];
            switch (nr) {  /* constant row counts: the compiler unrolls each */
            PANEL_CASE(8) PANEL_CASE(7) PANEL_CASE(6) PANEL_CASE(5) PANEL_CASE(4) PANEL_CASE(3) PANEL_CASE(2)
            default: panel_block(1, in, xr, panels, acc); break;
            }
            for (int k = 0; k < nr; k++) {
                float *target = y + (int64_t)(r + k) * out + o;
                if (width == PANEL)
                    for (int v = 0; v < PANEL_VECTORS; v++) {
                        vec sum = acc[k][v];
                        if (b) sum += load(b + o + v * VEC);
                        store(target + v * VEC, add ? load(target + v * VEC) + sum : sum);
                    }
                else  /* the last panel's outputs */
                    for (int j = 0; j < width; j++) {
                        const float sum = acc[k][j / VEC][j % VEC] + (b ? b[o + j] : 0.0f);
                        target[j] = add ? target[j] + sum : sum;
                    }
            }
        }
    }
}

/* out[r, c..c + nv VEC) = q[r] . K[:, c..] for `nr` rows (nr nv at most 8): the sums kept in registers
 * while the D rows of keys (`stride` apart) go by. */
static INLINE void columns_block(const int nr, const int nv, int dim, const float *q, int64_t q_stride,
                                 const float *keys, int64_t stride, int c, float *out, int64_t out_stride)
{
    vec acc[8] = {0};
    for (int d = 0; d < dim; d++) {
        const float *row = keys + (int64_t)d * stride + c;
        __builtin_prefetch(row + 64);
        for (int v = 0; v < nv; v++) {
            vec k = load(row + v * VEC);
            IN_REGISTER(k);
            for (int r = 0; r < nr; r++) acc[r * nv + v] += q[r * q_stride + d] * k;
        }
    }
    for (int r = 0; r < nr; r++)
        for (int v = 0; v < nv; v++) store(out + r * out_stride + c + v * VEC, acc[r * nv + v]);
}

/* out[r, c] = q[r] . K[:, c] for c < count and `nr` (at most 8) rows: `nv` vectors of columns at a time
 * (nr nv at most 8; a few rows take several, so that several loads of keys are in flight), then one. */
static INLINE void products_block(const int nr, const int nv, int dim, const float *q, int64_t q_stride,
                                  const float *keys, int64_t stride, int count, float *out, int64_t out_stride)
{
    int c = 0;
    for (; c + nv * VEC <= count; c += nv * VEC)
        columns_block(nr, nv, dim, q, q_stride, keys, stride, c, out, out_stride);
    for (; c + VEC <= count; c += VEC)
        columns_block(nr, 1, dim, q, q_stride, keys, stride, c, out, out_stride);
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
    for (int r = 0, nr; r < rows; r += nr) {
        nr = block_rows(rows - r, 8);
        const float *qr = q + r * q_stride;
        float *target = out + r * out_stride;
        switch (nr) {  /* constant row counts: the compiler unrolls each */
        case 8: products_block(8, 1, dim, qr, q_stride, keys, stride, count, target, out_stride); break;
        case 4: products_block(4, 2, dim, qr, q_stride, keys, stride, count, target, out_stride); break;
        case 3: products_block(3, 2, dim, qr, q_stride, keys, stride, count, target, out_stride); break;
        case 2: products_block(2, 4, dim, qr, q_stride, keys, stride, count, target, out_stride); break;
        default: products_block(1, 4, dim, qr, q_stride, keys, stride, count, target, out_stride); break;
        }
    }
}

/* Whole blocks of a ring that ring_products reads at a time (their sums in registers): 4 with AVX-512 or AVX2. */
#define RING_BLOCKS (8 / BLOCK_VECTORS >= 4 ? 4 : 8 / BLOCK_VECTORS >= 1 ? 8 / BLOCK_VECTORS : 1)

/* out[c] = q . the key in column first + c, for c < count, of one ring's keys in blocks (span / LANES, D,
 * LANES): RING_BLOCKS whole blocks at a time, each read straight through, or one; a block that the run
 * starts or ends inside is computed whole and only its columns in the run kept. */
static void ring_products(int dim, const float *q, const float *blocks, int first, int count, float *out)
{
    const int end = first + count;
    for (int c = first; c < end;) {
        const float *block = blocks + (int64_t)(c / LANES) * dim * LANES;
        if (c % LANES == 0 && c + RING_BLOCKS * LANES <= end) {
            vec acc[RING_BLOCKS][BLOCK_VECTORS] = {{{0}}};
            for (int d = 0; d < dim; d++)
                for (int v = 0; v < RING_BLOCKS; v++)
                    for (int s = 0; s < BLOCK_VECTORS; s++)
                        acc[v][s] += q[d] * load(block + ((int64_t)v * dim + d) * LANES + s * VEC);
            for (int v = 0; v < RING_BLOCKS; v++)
                for (int s = 0; s < BLOCK_VECTORS; s++) store(out + c - first + v * LANES + s * VEC, acc[v][s]);
            c += RING_BLOCKS * LANES;
            continue;
        }
        vec acc[BLOCK_VECTORS] = {0};
        for (int d = 0; d < dim; d++)
            for (int s = 0; s < BLOCK_VECTORS; s++) acc[s] += q[d] * load(block + d * LANES + s * VEC);
        const int start = c / LANES * LANES, stop = end - start < LANES ? end - start : LANES;
        for (int j = c - start; j < stop; j++) out[start + j - first] = acc[j / VEC][j % VEC];
        c = start + stop;
    }
}

/* out[r, :] += sum over c < count of p[r, c] V[c, :] for `nr` rows and dim = `parts` VEC (nr parts at most
 * SUMS): the sums kept in registers, each value row read once for all the rows. */
static INLINE void weighted_block(const int nr, const int parts, const float *p, int64_t p_stride,
                                  const float *values, int count, float *out, int64_t out_stride)
{
    vec acc[8][8] = {{{0}}};
    for (int c = 0; c < count; c++) {
        const float *v = values + (int64_t)c * parts * VEC;
        for (int k = 0; k < parts; k++) {
            const vec part = load(v + k * VEC);
            for (int r = 0; r < nr; r++) acc[r][k] += p[r * p_stride + c] * part;
        }
    }
    for (int r = 0; r < nr; r++)
        for (int k = 0; k < parts; k++) {
            float *o = out + r * out_stride + k * VEC;
            store(o, load(o) + acc[r][k]);
        }
}

#define WEIGHTED(nr, parts) \
    case parts: if (nr * parts <= SUMS) weighted_block(nr, parts, pr, p_stride, values, count, target, out_stride); \
    break;
#define WEIGHTED_ROWS(nr) \
    switch (parts) { WEIGHTED(nr, 1) WEIGHTED(nr, 2) WEIGHTED(nr, 3) WEIGHTED(nr, 4) WEIGHTED(nr, 5) \
                     WEIGHTED(nr, 6) WEIGHTED(nr, 7) WEIGHTED(nr, 8) }

/* out[r, :] += sum over c < count of p[r, c] V[c, :] for every row, V (count, dim) row-major. */
static void weighted_values(int rows, int dim, const float *p, int64_t p_stride, const float *values, int count,
                            float *out, int64_t out_stride)
{
    const int parts = dim / VEC;
    if (dim % VEC == 0 && parts <= 8 && parts <= SUMS) {  /* the usual head widths (16 to 64): in registers */
        for (int r = 0, nr; r < rows; r += nr) {
            nr = block_rows(rows - r, SUMS / parts);
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
    vec most = (vec){0} - INFINITY;  /* the largest, a vector at a time (GCC keeps the scalar loop scalar) */
    int c = 0;
    for (; c + VEC <= count; c += VEC) {
        const vec v = load(scores + c);
        const lanes above = v > most;
        most = (vec)((above & (lanes)v) | (~above & (lanes)most));
    }
    float top = -INFINITY;
    for (int j = 0; j < VEC; j++) top = most[j] > top ? most[j] : top;
    for (; c < count; c++) top = scores[c] > top ? scores[c] : top;
    float total = 0.0f;
    for (c = 0; c < count; c++) {
        const float e = scores[c] == -INFINITY ? 0.0f : exp_neg(scores[c] - top);
        scores[c] = e;
        total += e;
    }
    const float inv = 1.0f / total;
    for (c = 0; c < count; c++) scores[c] *= inv;
}

/* The keys of row r's ring in one head: (span / LANES, D, LANES), the last block's columns past span unused. */
static float *ring_keys(const mt_model *m, const mt_layer *layer, int head, int r)
{
    const int64_t size = (int64_t)(m->span + LANES - 1) / LANES * LANES * m->head_dim;
    return layer->keys + ((int64_t)head * m->rows + r) * size;
}

/* The new tokens' attention in one head, every row: queries q (rows, stride q_stride), outputs out (rows,
 * stride out_stride). */
static void attend_head(const mt_model *m, const mt_layer *layer, const mt_plan *plan, int head, const float *q,
                        int64_t q_stride, float *scores, float *relative, float *out, int64_t out_stride)
{
    const int rows = m->rows, dim = m->head_dim, span = m->span, distances = m->distances, P = m->context;
    const int64_t context_apart = m->context_stride, relative_apart = m->relative_stride;
    const int seen = plan->context_seen, count = plan->context_seen + plan->ring_seen;
    const int streaming = rows == 1;
    if (seen > 0)  /* the context: every row's product with the same keys */
        products(rows, dim, q, q_stride, layer->context_keys + (head * dim * context_apart + plan->first), context_apart,
                 seen, scores, count, streaming);
    for (int r = 0; r < rows; r++)  /* each row's own ring */
        ring_products(dim, q + r * q_stride, ring_keys(m, layer, head, r), plan->ring_first,
                      plan->ring_seen, scores + (int64_t)r * count + seen);
    if (layer->relative_t != NULL && plan->needed > 0) {  /* q E^T for the distances seen, added by run */
        const int from = distances - plan->needed;
        products(rows, dim, q, q_stride, layer->relative_t + head * dim * relative_apart + from, relative_apart,
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
                float *keys = ring_keys(m, layer, head, r)
                              + (int64_t)plan->column / LANES * dim * LANES + plan->column % LANES;
                float *values = layer->values + (((int64_t)head * rows + r) * span + plan->column) * dim;
                for (int i = 0; i < dim; i++) {
                    keys[i * LANES] = k[i];
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
