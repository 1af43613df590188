/* The fast WaveRNN's per-sample loop in C: the same fused network and step as the
 * TorchScript `_Sampler` in vocoder/fast.py, with the matmuls written for a batch of a
 * few folds so that each fp16 weight, once loaded and widened, serves every fold.
 *
 * Weights are stored in fp16 and widened to fp32 (F16C); products and sums are fp32, as
 * in fbgemm's fp16 path. A matrix (in K, out N) is kept as panels of 16 output columns,
 * each panel K rows of 16 halves in a row, so one panel (K * 32 bytes: 16 KB for K = 513)
 * stays in the L1 cache while every fold's row runs over it.
 *
 * x86-64 with AVX2, FMA and F16C only: `dfa_supported` says whether this CPU has them,
 * and vocoder/native/__init__.py falls back to the TorchScript loop where it has not.
 * Built by vocoder/native/__init__.py with the system's C compiler; no Python headers.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <pthread.h>

#define DFA_ABI_VERSION 3
#define MAX_THREADS 16
#define MAX_ROWS 6   /* rows (folds) per register tile: 6 rows x 16 columns = 12 accumulators */

int dfa_abi_version(void) { return DFA_ABI_VERSION; }

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define TARGET __attribute__((target("avx2,fma,f16c")))
#define INLINE static inline __attribute__((always_inline))

int dfa_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

typedef struct {
    int k, n, panels;   /* in, out, ceil(out / 16) */
    uint16_t *w;        /* panels x k x 16 halves, 64-byte aligned; columns past n are zero */
} Mat;

typedef struct {
    int rnn, fc, classes, width;
    Mat m1, m2, mf1, mf2, m3;
    float *b3, *v1rz, *v1n, *table;  /* (classes), (2 rnn), (rnn), (classes) */
} Model;

static void *aligned(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
    return p;
}

/* Pack w (k x n, row-major fp16 bits) into panels. */
static int mat_init(Mat *m, const uint16_t *w, int k, int n) {
    m->k = k; m->n = n; m->panels = (n + 15) / 16;
    size_t size = (size_t)m->panels * k * 16 * sizeof(uint16_t);
    m->w = aligned(size);
    if (!m->w) return -1;
    memset(m->w, 0, size);
    for (int p = 0; p < m->panels; p++)
        for (int r = 0; r < k; r++)
            for (int c = 0; c < 16 && 16 * p + c < n; c++)
                m->w[((size_t)p * k + r) * 16 + c] = w[(size_t)r * n + 16 * p + c];
    return 0;
}

static void mat_free(Mat *m) { free(m->w); m->w = NULL; }

static float *copy_floats(const float *src, int n) {
    float *dst = aligned((size_t)n * sizeof(float));
    if (dst) memcpy(dst, src, (size_t)n * sizeof(float));
    return dst;
}

void dfa_free(void *handle) {
    Model *md = handle;
    if (!md) return;
    mat_free(&md->m1); mat_free(&md->m2); mat_free(&md->mf1); mat_free(&md->mf2); mat_free(&md->m3);
    free(md->b3); free(md->v1rz); free(md->v1n); free(md->table);
    free(md);
}

/* Weights as `FastWaveRNN` fuses them, fp16 bits row-major (in, out): w1 (rnn + 1, 6 rnn),
 * w2 (rnn, 3 rnn) (the zero row of h2z's padding left out), wf1 (rnn + 1, fc), wf2 (fc, fc),
 * w3 (fc, classes); float32 b3, v1rz, v1n, table. NULL if out of memory. */
void *dfa_new(int rnn, int fc, int classes, const uint16_t *w1, const uint16_t *w2, const uint16_t *wf1,
              const uint16_t *wf2, const uint16_t *w3, const float *b3, const float *v1rz, const float *v1n,
              const float *table) {
    Model *md = calloc(1, sizeof(Model));
    if (!md) return NULL;
    md->rnn = rnn; md->fc = fc; md->classes = classes; md->width = 8 * rnn + 2 * fc;
    int bad = mat_init(&md->m1, w1, rnn + 1, 6 * rnn) | mat_init(&md->m2, w2, rnn, 3 * rnn)
            | mat_init(&md->mf1, wf1, rnn + 1, fc) | mat_init(&md->mf2, wf2, fc, fc)
            | mat_init(&md->m3, w3, fc, classes);
    md->b3 = copy_floats(b3, classes); md->v1rz = copy_floats(v1rz, 2 * rnn);
    md->v1n = copy_floats(v1n, rnn); md->table = copy_floats(table, classes);
    if (bad || !md->b3 || !md->v1rz || !md->v1n || !md->table) { dfa_free(md); return NULL; }
    return md;
}

/* ---- out = base + x @ W over rows --------------------------------------------------- */

/* One tile: `rows` rows (<= MAX_ROWS, a constant at each call) against one panel of k x 16
 * weights. out/base rows are `ldo`/`ldb` apart (ldb 0: one base row for all), `cols` (<= 16)
 * columns valid. The accumulators are named variables, not an array: GCC keeps those in
 * registers (an array of them went through the stack on every step). */
#define TILE_ROW(r) \
    if (rows > r) { \
        __m256 b = _mm256_broadcast_ss(x + (size_t)(r) * ldx + i); \
        a##r##0 = _mm256_fmadd_ps(w0, b, a##r##0); \
        a##r##1 = _mm256_fmadd_ps(w1, b, a##r##1); \
    }
#define TILE_STORE(r) \
    if (rows > r) store_row(out + (size_t)(r) * ldo, base ? base + (size_t)(r) * ldb : NULL, a##r##0, a##r##1, cols);

INLINE TARGET void store_row_plain(float *o, __m256 lo, __m256 hi, int cols) {
    if (cols == 16) {
        _mm256_storeu_ps(o, lo);
        _mm256_storeu_ps(o + 8, hi);
    } else {
        float tmp[16];
        _mm256_storeu_ps(tmp, lo);
        _mm256_storeu_ps(tmp + 8, hi);
        for (int c = 0; c < cols; c++) o[c] = tmp[c];
    }
}

INLINE TARGET void store_row(float *o, const float *b, __m256 lo, __m256 hi, int cols) {
    if (!b) {
        store_row_plain(o, lo, hi, cols);
    } else if (cols == 16) {
        _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(b), lo));
        _mm256_storeu_ps(o + 8, _mm256_add_ps(_mm256_loadu_ps(b + 8), hi));
    } else {
        float tmp[16];
        _mm256_storeu_ps(tmp, lo);
        _mm256_storeu_ps(tmp + 8, hi);
        for (int c = 0; c < cols; c++) o[c] = b[c] + tmp[c];
    }
}

INLINE TARGET void tile(const uint16_t *p, int k, const float *x, int ldx, float *out, int ldo,
                        const float *base, int ldb, const int rows, int cols) {
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00;
    __m256 a30 = a00, a31 = a00, a40 = a00, a41 = a00, a50 = a00, a51 = a00;
    for (int i = 0; i < k; i++) {
        __m256 w0 = _mm256_cvtph_ps(_mm_load_si128((const __m128i *)(p + 16 * (size_t)i)));
        __m256 w1 = _mm256_cvtph_ps(_mm_load_si128((const __m128i *)(p + 16 * (size_t)i + 8)));
        TILE_ROW(0) TILE_ROW(1) TILE_ROW(2) TILE_ROW(3) TILE_ROW(4) TILE_ROW(5)
    }
    TILE_STORE(0) TILE_STORE(1) TILE_STORE(2) TILE_STORE(3) TILE_STORE(4) TILE_STORE(5)
}

/* One or two rows: too few independent sums to hide the FMA latency, so the k range is
 * dealt round-robin to four pairs of accumulators, added at the end. */
INLINE TARGET __m256 widen(const uint16_t *p) { return _mm256_cvtph_ps(_mm_load_si128((const __m128i *)p)); }

INLINE TARGET void tile_narrow(const uint16_t *p, int k, const float *x, int ldx, float *out, int ldo,
                               const float *base, int ldb, const int rows, int cols) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
    int i = 0;
    if (rows == 1) {
        for (; i + 4 <= k; i += 4) {
            const uint16_t *q = p + 16 * (size_t)i;
            s0 = _mm256_fmadd_ps(widen(q), _mm256_broadcast_ss(x + i), s0);
            s1 = _mm256_fmadd_ps(widen(q + 8), _mm256_broadcast_ss(x + i), s1);
            s2 = _mm256_fmadd_ps(widen(q + 16), _mm256_broadcast_ss(x + i + 1), s2);
            s3 = _mm256_fmadd_ps(widen(q + 24), _mm256_broadcast_ss(x + i + 1), s3);
            s4 = _mm256_fmadd_ps(widen(q + 32), _mm256_broadcast_ss(x + i + 2), s4);
            s5 = _mm256_fmadd_ps(widen(q + 40), _mm256_broadcast_ss(x + i + 2), s5);
            s6 = _mm256_fmadd_ps(widen(q + 48), _mm256_broadcast_ss(x + i + 3), s6);
            s7 = _mm256_fmadd_ps(widen(q + 56), _mm256_broadcast_ss(x + i + 3), s7);
        }
        for (; i < k; i++) {
            const uint16_t *q = p + 16 * (size_t)i;
            s0 = _mm256_fmadd_ps(widen(q), _mm256_broadcast_ss(x + i), s0);
            s1 = _mm256_fmadd_ps(widen(q + 8), _mm256_broadcast_ss(x + i), s1);
        }
        store_row(out, base, _mm256_add_ps(_mm256_add_ps(s0, s2), _mm256_add_ps(s4, s6)),
                  _mm256_add_ps(_mm256_add_ps(s1, s3), _mm256_add_ps(s5, s7)), cols);
    } else {  /* two rows: row 0 in s0-s3, row 1 in s4-s7, k even/odd */
        const float *y = x + ldx;
        for (; i + 2 <= k; i += 2) {
            const uint16_t *q = p + 16 * (size_t)i;
            __m256 w0 = widen(q), w1 = widen(q + 8), w2 = widen(q + 16), w3 = widen(q + 24);
            __m256 b0 = _mm256_broadcast_ss(x + i), b1 = _mm256_broadcast_ss(x + i + 1);
            __m256 c0 = _mm256_broadcast_ss(y + i), c1 = _mm256_broadcast_ss(y + i + 1);
            s0 = _mm256_fmadd_ps(w0, b0, s0); s1 = _mm256_fmadd_ps(w1, b0, s1);
            s2 = _mm256_fmadd_ps(w2, b1, s2); s3 = _mm256_fmadd_ps(w3, b1, s3);
            s4 = _mm256_fmadd_ps(w0, c0, s4); s5 = _mm256_fmadd_ps(w1, c0, s5);
            s6 = _mm256_fmadd_ps(w2, c1, s6); s7 = _mm256_fmadd_ps(w3, c1, s7);
        }
        for (; i < k; i++) {
            const uint16_t *q = p + 16 * (size_t)i;
            __m256 w0 = widen(q), w1 = widen(q + 8);
            __m256 b0 = _mm256_broadcast_ss(x + i), c0 = _mm256_broadcast_ss(y + i);
            s0 = _mm256_fmadd_ps(w0, b0, s0); s1 = _mm256_fmadd_ps(w1, b0, s1);
            s4 = _mm256_fmadd_ps(w0, c0, s4); s5 = _mm256_fmadd_ps(w1, c0, s5);
        }
        store_row(out, base, _mm256_add_ps(s0, s2), _mm256_add_ps(s1, s3), cols);
        store_row(out + ldo, base ? base + ldb : NULL, _mm256_add_ps(s4, s6), _mm256_add_ps(s5, s7), cols);
    }
}

/* out[r, :] = base[r, :] + x[r, :k] @ W for r < m. base == out accumulates; base NULL: the product alone. Panel by panel, so
 * that a panel (k x 16 halves: 16 KB for k = 513) stays in L1 while every row runs over it. */
static TARGET void matmul(const Mat *w, const float *x, int ldx, int m, float *out, int ldo,
                          const float *base, int ldb) {
    for (int p = 0; p < w->panels; p++) {
        int c0 = 16 * p, cols = w->n - c0 < 16 ? w->n - c0 : 16, r = 0;
        const uint16_t *panel = w->w + (size_t)p * w->k * 16;
        /* Tiles of MAX_ROWS rows; the remainder in one tile of its own size. */
        for (; r + MAX_ROWS <= m; r += MAX_ROWS)
            tile(panel, w->k, x + (size_t)r * ldx, ldx, out + (size_t)r * ldo + c0, ldo,
                 base ? base + (size_t)r * ldb + c0 : NULL, ldb, MAX_ROWS, cols);
        const float *xr = x + (size_t)r * ldx, *br = base ? base + (size_t)r * ldb + c0 : NULL;
        float *orow = out + (size_t)r * ldo + c0;
        switch (m - r) {  /* constant row counts, so each tile's loops unroll */
            case 5: tile(panel, w->k, xr, ldx, orow, ldo, br, ldb, 5, cols); break;
            case 4: tile(panel, w->k, xr, ldx, orow, ldo, br, ldb, 4, cols); break;
            case 3: tile(panel, w->k, xr, ldx, orow, ldo, br, ldb, 3, cols); break;
            case 2: tile_narrow(panel, w->k, xr, ldx, orow, ldo, br, ldb, 2, cols); break;
            case 1: tile_narrow(panel, w->k, xr, ldx, orow, ldo, br, ldb, 1, cols); break;
            default: break;
        }
    }
}

/* ---- element-wise ------------------------------------------------------------------- */

/* exp(x) for x in [-87, 88]: 2^n * p(r), r = x - n ln 2, |r| <= ln 2 / 2; Cephes' expf
 * polynomial (relative error about 1e-7). */
INLINE TARGET __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

INLINE TARGET __m256 sigmoid8(__m256 x) {
    __m256 one = _mm256_set1_ps(1.0f);
    return _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

/* tanh(x) = 1 - 2 / (exp(2x) + 1) */
INLINE TARGET __m256 tanh8(__m256 x) {
    __m256 one = _mm256_set1_ps(1.0f);
    __m256 e = exp8(_mm256_add_ps(x, x));
    return _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, one)));
}

/* Sizes are multiples of 8 (checked in dfa_run's caller); the remainder is handled anyway. */
static TARGET void sigmoid_inplace(float *a, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(a + i, sigmoid8(_mm256_loadu_ps(a + i)));
    for (; i < n; i++) a[i] = 1.0f / (1.0f + expf(-a[i]));
}

/* One GRU's last stage for a row: n = tanh(pn + r * gn); h = n + z * (h - n). */
static TARGET void gru_update(const float *pn, const float *r, const float *gn, const float *z, float *h, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 t = tanh8(_mm256_fmadd_ps(_mm256_loadu_ps(r + i), _mm256_loadu_ps(gn + i), _mm256_loadu_ps(pn + i)));
        __m256 hv = _mm256_loadu_ps(h + i);
        _mm256_storeu_ps(h + i, _mm256_fmadd_ps(_mm256_loadu_ps(z + i), _mm256_sub_ps(hv, t), t));
    }
    for (; i < n; i++) {
        float t = tanhf(pn[i] + r[i] * gn[i]);
        h[i] = t + z[i] * (h[i] - t);
    }
}

static TARGET void relu_inplace(float *a, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(a + i, _mm256_max_ps(_mm256_loadu_ps(a + i), _mm256_setzero_ps()));
    for (; i < n; i++) a[i] = a[i] > 0 ? a[i] : 0;
}

/* The first class whose cumulative softmax probability reaches u (in [0, 1)) of the total:
 * what torch.searchsorted(cumsum(softmax(logits)), u * total) picks. `cdf` is scratch. */
static TARGET int sample_class(const float *logits, int n, float u, float *cdf) {
    __m256 mx = _mm256_set1_ps(-INFINITY);
    int i = 0;
    for (; i + 8 <= n; i += 8) mx = _mm256_max_ps(mx, _mm256_loadu_ps(logits + i));
    float lane[8], top = -INFINITY;
    _mm256_storeu_ps(lane, mx);
    for (int j = 0; j < 8; j++) top = lane[j] > top ? lane[j] : top;
    for (; i < n; i++) top = logits[i] > top ? logits[i] : top;
    __m256 t = _mm256_set1_ps(top);
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(cdf + i, exp8(_mm256_sub_ps(_mm256_loadu_ps(logits + i), t)));
    for (; i < n; i++) cdf[i] = expf(logits[i] - top);
    float sum = 0;
    for (i = 0; i < n; i++) { sum += cdf[i]; cdf[i] = sum; }
    float target = u * sum;
    int lo = 0, hi = n - 1;  /* first i with cdf[i] >= target; the last class if none (NaN) */
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (cdf[mid] >= target) hi = mid; else lo = mid + 1;
    }
    return lo;
}

/* ---- the loop ----------------------------------------------------------------------- */

/* out (w) = sum_t coef[t] * rows[t * w + :], t < taps: a period's inputs from the few mel
 * frames and frame constants near its sample (vocoder/fast.py's `_run_wave` builds both). */
static TARGET void prefill(float *out, const float *coef, const float *rows, int taps, int w) {
    int c = 0;
    for (; c + 8 <= w; c += 8) {
        __m256 s = _mm256_setzero_ps();
        for (int t = 0; t < taps; t++)
            s = _mm256_fmadd_ps(_mm256_set1_ps(coef[t]), _mm256_loadu_ps(rows + (size_t)t * w + c), s);
        _mm256_storeu_ps(out + c, s);
    }
    for (; c < w; c++) {
        float s = 0;
        for (int t = 0; t < taps; t++) s += coef[t] * rows[(size_t)t * w + c];
        out[c] = s;
    }
}

static TARGET void add_inplace(float *a, const float *b, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(a + i, _mm256_add_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
    for (; i < n; i++) a[i] += b[i];
}

size_t dfa_scratch_floats(const void *handle, int b) {
    const Model *md = handle;
    return (size_t)b * (2 * md->width + 6 * md->rnn + md->rnn + 1 + 2 * md->fc + md->classes) + md->classes;
}

/* Run `steps` samples of `b` folds: the step of vocoder/fast.py's `_Sampler` (inverse-CDF
 * sampling), with each step's period of `width` inputs made when it is needed rather than
 * for the whole chunk before it (a chunk's periods would take megabytes of cache):
 *   coef     coef[f * ldcf + j * taps + t]: step j's weight of row t, for j < steps
 *   rows     rows[f * taps * width + t * width + c]: fold f's rows (mel frames, frame constants)
 *   carry    (b, width): what the last call's final step added to the period after it; in/out
 *   uniform  uniform[j * ldu + f]: step j, fold f, in [0, 1)
 *   classes  classes[j * ldc + f] (int64): out
 *   h1x      (b, rnn + 1) = [h1 | x], h2 (b, rnn): in and out
 *   scratch  dfa_scratch_floats(b) floats
 */
TARGET void dfa_run(const void *handle, const float *coef, long ldcf, const float *rows, int taps, float *carry,
                    const float *uniform, long ldu, int64_t *classes, long ldc, float *h1x, float *h2,
                    float *scratch, int b, int steps) {
    const Model *md = handle;
    const int R = md->rnn, FC = md->fc, NC = md->classes, W = md->width;
    const long ldp = 2L * W;  /* per fold two periods: this step's and the next one's */
    float *periods = scratch, *g1 = periods + (size_t)b * ldp, *sx = g1 + (size_t)b * 6 * R;
    float *z1 = sx + (size_t)b * (R + 1), *z2 = z1 + (size_t)b * FC;
    float *logits = z2 + (size_t)b * FC, *cdf = logits + (size_t)b * NC;
    const int seg_rz1 = 0, seg_gh1n = 2 * R, seg_pn = 3 * R, seg_s = 4 * R, seg_f1 = 4 * R + FC;
    const int seg_rz2 = 5 * R + 2 * FC;
    for (int f = 0; f < b; f++) {
        float *p = periods + f * ldp;
        prefill(p, coef + f * ldcf, rows + (size_t)f * taps * W, taps, W);
        add_inplace(p, carry + (size_t)f * W, W);
    }
    for (int j = 0; j < steps; j++) {
        float *cur = periods + (j & 1) * W, *next = periods + ((j + 1) & 1) * W;
        for (int f = 0; f < b; f++) {  /* the next period's inputs; the last one only collects */
            float *p = next + f * ldp;
            if (j + 1 < steps) prefill(p, coef + f * ldcf + (long)(j + 1) * taps, rows + (size_t)f * taps * W, taps, W);
            else memset(p, 0, (size_t)W * sizeof(float));
        }
        /* rnn1: gates from the period plus x's column; h1 updated in place. */
        for (int f = 0; f < b; f++) {
            float *a = cur + f * ldp;
            float *h = h1x + (size_t)f * (R + 1);
            __m256 xv = _mm256_set1_ps(h[R]);
            for (int i = 0; i < 2 * R; i += 8) {
                float *g = a + seg_rz1 + i;
                _mm256_storeu_ps(g, sigmoid8(_mm256_fmadd_ps(xv, _mm256_loadu_ps(md->v1rz + i), _mm256_loadu_ps(g))));
            }
            for (int i = 0; i < R; i += 8) {  /* pn += x v1n, then the shared GRU update */
                float *g = a + seg_pn + i;
                _mm256_storeu_ps(g, _mm256_fmadd_ps(xv, _mm256_loadu_ps(md->v1n + i), _mm256_loadu_ps(g)));
            }
            gru_update(a + seg_pn, a + seg_rz1, a + seg_gh1n, a + seg_rz1 + R, h, R);
        }
        /* h1x feeds rnn2's input gates now and rnn1's hidden gates next step: one matmul,
         * its halves added to this period's [rz2, gi2n] and the next one's [rz1, gh1n]. */
        matmul(&md->m1, h1x, R + 1, b, g1, 6 * R, NULL, 0);
        for (int f = 0; f < b; f++) {
            float *a = cur + f * ldp;
            add_inplace(a + seg_rz2, g1 + (size_t)f * 6 * R, 3 * R);
            add_inplace(next + f * ldp, g1 + (size_t)f * 6 * R + 3 * R, 3 * R);
            sigmoid_inplace(a + seg_rz2, 2 * R);
            /* n2 = tanh(gi2n + r2 * gh2n), gh2n sits just before rz2 */
            gru_update(a + seg_rz2 + 2 * R, a + seg_rz2, a + seg_rz2 - R, a + seg_rz2 + R, h2 + (size_t)f * R, R);
        }
        /* h2 feeds rnn2's hidden gates next step: [gh2n, rz2] of the next period. */
        matmul(&md->m2, h2, R, b, next + seg_rz2 - R, ldp, next + seg_rz2 - R, ldp);
        for (int f = 0; f < b; f++) {  /* sx = [h1 + h2 | x] */
            const float *p1 = h1x + (size_t)f * (R + 1), *p2 = h2 + (size_t)f * R;
            float *o = sx + (size_t)f * (R + 1);
            for (int i = 0; i < R; i++) o[i] = p1[i] + p2[i];
            o[R] = p1[R];
        }
        matmul(&md->mf1, sx, R + 1, b, z1, FC, cur + seg_f1, ldp);
        relu_inplace(z1, b * FC);
        matmul(&md->mf2, z1, FC, b, z2, FC, cur + seg_s, ldp);
        relu_inplace(z2, b * FC);
        matmul(&md->m3, z2, FC, b, logits, NC, md->b3, 0);
        for (int f = 0; f < b; f++) {
            int c = sample_class(logits + (size_t)f * NC, NC, uniform[(long)j * ldu + f], cdf);
            classes[(long)j * ldc + f] = c;
            h1x[(size_t)f * (R + 1) + R] = md->table[c];
        }
    }
    for (int f = 0; f < b; f++)  /* what the final step added to the period after the chunk */
        memcpy(carry + (size_t)f * W, periods + f * ldp + (steps & 1) * W, (size_t)W * sizeof(float));
}

/* One dfa_run call, for dfa_run_many; the fields are dfa_run's arguments. */
typedef struct {
    const float *coef;
    long ldcf;
    const float *rows;
    int taps;
    float *carry;
    const float *uniform;
    long ldu;
    int64_t *classes;
    long ldc;
    float *h1x, *h2, *scratch;
    int b, steps;
} RunArgs;

typedef struct {
    const void *handle;
    const RunArgs *args;
} RunJob;

static void *run_job(void *arg) {
    const RunJob *j = arg;
    const RunArgs *a = j->args;
    dfa_run(j->handle, a->coef, a->ldcf, a->rows, a->taps, a->carry, a->uniform, a->ldu, a->classes, a->ldc,
            a->h1x, a->h2, a->scratch, a->b, a->steps);
    return NULL;
}

/* `n` independent dfa_run calls (groups of folds with buffers of their own) side by side: the
 * first on this thread, each other one on a thread started for it (one that cannot be started
 * runs here afterwards). Started from C, the threads begin within microseconds of each other;
 * from Python they waited for the interpreter lock and a pool's wake-up (measured: a few
 * milliseconds of a 30 ms chunk). */
void dfa_run_many(const void *handle, const RunArgs *args, int n) {
    pthread_t th[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    RunJob jobs[MAX_THREADS];
    int spread = n < MAX_THREADS ? n : MAX_THREADS;  /* calls past MAX_THREADS run here, in turn */
    for (int i = 0; i < spread; i++) jobs[i] = (RunJob){handle, args + i};
    for (int i = 1; i < spread; i++) started[i] = pthread_create(&th[i], NULL, run_job, &jobs[i]) == 0;
    if (n > 0) run_job(&jobs[0]);
    for (int i = spread; i < n; i++) {
        RunJob extra = {handle, args + i};
        run_job(&extra);
    }
    for (int i = 1; i < spread; i++) {
        if (started[i]) pthread_join(th[i], NULL);
        else run_job(&jobs[i]);
    }
}

/* out (m, n) = x (m, k) @ w for tests: w (k, n) fp16 bits. Returns 0, or -1 if out of memory. */
TARGET int dfa_matmul(const uint16_t *w, int k, int n, const float *x, int m, float *out) {
    Mat mat;
    if (mat_init(&mat, w, k, n) != 0) { mat_free(&mat); return -1; }
    matmul(&mat, x, k, m, out, n, NULL, 0);
    mat_free(&mat);
    return 0;
}

#else  /* not x86-64: the TorchScript loop is used instead */
int dfa_supported(void) { return 0; }
#endif
