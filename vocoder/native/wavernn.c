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

#define DFA_ABI_VERSION 5
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

/* An int8 matrix: one scale per output column, products summed exactly in int32. Panels
 * of 16 columns, in groups of 4 panels (64 columns, zero past n); in a panel, each group of
 * 4 inputs is 64 bytes: column c's 4 weights at 4c (what vpdpbusd multiplies with 4 input
 * bytes broadcast to every column). */
typedef struct {
    int k, kp, n, panels;   /* in, in rounded up to 4, out, panels (a multiple of 4) */
    int8_t *w;              /* panels x (kp / 4) x 64 bytes */
    float *scale;           /* (16 panels): w = scale * w8 */
    int32_t *colsum;        /* (16 panels): sum over k of w8, for the activations' offset of 128 */
} Mat8;

enum { KERNEL_AUTO = 0, KERNEL_AVX2 = 1, KERNEL_AVXVNNI = 2, KERNEL_AVX512VNNI = 3 };

typedef struct {
    int rnn, fc, classes, width;
    int int8, kernel;  /* int8: the Mat8s are used (by `kernel`), else the fp16 Mats */
    Mat m1, m2, mf1, mf2, m3;
    Mat8 q1, q2, qf1, qf2, q3;
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

/* Pack w8 (k x n, row-major int8) and its column scales. */
static int mat8_init(Mat8 *m, const int8_t *w, const float *scale, int k, int n) {
    m->k = k; m->kp = (k + 3) / 4 * 4; m->n = n; m->panels = (n + 63) / 64 * 4;
    size_t cols = (size_t)m->panels * 16, size = cols * m->kp;
    m->w = aligned(size);
    m->scale = aligned(cols * sizeof(float));
    m->colsum = aligned(cols * sizeof(int32_t));
    if (!m->w || !m->scale || !m->colsum) return -1;
    memset(m->w, 0, size);
    memset(m->scale, 0, cols * sizeof(float));
    memset(m->colsum, 0, cols * sizeof(int32_t));
    for (int c = 0; c < n; c++) {
        int32_t sum = 0;
        for (int r = 0; r < k; r++) {
            int8_t v = w[(size_t)r * n + c];
            m->w[((size_t)(c / 16) * (m->kp / 4) + r / 4) * 64 + (c % 16) * 4 + r % 4] = v;
            sum += v;
        }
        m->scale[c] = scale[c];
        m->colsum[c] = sum;
    }
    return 0;
}

static void mat8_free(Mat8 *m) {
    free(m->w); free(m->scale); free(m->colsum);
    m->w = NULL; m->scale = NULL; m->colsum = NULL;
}

void dfa_free(void *handle) {
    Model *md = handle;
    if (!md) return;
    mat_free(&md->m1); mat_free(&md->m2); mat_free(&md->mf1); mat_free(&md->mf2); mat_free(&md->m3);
    mat8_free(&md->q1); mat8_free(&md->q2); mat8_free(&md->qf1); mat8_free(&md->qf2); mat8_free(&md->q3);
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

static int kernel_supported(int kernel) {
    __builtin_cpu_init();
    switch (kernel) {
        case KERNEL_AVX2: return 1;
        case KERNEL_AVXVNNI: return __builtin_cpu_supports("avxvnni");
        case KERNEL_AVX512VNNI:
            return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
                   && __builtin_cpu_supports("avx512vnni");
        default: return 0;
    }
}

/* The int8 kernel `dfa_new8` picks for `kernel` 0 (the fastest this CPU has); 0 if `kernel` is not supported. */
int dfa_int8_kernel(int kernel) {
    if (kernel == KERNEL_AUTO) {
        if (kernel_supported(KERNEL_AVX512VNNI)) return KERNEL_AVX512VNNI;
        if (kernel_supported(KERNEL_AVXVNNI)) return KERNEL_AVXVNNI;
        return KERNEL_AVX2;
    }
    return kernel_supported(kernel) ? kernel : 0;
}

/* As dfa_new with int8 weights: w8 (in, out) row-major and one float scale per output column
 * (w = scale * w8) for each matrix. `kernel`: 0 the fastest this CPU has, or one of
 * KERNEL_*; every kernel gives the same bits (the sums are exact integers). NULL if out of
 * memory or the kernel is not supported. */
void *dfa_new8(int rnn, int fc, int classes, int kernel, const int8_t *w1, const int8_t *w2, const int8_t *wf1,
               const int8_t *wf2, const int8_t *w3, const float *s1, const float *s2, const float *sf1,
               const float *sf2, const float *s3, const float *b3, const float *v1rz, const float *v1n,
               const float *table) {
    kernel = dfa_int8_kernel(kernel);
    if (!kernel) return NULL;
    Model *md = calloc(1, sizeof(Model));
    if (!md) return NULL;
    md->rnn = rnn; md->fc = fc; md->classes = classes; md->width = 8 * rnn + 2 * fc;
    md->int8 = 1; md->kernel = kernel;
    int bad = mat8_init(&md->q1, w1, s1, rnn + 1, 6 * rnn) | mat8_init(&md->q2, w2, s2, rnn, 3 * rnn)
            | mat8_init(&md->qf1, wf1, sf1, rnn + 1, fc) | mat8_init(&md->qf2, wf2, sf2, fc, fc)
            | mat8_init(&md->q3, w3, s3, fc, classes);
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

/* ---- int8: out = base + x @ W, exact integer sums ----------------------------------- */

/* Each row of x is quantised on its own, to bytes q = round(x / s) + offset of at most 127:
 * a row with no negative value to 127 steps, s = max x / 127, offset 0 (ReLU outputs lose
 * nothing); any other row to 63 steps each side, s = max |x| / 63, offset 64. Weights are
 * int8 (|w| <= 127). The kernels sum q * w8 exactly in int32 (at most 516 * 127 * 127 < 2^24,
 * so the float conversion is exact too), and `finish16` removes the offset (offset * the
 * column's sum of weights) and scales. Quantising and finishing are shared code, so every
 * kernel gives the same bits: AVX-512 VNNI, AVX-VNNI, or plain AVX2 (below), whose 16-bit
 * pair sums need q <= 127 to stay exact (2 * 127 * 127 < 2^15) and are the reason for 7 bits. */
#define TARGET_VNNI512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vnni")))
#define TARGET_VNNI256 __attribute__((target("avx2,fma,f16c,avxvnni")))
#define ROWS8 6   /* rows per tile: 6 rows x 4 panels = 24 zmm accumulators */

/* q[0:kp] for row x[0:k] (the padding: its weights are zero); returns s (0 for a zero or NaN
 * row, whose products then count for nothing) and sets *offset. */
static TARGET float quantize_row(const float *x, int k, int kp, uint8_t *q, int *offset) {
    __m256 sign = _mm256_set1_ps(-0.0f), mx = _mm256_setzero_ps(), mn = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= k; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, v));
        mn = _mm256_min_ps(mn, v);
    }
    float lane[8], low[8], amax = 0, amin = 0;
    _mm256_storeu_ps(lane, mx);
    _mm256_storeu_ps(low, mn);
    for (int j = 0; j < 8; j++) {
        amax = lane[j] > amax ? lane[j] : amax;
        amin = low[j] < amin ? low[j] : amin;
    }
    for (; i < k; i++) {
        float a = fabsf(x[i]);
        amax = a > amax ? a : amax;
        amin = x[i] < amin ? x[i] : amin;
    }
    if (!(amax > 0)) {  /* zero (or NaN) row */
        memset(q, 0, (size_t)kp);
        *offset = 0;
        return 0;
    }
    const int off = amin < 0 ? 64 : 0, steps = amin < 0 ? 63 : 127;
    *offset = off;
    const float inv = (float)steps / amax;
    const __m256 vinv = _mm256_set1_ps(inv);
    const __m256i lo = _mm256_set1_epi32(-steps), hi = _mm256_set1_epi32(steps), voff = _mm256_set1_epi32(off);
    const __m256i pick = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                          0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    for (i = 0; i + 8 <= k; i += 8) {  /* cvtps rounds half to even, as nearbyintf below */
        __m256i v = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i), vinv));
        v = _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(v, lo), hi), voff);
        v = _mm256_shuffle_epi8(v, pick);
        int32_t a = _mm256_extract_epi32(v, 0), b = _mm256_extract_epi32(v, 4);
        memcpy(q + i, &a, 4);
        memcpy(q + i + 4, &b, 4);
    }
    for (; i < k; i++) {
        float v = nearbyintf(x[i] * inv);
        v = v > steps ? steps : (v < -steps ? -steps : v);
        q[i] = (uint8_t)((int)v + off);
    }
    for (; i < kp; i++) q[i] = (uint8_t)off;
    return amax / (float)steps;
}

/* o[c] = b[c] + (dot[c] - offset colsum[c]) * scale[c] * s for c < cols (b NULL: no base). */
static TARGET void finish16(const int32_t *dot, const Mat8 *m, int c0, int cols, float s, int offset, float *o,
                            const float *b) {
    __m256 sv = _mm256_set1_ps(s), v[2];
    const __m256i off = _mm256_set1_epi32(offset);
    for (int h = 0; h < 2; h++) {
        __m256i d = _mm256_sub_epi32(_mm256_loadu_si256((const __m256i *)(dot + 8 * h)),
                                     _mm256_mullo_epi32(_mm256_loadu_si256((const __m256i *)(m->colsum + c0 + 8 * h)), off));
        v[h] = _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(d), _mm256_loadu_ps(m->scale + c0 + 8 * h)), sv);
    }
    store_row(o, b, v[0], v[1], cols);
}

INLINE int32_t four_bytes(const uint8_t *q) {
    int32_t v;
    memcpy(&v, q, 4);
    return v;
}

/* dots[r * 64 + c] = sum_i q[r][i] * w[i][c] for 4 panels (64 columns) from `panel`. */
#define V512_ROW(r) \
    if (rows > r) { \
        __m512i xb = _mm512_set1_epi32(four_bytes(q + (size_t)(r) * ldq + 4 * (size_t)i)); \
        a##r##0 = _mm512_dpbusd_epi32(a##r##0, xb, w0); a##r##1 = _mm512_dpbusd_epi32(a##r##1, xb, w1); \
        a##r##2 = _mm512_dpbusd_epi32(a##r##2, xb, w2); a##r##3 = _mm512_dpbusd_epi32(a##r##3, xb, w3); \
    }
#define V512_STORE(r) \
    if (rows > r) { \
        _mm512_storeu_si512(dots + (r) * 64, a##r##0); _mm512_storeu_si512(dots + (r) * 64 + 16, a##r##1); \
        _mm512_storeu_si512(dots + (r) * 64 + 32, a##r##2); _mm512_storeu_si512(dots + (r) * 64 + 48, a##r##3); \
    }

INLINE TARGET_VNNI512 void dots_vnni512_rows(const int8_t *panel, size_t stride, int groups, const uint8_t *q,
                                              int ldq, int32_t *dots, const int rows) {
    __m512i a00 = _mm512_setzero_si512(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00;
    __m512i a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00, a31 = a00, a32 = a00, a33 = a00;
    __m512i a40 = a00, a41 = a00, a42 = a00, a43 = a00, a50 = a00, a51 = a00, a52 = a00, a53 = a00;
    for (int i = 0; i < groups; i++) {
        const int8_t *p = panel + 64 * (size_t)i;
        __m512i w0 = _mm512_load_si512(p), w1 = _mm512_load_si512(p + stride);
        __m512i w2 = _mm512_load_si512(p + 2 * stride), w3 = _mm512_load_si512(p + 3 * stride);
        V512_ROW(0) V512_ROW(1) V512_ROW(2) V512_ROW(3) V512_ROW(4) V512_ROW(5)
    }
    V512_STORE(0) V512_STORE(1) V512_STORE(2) V512_STORE(3) V512_STORE(4) V512_STORE(5)
}

static TARGET_VNNI512 void dots_vnni512(const int8_t *panel, size_t stride, int groups, const uint8_t *q, int ldq,
                                        int32_t *dots, int rows) {
    switch (rows) {
        case 6: dots_vnni512_rows(panel, stride, groups, q, ldq, dots, 6); break;
        case 5: dots_vnni512_rows(panel, stride, groups, q, ldq, dots, 5); break;
        case 4: dots_vnni512_rows(panel, stride, groups, q, ldq, dots, 4); break;
        case 3: dots_vnni512_rows(panel, stride, groups, q, ldq, dots, 3); break;
        case 2: dots_vnni512_rows(panel, stride, groups, q, ldq, dots, 2); break;
        default: dots_vnni512_rows(panel, stride, groups, q, ldq, dots, 1); break;
    }
}

/* AVX-VNNI (256-bit): 2 panels (4 ymm of weights) for up to 2 rows at a time. */
INLINE TARGET_VNNI256 void dots_vnni256_pair(const int8_t *panel, size_t stride, int groups, const uint8_t *q,
                                             int ldq, int32_t *dots, const int rows) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    for (int i = 0; i < groups; i++) {
        const int8_t *p = panel + 64 * (size_t)i;
        __m256i w0 = _mm256_load_si256((const __m256i *)p), w1 = _mm256_load_si256((const __m256i *)(p + 32));
        __m256i w2 = _mm256_load_si256((const __m256i *)(p + stride));
        __m256i w3 = _mm256_load_si256((const __m256i *)(p + stride + 32));
        __m256i x = _mm256_set1_epi32(four_bytes(q + 4 * (size_t)i));
        a0 = _mm256_dpbusd_avx_epi32(a0, x, w0); a1 = _mm256_dpbusd_avx_epi32(a1, x, w1);
        a2 = _mm256_dpbusd_avx_epi32(a2, x, w2); a3 = _mm256_dpbusd_avx_epi32(a3, x, w3);
        if (rows > 1) {
            __m256i y = _mm256_set1_epi32(four_bytes(q + ldq + 4 * (size_t)i));
            b0 = _mm256_dpbusd_avx_epi32(b0, y, w0); b1 = _mm256_dpbusd_avx_epi32(b1, y, w1);
            b2 = _mm256_dpbusd_avx_epi32(b2, y, w2); b3 = _mm256_dpbusd_avx_epi32(b3, y, w3);
        }
    }
    _mm256_storeu_si256((__m256i *)dots, a0); _mm256_storeu_si256((__m256i *)(dots + 8), a1);
    _mm256_storeu_si256((__m256i *)(dots + 16), a2); _mm256_storeu_si256((__m256i *)(dots + 24), a3);
    if (rows > 1) {
        _mm256_storeu_si256((__m256i *)(dots + 64), b0); _mm256_storeu_si256((__m256i *)(dots + 72), b1);
        _mm256_storeu_si256((__m256i *)(dots + 80), b2); _mm256_storeu_si256((__m256i *)(dots + 88), b3);
    }
}

static TARGET_VNNI256 void dots_vnni256(const int8_t *panel, size_t stride, int groups, const uint8_t *q, int ldq,
                                        int32_t *dots, int rows) {
    for (int r = 0; r < rows; r += 2)
        for (int h = 0; h < 2; h++) {  /* panels 0-1, then 2-3 */
            const int8_t *p = panel + 2 * (size_t)h * stride;
            if (rows - r > 1) dots_vnni256_pair(p, stride, groups, q + (size_t)r * ldq, ldq, dots + r * 64 + 32 * h, 2);
            else dots_vnni256_pair(p, stride, groups, q + (size_t)r * ldq, ldq, dots + r * 64 + 32 * h, 1);
        }
}

/* Plain AVX2, exact: vpmaddubsw multiplies unsigned bytes (q) by signed ones (w) and adds
 * pairs in 16 bits, saturating; with q <= 127 a pair stays within 2 * 127 * 127 < 2^15, so
 * nothing saturates. vpmaddwd by ones then adds the pairs into each column's int32 sum of 4
 * products: the sums every kernel gives. Up to three rows share each panel's loads. */
#define AVX2_ROW(r) \
    if (rows > r) { \
        __m256i xb = _mm256_set1_epi32(four_bytes(q + (size_t)(r) * ldq + 4 * (size_t)i)); \
        a##r##0 = _mm256_add_epi32(a##r##0, _mm256_madd_epi16(_mm256_maddubs_epi16(xb, w0), ones)); \
        a##r##1 = _mm256_add_epi32(a##r##1, _mm256_madd_epi16(_mm256_maddubs_epi16(xb, w1), ones)); \
    }
#define AVX2_STORE(r) \
    if (rows > r) { \
        _mm256_storeu_si256((__m256i *)(dots + (r) * 64), a##r##0); \
        _mm256_storeu_si256((__m256i *)(dots + (r) * 64 + 8), a##r##1); \
    }

INLINE TARGET void dots_avx2_rows(const int8_t *p, int groups, const uint8_t *q, int ldq, int32_t *dots,
                                  const int rows) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i a00 = _mm256_setzero_si256(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00;
    for (int i = 0; i < groups; i++) {
        const int8_t *w = p + 64 * (size_t)i;  /* columns 0-7, then 8-15, 4 inputs each */
        __m256i w0 = _mm256_load_si256((const __m256i *)w), w1 = _mm256_load_si256((const __m256i *)(w + 32));
        AVX2_ROW(0) AVX2_ROW(1) AVX2_ROW(2)
    }
    AVX2_STORE(0) AVX2_STORE(1) AVX2_STORE(2)
}

static TARGET void dots_avx2(const int8_t *panel, size_t stride, int groups, const uint8_t *q, int ldq,
                             int32_t *dots, int rows) {
    for (int r = 0; r < rows; r += 3)
        for (int j = 0; j < 4; j++) {
            const int8_t *p = panel + (size_t)j * stride;
            const uint8_t *qr = q + (size_t)r * ldq;
            int32_t *d = dots + r * 64 + 16 * j;
            switch (rows - r) {
                case 1: dots_avx2_rows(p, groups, qr, ldq, d, 1); break;
                case 2: dots_avx2_rows(p, groups, qr, ldq, d, 2); break;
                default: dots_avx2_rows(p, groups, qr, ldq, d, 3); break;
            }
        }
}

/* As `matmul` with an int8 matrix. qbuf: m * kp bytes, sx: m floats, qoff: m ints (scratch). */
static TARGET void matmul8(int kernel, const Mat8 *w, const float *x, int ldx, int m, float *out, int ldo,
                           const float *base, int ldb, uint8_t *qbuf, float *sx, int *qoff) {
    int32_t dots[ROWS8 * 64];
    const size_t stride = (size_t)w->kp * 16;  /* bytes per panel */
    const int groups = w->kp / 4;
    for (int r = 0; r < m; r++)
        sx[r] = quantize_row(x + (size_t)r * ldx, w->k, w->kp, qbuf + (size_t)r * w->kp, qoff + r);
    for (int p = 0; p < w->panels; p += 4) {
        const int8_t *panel = w->w + (size_t)p * stride;
        for (int r = 0; r < m; r += ROWS8) {
            int rows = m - r < ROWS8 ? m - r : ROWS8;
            const uint8_t *q = qbuf + (size_t)r * w->kp;
            if (kernel == KERNEL_AVX512VNNI) dots_vnni512(panel, stride, groups, q, w->kp, dots, rows);
            else if (kernel == KERNEL_AVXVNNI) dots_vnni256(panel, stride, groups, q, w->kp, dots, rows);
            else dots_avx2(panel, stride, groups, q, w->kp, dots, rows);
            for (int rr = 0; rr < rows; rr++)
                for (int j = 0; j < 4; j++) {
                    int c0 = 16 * (p + j);
                    if (c0 >= w->n) break;
                    int cols = w->n - c0 < 16 ? w->n - c0 : 16;
                    finish16(dots + rr * 64 + 16 * j, w, c0, cols, sx[r + rr], qoff[r + rr], out + (size_t)(r + rr) * ldo + c0,
                             base ? base + (size_t)(r + rr) * ldb + c0 : NULL);
                }
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

/* Bytes of one quantised row of the widest int8 matrix input. */
static int max_kp(const Model *md) { return ((md->rnn + 1 > md->fc ? md->rnn + 1 : md->fc) + 3) / 4 * 4; }

size_t dfa_scratch_floats(const void *handle, int b) {
    const Model *md = handle;
    size_t q = md->int8 ? (size_t)b * (max_kp(md) / 4 + 2) : 0;  /* quantised rows, scales, offsets */
    return (size_t)b * (2 * md->width + 6 * md->rnn + md->rnn + 1 + 2 * md->fc + md->classes) + md->classes + q;
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
    uint8_t *qbuf = (uint8_t *)(cdf + NC);  /* int8: quantised rows, then their scales and offsets */
    float *qscale = (float *)(qbuf + (md->int8 ? (size_t)b * max_kp(md) : 0));
    int *qoff = (int *)(qscale + b);
    const int kernel = md->kernel;
    /* one matmul of the step, int8 or fp16 */
#define MATMUL(name, ...) \
    (md->int8 ? matmul8(kernel, &md->q##name, __VA_ARGS__, qbuf, qscale, qoff) : matmul(&md->m##name, __VA_ARGS__))
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
        MATMUL(1, h1x, R + 1, b, g1, 6 * R, NULL, 0);
        for (int f = 0; f < b; f++) {
            float *a = cur + f * ldp;
            add_inplace(a + seg_rz2, g1 + (size_t)f * 6 * R, 3 * R);
            add_inplace(next + f * ldp, g1 + (size_t)f * 6 * R + 3 * R, 3 * R);
            sigmoid_inplace(a + seg_rz2, 2 * R);
            /* n2 = tanh(gi2n + r2 * gh2n), gh2n sits just before rz2 */
            gru_update(a + seg_rz2 + 2 * R, a + seg_rz2, a + seg_rz2 - R, a + seg_rz2 + R, h2 + (size_t)f * R, R);
        }
        /* h2 feeds rnn2's hidden gates next step: [gh2n, rz2] of the next period. */
        MATMUL(2, h2, R, b, next + seg_rz2 - R, ldp, next + seg_rz2 - R, ldp);
        for (int f = 0; f < b; f++) {  /* sx = [h1 + h2 | x] */
            const float *p1 = h1x + (size_t)f * (R + 1), *p2 = h2 + (size_t)f * R;
            float *o = sx + (size_t)f * (R + 1);
            for (int i = 0; i < R; i++) o[i] = p1[i] + p2[i];
            o[R] = p1[R];
        }
        MATMUL(f1, sx, R + 1, b, z1, FC, cur + seg_f1, ldp);
        relu_inplace(z1, b * FC);
        MATMUL(f2, z1, FC, b, z2, FC, cur + seg_s, ldp);
        relu_inplace(z2, b * FC);
        MATMUL(3, z2, FC, b, logits, NC, md->b3, 0);
        for (int f = 0; f < b; f++) {
            int c = sample_class(logits + (size_t)f * NC, NC, uniform[(long)j * ldu + f], cdf);
            classes[(long)j * ldc + f] = c;
            h1x[(size_t)f * (R + 1) + R] = md->table[c];
        }
    }
    for (int f = 0; f < b; f++)  /* what the final step added to the period after the chunk */
        memcpy(carry + (size_t)f * W, periods + f * ldp + (steps & 1) * W, (size_t)W * sizeof(float));
#undef MATMUL
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

/* out (m, n) = x (m, k) @ (scale * w8) for tests: w8 (k, n) int8, scale (n), with `kernel` as in
 * dfa_new8. Returns 0, -1 if out of memory, -2 if the kernel is not supported here. */
TARGET int dfa_matmul8(const int8_t *w, const float *scale, int k, int n, const float *x, int m, float *out,
                       int kernel) {
    kernel = dfa_int8_kernel(kernel);
    if (!kernel) return -2;
    Mat8 mat = {0};
    int kp = (k + 3) / 4 * 4;
    uint8_t *q = aligned((size_t)m * kp);
    float *sx = aligned((size_t)m * sizeof(float));
    int *qoff = aligned((size_t)m * sizeof(int));
    int ok = q && sx && qoff && mat8_init(&mat, w, scale, k, n) == 0;
    if (ok) matmul8(kernel, &mat, x, k, m, out, n, NULL, 0, q, sx, qoff);
    mat8_free(&mat); free(q); free(sx); free(qoff);
    return ok ? 0 : -1;
}

#else  /* not x86-64: the TorchScript loop is used instead */
int dfa_supported(void) { return 0; }
#endif
