/* Matrix products on GGUF blocks: y = x·Wᵀ with W (N, K) in Q4_0, Q4_1, Q8_0, Q4_K, Q5_K or Q6_K.
 *
 * x (M, K) is quantized to 8-bit groups first (qblocks.h). Each output row of W is read
 * once and its groups are multiplied by all M activation rows while they are in
 * registers (rows in tiles of 4), so 8 decoding sequences or a chunk of a prompt cost
 * little more weight traffic than one. Every (row, column) sum is formed in the same
 * order whatever M is: a sequence's numbers do not depend on its neighbours in a batch.
 * Output rows are shared among PyTorch's OpenMP threads.
 */
#include <stdlib.h>

#include "qblocks.h"

#define TILE 4
#define ROW_SLICE 64 /* activation rows a product's work item takes at most */

void tl_qrows_x8(int kind, const uint8_t *w, int64_t n0, int64_t n1, int64_t K, const act_group *x, int64_t M,
                 float *y, int64_t ldy, int accumulate);
void tl_dequantize_x8(int kind, const uint8_t *w, int64_t r, int64_t K, float *out);

#ifdef TL_AVX2
/* 8 int32 lanes; lane i = Σ of bytes 4i..4i+3 of u (unsigned) times s (signed). */
static inline __m256i dot_u8s8(__m256i u, __m256i s) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* One weight row against mt ≤ TILE activation rows; always inlined so that mt is a constant. */
static inline __attribute__((always_inline)) void row_tile(int kind, const uint8_t *w, int64_t K,
                                                           const act_group *x, int64_t ldx, int mt,
                                                           float *out, uint8_t *codes) {
    __m256 acc[TILE];
    float off[TILE];
    for (int m = 0; m < mt; m++) {
        acc[m] = _mm256_setzero_ps();
        off[m] = 0.0f;
    }
    const __m256i low = _mm256_set1_epi8(0x0F);
    if (kind == TL_Q4_0 || kind == TL_Q4_1) {
        const int size = kind == TL_Q4_1 ? 20 : 18;
        for (int64_t g = 0; g < K / QK; g++) {
            const uint8_t *blk = w + g * size;
            float d = half_to_float(blk), mn = kind == TL_Q4_1 ? half_to_float(blk + 2) : -8.0f * d;
            __m128i raw = _mm_loadu_si128((const __m128i *)(blk + size - 16));
            __m256i u = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), low);
            __m256 dw = _mm256_set1_ps(d);
            for (int m = 0; m < mt; m++) {
                const act_group *a = x + m * ldx + g;
                __m256 p = _mm256_cvtepi32_ps(dot_u8s8(u, _mm256_loadu_si256((const __m256i *)a->q)));
                acc[m] = _mm256_fmadd_ps(_mm256_mul_ps(p, _mm256_broadcast_ss(&a->d)), dw, acc[m]);
                off[m] = fmaf(mn, a->s, off[m]);
            }
        }
    } else if (kind == TL_Q8_0) {
        for (int64_t g = 0; g < K / QK; g++) {
            const uint8_t *blk = w + g * 34;
            __m256 dw = _mm256_set1_ps(half_to_float(blk));
            __m256i q = _mm256_loadu_si256((const __m256i *)(blk + 2));
            __m256i u = _mm256_abs_epi8(q);
            for (int m = 0; m < mt; m++) {
                const act_group *a = x + m * ldx + g;
                __m256i s = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)a->q), q);
                __m256 p = _mm256_cvtepi32_ps(dot_u8s8(u, s));
                acc[m] = _mm256_fmadd_ps(_mm256_mul_ps(p, _mm256_broadcast_ss(&a->d)), dw, acc[m]);
            }
        }
    } else { /* K-quants: each block unpacked once into codes and per-sixteen scales */
        const int64_t size = row_bytes(kind, QK_K);
        float a16[16], b16[16];
        for (int64_t blk = 0; blk < K / QK_K; blk++) {
            unpack_k(kind, w + blk * size, codes, a16, b16);
            for (int j = 0; j < 8; j++) {
                int64_t g = blk * 8 + j;
                __m256i u = _mm256_loadu_si256((const __m256i *)(codes + 32 * j));
                __m256 halves = _mm256_set_m128(_mm_set1_ps(a16[2 * j + 1]), _mm_set1_ps(a16[2 * j]));
                for (int m = 0; m < mt; m++) {
                    const act_group *a = x + m * ldx + g;
                    __m256 p = _mm256_cvtepi32_ps(dot_u8s8(u, _mm256_loadu_si256((const __m256i *)a->q)));
                    acc[m] = _mm256_fmadd_ps(_mm256_mul_ps(p, _mm256_broadcast_ss(&a->d)), halves, acc[m]);
                    off[m] += b16[2 * j] * a->s0 + b16[2 * j + 1] * a->s1;
                }
            }
        }
    }
    for (int m = 0; m < mt; m++) out[m] = hsum(acc[m]) + off[m];
}

#else /* portable C: the same sums, one group at a time */

/* A group's unsigned or signed codes, and its halves' scales and offsets: w = a·q + b. */
static inline void group_codes(int kind, const uint8_t *w, int64_t g, int16_t *c, float *a, float *b,
                               uint8_t *codes, float *a16, float *b16) {
    if (kind == TL_Q4_0 || kind == TL_Q4_1) {
        const int size = kind == TL_Q4_1 ? 20 : 18;
        const uint8_t *blk = w + g * size, *qs = blk + size - 16;
        float d = half_to_float(blk);
        for (int i = 0; i < 16; i++) {
            c[i] = qs[i] & 0xF;
            c[i + 16] = qs[i] >> 4;
        }
        a[0] = a[1] = d;
        b[0] = b[1] = kind == TL_Q4_1 ? half_to_float(blk + 2) : -8.0f * d;
    } else if (kind == TL_Q8_0) {
        const uint8_t *blk = w + g * 34;
        for (int i = 0; i < 32; i++) c[i] = (int8_t)blk[2 + i];
        a[0] = a[1] = half_to_float(blk);
        b[0] = b[1] = 0.0f;
    } else {
        int j = (int)(g % 8);
        if (j == 0) unpack_k(kind, w + g / 8 * row_bytes(kind, QK_K), codes, a16, b16);
        for (int i = 0; i < 32; i++) c[i] = codes[32 * j + i];
        a[0] = a16[2 * j], a[1] = a16[2 * j + 1];
        b[0] = b16[2 * j], b[1] = b16[2 * j + 1];
    }
}

static inline void row_tile(int kind, const uint8_t *w, int64_t K, const act_group *x, int64_t ldx, int mt,
                            float *out, uint8_t *codes) {
    float acc[TILE] = {0};
    float a16[16], b16[16];
    for (int64_t g = 0; g < K / QK; g++) {
        int16_t c[QK];
        float a[2], b[2];
        group_codes(kind, w, g, c, a, b, codes, a16, b16);
        for (int m = 0; m < mt; m++) {
            const act_group *v = x + m * ldx + g;
            int32_t i0 = 0, i1 = 0;
            for (int i = 0; i < 16; i++) i0 += c[i] * v->q[i];
            for (int i = 16; i < 32; i++) i1 += c[i] * v->q[i];
            acc[m] += v->d * (a[0] * (float)i0 + a[1] * (float)i1) + b[0] * v->s0 + b[1] * v->s1;
        }
    }
    for (int m = 0; m < mt; m++) out[m] = acc[m];
}
#endif

/* Output rows [n0, n1) for all M activation rows: y[m, n] (+)= Σ_k W[n, k]·x[m, k]. Tiled kinds
 * (TL_X8 + a type) take n0 and n1 at multiples of 8. */
void tl_qrows(int kind, const uint8_t *w, int64_t n0, int64_t n1, int64_t K, const act_group *x, int64_t M,
              float *y, int64_t ldy, int accumulate) {
    if (kind > TL_X8) {
        tl_qrows_x8(kind, w, n0, n1, K, x, M, y, ldy, accumulate);
        return;
    }
    const int64_t rb = row_bytes(kind, K), ldx = K / QK;
    uint8_t codes[QK_K];
    float out[TILE];
    for (int64_t n = n0; n < n1; n++) {
        const uint8_t *row = w + n * rb;
        for (int64_t m0 = 0; m0 < M; m0 += TILE) {
            int mt = M - m0 < TILE ? (int)(M - m0) : TILE;
            const act_group *xm = x + m0 * ldx;
            switch (mt) { /* each a specialised copy of the tile */
            case 1: row_tile(kind, row, K, xm, ldx, 1, out, codes); break;
            case 2: row_tile(kind, row, K, xm, ldx, 2, out, codes); break;
            case 3: row_tile(kind, row, K, xm, ldx, 3, out, codes); break;
            default: row_tile(kind, row, K, xm, ldx, 4, out, codes); break;
            }
            for (int m = 0; m < mt; m++) {
                float *dst = y + (m0 + m) * ldy + n;
                *dst = accumulate ? *dst + out[m] : out[m];
            }
        }
    }
}

/* Whether this library computes on a format, and K fits its blocks (a tiled kind's N must also be
 * a multiple of 8: tl_qmatmul and qdecode.c check that). */
int tl_qsupported(int kind, int64_t K) {
    int tiled_ok = kind == TL_X8 + TL_Q4_0 || kind == TL_X8 + TL_Q4_1 || kind == TL_X8 + TL_Q8_0;
    return (kind < TL_X8 || tiled_ok) && K > 0 && row_bytes(kind, K) > 0 && K % block_width(kind) == 0;
}

/* y (M, N), rows ldy apart, = x·Wᵀ for x (M, K) float32 rows ldx apart. Returns 0, 1 for an
 * unsupported format or width, 2 when memory for the quantized activations is short. */
int tl_qmatmul(int kind, const uint8_t *w, int64_t N, int64_t K, const float *x, int64_t ldx, int64_t M,
               float *y, int64_t ldy, int threads) {
    if (!tl_qsupported(kind, K) || (kind > TL_X8 && N % 8 != 0)) return 1;
    act_group *act = malloc(sizeof(act_group) * (size_t)(M * (K / QK) + 1));
    if (act == NULL) return 2;
    const int64_t per_thread = 64; /* output rows a thread takes at a time */
#pragma omp parallel num_threads(threads)
    {
#pragma omp for schedule(static)
        for (int64_t m = 0; m < M; m++) quantize_row(x + m * ldx, K, act + m * (K / QK));
        /* Many activation rows (a prompt's chunk) go in slices of ROW_SLICE, slice-major, so that
         * a slice's groups stay in cache while the weight rows stream past them; each (row, column)
         * sum is the same whatever the slicing. */
        const int64_t col_chunks = (N + per_thread - 1) / per_thread, slices = (M + ROW_SLICE - 1) / ROW_SLICE;
#pragma omp for schedule(dynamic, 1)
        for (int64_t c = 0; c < slices * col_chunks; c++) {
            int64_t m0 = c / col_chunks * ROW_SLICE, mt = M - m0 < ROW_SLICE ? M - m0 : ROW_SLICE;
            int64_t n0 = c % col_chunks * per_thread, n1 = n0 + per_thread < N ? n0 + per_thread : N;
            tl_qrows(kind, w, n0, n1, K, act + m0 * (K / QK), mt, y + m0 * ldy, ldy, 0);
        }
    }
    free(act);
    return 0;
}

static inline uint16_t to_bf16(float f) {
    uint32_t bits;
    memcpy(&bits, &f, 4);
    if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((bits >> 16) | 0x40); /* NaN stays NaN */
    return (uint16_t)((bits + 0x7FFFu + ((bits >> 16) & 1)) >> 16);               /* nearest, ties to even */
}

/* W (N, K) as float32 (bf16 = 0) or bfloat16 (bf16 = 1) into out; returns 0, or 1 as tl_qmatmul. */
int tl_dequantize(int kind, const uint8_t *w, int64_t N, int64_t K, void *out, int bf16, int threads) {
    if (!tl_qsupported(kind, K) || (kind > TL_X8 && N % 8 != 0)) return 1;
    if (kind > TL_X8) {
        int status = 0;
#pragma omp parallel num_threads(threads)
        {
            float *rows = bf16 ? malloc(sizeof(float) * (size_t)(8 * K)) : NULL;
            if (bf16 && rows == NULL) {
#pragma omp atomic write
                status = 2;
            }
#pragma omp for schedule(static)
            for (int64_t r = 0; r < N / 8; r++) {
                if (!bf16) {
                    tl_dequantize_x8(kind, w, r, K, (float *)out + 8 * r * K);
                } else if (rows != NULL) {
                    tl_dequantize_x8(kind, w, r, K, rows);
                    uint16_t *o = (uint16_t *)out + 8 * r * K;
                    for (int64_t i = 0; i < 8 * K; i++) o[i] = to_bf16(rows[i]);
                }
            }
            free(rows);
        }
        return status;
    }
    const int64_t rb = row_bytes(kind, K);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const uint8_t *row = w + n * rb;
        float vals[QK_K], a16[16], b16[16];
        uint8_t codes[QK_K];
        for (int64_t k0 = 0; k0 < K; k0 += block_width(kind)) {
            int width = (int)block_width(kind);
            if (width == QK_K) {
                unpack_k(kind, row + k0 / QK_K * row_bytes(kind, QK_K), codes, a16, b16);
                for (int i = 0; i < QK_K; i++) vals[i] = a16[i / 16] * codes[i] + b16[i / 16];
            } else if (kind == TL_Q8_0) {
                const uint8_t *blk = row + k0 / QK * 34;
                float d = half_to_float(blk);
                for (int i = 0; i < QK; i++) vals[i] = d * (int8_t)blk[2 + i];
            } else {
                const int size = kind == TL_Q4_1 ? 20 : 18;
                const uint8_t *blk = row + k0 / QK * size, *qs = blk + size - 16;
                float d = half_to_float(blk), mn = kind == TL_Q4_1 ? half_to_float(blk + 2) : -8.0f * d;
                for (int i = 0; i < 16; i++) {
                    vals[i] = d * (qs[i] & 0xF) + mn;
                    vals[i + 16] = d * (qs[i] >> 4) + mn;
                }
            }
            if (bf16) {
                uint16_t *o = (uint16_t *)out + n * K + k0;
                for (int i = 0; i < width; i++) o[i] = to_bf16(vals[i]);
            } else {
                memcpy((float *)out + n * K + k0, vals, sizeof(float) * width);
            }
        }
    }
    return 0;
}
