/* Q4_0, Q4_1 and Q8_0 weights repacked eight rows at a time, and products on that layout.
 *
 * In the file's layout a group's 32 codes belong to one output row, so a SIMD dot product
 * sums across k and every (row, group, activation row) ends in its own scalar work: a
 * convert, two scalings and a horizontal sum. Here vector lanes are output rows instead.
 * For each group of 32 along k, eight consecutive rows share one tile:
 *
 *   d[8]   float16, one per row            (all formats)
 *   m[8]   float16, one per row            (Q4_1 only)
 *   codes  Q4: 4 × 32 bytes; in vector c, bytes 4j..4j+3 are row j's bytes 4c..4c+3 of the
 *              file's block, whose low nibbles are weights 4c..4c+3 and high ones 16+4c..16+4c+3
 *          Q8: 8 × 32 bytes; in vector c, bytes 4j..4j+3 are row j's weights 4c..4c+3
 *
 * so a tile takes exactly the bytes its eight blocks took, and the tiles of a row block are
 * contiguous. Against one activation group, each code vector meets the group's four bytes
 * broadcast to every lane (vpdpbusd, or vpmaddubsw + vpmaddwd on AVX2): one integer vector
 * holds the eight rows' exact sums, and one convert and one fused multiply-add scale all
 * eight. Per group and row the float work is
 *
 *   acc = fma((float)Σ q·qx − c·Σ qx, d·dx, acc)     c = 8 for Q4_0, 128 for Q8_0 on VNNI, else 0
 *   acc = fma(m, dx·Σ qx, acc)                        Q4_1
 *
 * the integer sums exact and the two float steps in this order in every variant, the
 * portable C included: all three give the same bits, whatever the batch around a row.
 * With AVX-512 VNNI and eight activation rows or more, two neighbouring row blocks share one
 * 512-bit vector (x16_block). Each copy of the loops is compiled for one format, so no test of
 * the format runs inside them.
 */
#include <stdlib.h>

#include "qblocks.h"

#define X8_TILE 4 /* activation rows a pass over a row block's tiles takes */

static inline int x8_base_ok(int base) { return base == TL_Q4_0 || base == TL_Q4_1 || base == TL_Q8_0; }

/* Bytes of one tile: eight of the format's 32-weight blocks. */
static inline int64_t tile_bytes(int base) { return 8 * row_bytes(base, QK); }

static inline int tile_header(int base) { return base == TL_Q4_1 ? 32 : 16; }

/* W (N, K) in the file's blocks → out, the same bytes in tiles. Returns 0, or 1 for a format
 * this layout does not take or N not a multiple of 8. */
int tl_repack_x8(int kind, const uint8_t *w, int64_t N, int64_t K, uint8_t *out, int threads) {
    if (!x8_base_ok(kind) || N % 8 != 0 || K % QK != 0 || K <= 0) return 1;
    const int64_t rb = row_bytes(kind, K), size = row_bytes(kind, QK), tb = tile_bytes(kind), G = K / QK;
    const int header = tile_header(kind), words = kind == TL_Q8_0 ? 8 : 4, codes_at = (int)size - 4 * words;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < N / 8; r++) {
        for (int64_t g = 0; g < G; g++) {
            uint8_t *t = out + r * 8 * rb + g * tb;
            for (int j = 0; j < 8; j++) {
                const uint8_t *blk = w + (8 * r + j) * rb + g * size;
                memcpy(t + 2 * j, blk, 2);
                if (kind == TL_Q4_1) memcpy(t + 16 + 2 * j, blk + 2, 2);
                for (int c = 0; c < words; c++) memcpy(t + header + 32 * c + 4 * j, blk + codes_at + 4 * c, 4);
            }
        }
    }
    return 0;
}

/* A tile's codes as eight rows of 32 (unsigned for Q4, signed for Q8), its scales and mins. */
static inline void x8_unpack(int base, const uint8_t *t, int16_t c[8][QK], float *dw, float *mw) {
    const uint8_t *codes = t + tile_header(base);
    for (int j = 0; j < 8; j++) {
        dw[j] = half_to_float(t + 2 * j);
        mw[j] = base == TL_Q4_1 ? half_to_float(t + 16 + 2 * j) : 0.0f;
    }
    if (base == TL_Q8_0) {
        for (int v = 0; v < 8; v++)
            for (int j = 0; j < 8; j++)
                for (int b = 0; b < 4; b++) c[j][4 * v + b] = (int8_t)codes[32 * v + 4 * j + b];
        return;
    }
    for (int v = 0; v < 4; v++)
        for (int j = 0; j < 8; j++)
            for (int b = 0; b < 4; b++) {
                uint8_t byte = codes[32 * v + 4 * j + b];
                c[j][4 * v + b] = byte & 0xF;
                c[j][16 + 4 * v + b] = byte >> 4;
            }
}

#ifdef TL_AVX2
/* Four activation bytes as one word, to broadcast to every lane. */
static inline int32_t word4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline __m256i bcast4(const int8_t *p) { return _mm256_set1_epi32(word4(p)); }

#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define TL_VNNI 1
#endif

/* One row block (8 output rows) against mt ≤ X8_TILE activation rows: acc[m] lane j = y[m, row j]. */
static inline __attribute__((always_inline)) void x8_block(int base, const uint8_t *tiles, int64_t G,
                                                           const act_group *x, int64_t ldx, int mt, __m256 *acc) {
    const int64_t tb = tile_bytes(base);
    const int header = tile_header(base);
    for (int m = 0; m < mt; m++) acc[m] = _mm256_setzero_ps();
    for (int64_t g = 0; g < G; g++) {
        const uint8_t *t = tiles + g * tb;
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)t));
        if (base == TL_Q8_0) {
            __m256i u[8];
#ifndef TL_VNNI
            __m256i w[8];
#endif
            for (int c = 0; c < 8; c++) {
                __m256i v = _mm256_loadu_si256((const __m256i *)(t + header + 32 * c));
#ifdef TL_VNNI
                u[c] = _mm256_xor_si256(v, _mm256_set1_epi8((char)0x80)); /* q + 128, unsigned */
#else
                w[c] = v;
                u[c] = _mm256_abs_epi8(v);
#endif
            }
            for (int m = 0; m < mt; m++) {
                const act_group *a = x + m * ldx + g;
                __m256i sum = _mm256_setzero_si256();
#ifdef TL_VNNI /* two chains of four: vpdpbusd's latency, not its throughput, would bound one of eight */
                __m256i odd = _mm256_setzero_si256();
                for (int c = 0; c < 8; c += 2) {
                    sum = _mm256_dpbusd_epi32(sum, u[c], bcast4(a->q + 4 * c));
                    odd = _mm256_dpbusd_epi32(odd, u[c + 1], bcast4(a->q + 4 * c + 4));
                }
                sum = _mm256_add_epi32(sum, odd);
#else
                for (int c = 0; c < 8; c++) {
                    __m256i s = _mm256_sign_epi8(bcast4(a->q + 4 * c), w[c]);
                    sum = _mm256_add_epi32(sum, _mm256_madd_epi16(_mm256_maddubs_epi16(u[c], s), _mm256_set1_epi16(1)));
                }
#endif
#ifdef TL_VNNI
                sum = _mm256_sub_epi32(sum, _mm256_set1_epi32(128 * a->sum));
#endif
                acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_mul_ps(dw, _mm256_set1_ps(a->d)), acc[m]);
            }
        } else {
            const __m256i low = _mm256_set1_epi8(0x0F);
            __m256i lo[4], hi[4];
            for (int c = 0; c < 4; c++) {
                __m256i v = _mm256_loadu_si256((const __m256i *)(t + header + 32 * c));
                lo[c] = _mm256_and_si256(v, low);
                hi[c] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
            }
            const __m256 mw = base == TL_Q4_1 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(t + 16)))
                                              : _mm256_setzero_ps();
            for (int m = 0; m < mt; m++) {
                const act_group *a = x + m * ldx + g;
#ifdef TL_VNNI
                __m256i sum = _mm256_setzero_si256(), high = _mm256_setzero_si256(); /* two chains of four */
                for (int c = 0; c < 4; c++) {
                    sum = _mm256_dpbusd_epi32(sum, lo[c], bcast4(a->q + 4 * c));
                    high = _mm256_dpbusd_epi32(high, hi[c], bcast4(a->q + 16 + 4 * c));
                }
                sum = _mm256_add_epi32(sum, high);
#else /* 8 pair sums of at most 2·15·127 each fit an int16 lane: add them there, widen once */
                __m256i s16 = _mm256_maddubs_epi16(lo[0], bcast4(a->q));
                s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(hi[0], bcast4(a->q + 16)));
                for (int c = 1; c < 4; c++) {
                    s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(lo[c], bcast4(a->q + 4 * c)));
                    s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(hi[c], bcast4(a->q + 16 + 4 * c)));
                }
                __m256i sum = _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
#endif
                if (base == TL_Q4_0) sum = _mm256_sub_epi32(sum, _mm256_set1_epi32(8 * a->sum));
                acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_mul_ps(dw, _mm256_set1_ps(a->d)), acc[m]);
                if (base == TL_Q4_1) acc[m] = _mm256_fmadd_ps(mw, _mm256_set1_ps(a->s), acc[m]);
            }
        }
    }
}

#ifdef TL_VNNI
#define X16_TILE 4 /* activation rows a pass over two row blocks takes */

/* Two row blocks in one 512-bit vector: lanes 0-7 are block a's rows, 8-15 block b's. The same
 * integer sums and float steps as x8_block, lane for lane, with half the instructions: the tile
 * format stays eight rows wide, so every variant reads the same bytes. */
static inline __m512i codes2(const uint8_t *a, const uint8_t *b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a)),
                              _mm256_loadu_si256((const __m256i *)b), 1);
}

static inline __m512 halves2(const uint8_t *a, const uint8_t *b) {
    return _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)a)),
                                                   _mm_loadu_si128((const __m128i *)b), 1));
}

static inline __m512i bcast16(const int8_t *p) { return _mm512_set1_epi32(word4(p)); }

static inline __attribute__((always_inline)) void x16_block(const int base, const uint8_t *ta, const uint8_t *tb,
                                                            int64_t G, const act_group *x, int64_t ldx, int mt,
                                                            __m512 *acc) {
    const int64_t size = tile_bytes(base);
    const int header = tile_header(base);
    for (int m = 0; m < mt; m++) acc[m] = _mm512_setzero_ps();
    for (int64_t g = 0; g < G; g++) {
        const uint8_t *a = ta + g * size, *b = tb + g * size;
        const __m512 dw = halves2(a, b);
        if (base == TL_Q8_0) {
            __m512i u[8];
            for (int c = 0; c < 8; c++)
                u[c] = _mm512_xor_si512(codes2(a + header + 32 * c, b + header + 32 * c), _mm512_set1_epi8((char)0x80));
            for (int m = 0; m < mt; m++) {
                const act_group *q = x + m * ldx + g;
                __m512i sum = _mm512_setzero_si512(), odd = _mm512_setzero_si512();
                for (int c = 0; c < 8; c += 2) {
                    sum = _mm512_dpbusd_epi32(sum, u[c], bcast16(q->q + 4 * c));
                    odd = _mm512_dpbusd_epi32(odd, u[c + 1], bcast16(q->q + 4 * c + 4));
                }
                sum = _mm512_sub_epi32(_mm512_add_epi32(sum, odd), _mm512_set1_epi32(128 * q->sum));
                acc[m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(dw, _mm512_set1_ps(q->d)), acc[m]);
            }
        } else {
            const __m512i low = _mm512_set1_epi8(0x0F);
            __m512i lo[4], hi[4];
            for (int c = 0; c < 4; c++) {
                __m512i v = codes2(a + header + 32 * c, b + header + 32 * c);
                lo[c] = _mm512_and_si512(v, low);
                hi[c] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
            }
            const __m512 mw = base == TL_Q4_1 ? halves2(a + 16, b + 16) : _mm512_setzero_ps();
            for (int m = 0; m < mt; m++) {
                const act_group *q = x + m * ldx + g;
                __m512i sum = _mm512_setzero_si512(), high = _mm512_setzero_si512();
                for (int c = 0; c < 4; c++) {
                    sum = _mm512_dpbusd_epi32(sum, lo[c], bcast16(q->q + 4 * c));
                    high = _mm512_dpbusd_epi32(high, hi[c], bcast16(q->q + 16 + 4 * c));
                }
                sum = _mm512_add_epi32(sum, high);
                if (base == TL_Q4_0) sum = _mm512_sub_epi32(sum, _mm512_set1_epi32(8 * q->sum));
                acc[m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(dw, _mm512_set1_ps(q->d)), acc[m]);
                if (base == TL_Q4_1) acc[m] = _mm512_fmadd_ps(mw, _mm512_set1_ps(q->s), acc[m]);
            }
        }
    }
}
#endif

static inline __attribute__((always_inline)) void x8_rows_of(const int base, const uint8_t *w, int64_t n0, int64_t n1,
                                                             int64_t K, const act_group *x, int64_t M, float *y,
                                                             int64_t ldy, int accumulate) {
    const int64_t rb = row_bytes(base, K), G = K / QK;
    int64_t n = n0;
#ifdef TL_VNNI
    __m512 wide[X16_TILE];
    /* Few activation rows are bound by the weights' memory traffic, and there two row blocks at
     * once measured slower than one (see docs/performance.md): x16 from eight rows on. */
    for (; M >= 8 && n + 16 <= n1; n += 16) {
        const uint8_t *ta = w + n * rb, *tb = ta + 8 * rb;
        for (int64_t m0 = 0; m0 < M; m0 += X16_TILE) {
            int mt = M - m0 < X16_TILE ? (int)(M - m0) : X16_TILE;
            const act_group *xm = x + m0 * G;
            switch (mt) {
            case 1: x16_block(base, ta, tb, G, xm, G, 1, wide); break;
            case 2: x16_block(base, ta, tb, G, xm, G, 2, wide); break;
            case 3: x16_block(base, ta, tb, G, xm, G, 3, wide); break;
            default: x16_block(base, ta, tb, G, xm, G, 4, wide); break;
            }
            for (int m = 0; m < mt; m++) {
                float *dst = y + (m0 + m) * ldy + n;
                _mm512_storeu_ps(dst, accumulate ? _mm512_add_ps(_mm512_loadu_ps(dst), wide[m]) : wide[m]);
            }
        }
    }
#endif
    __m256 acc[X8_TILE];
    for (; n < n1; n += 8) {
        const uint8_t *tiles = w + n * rb; /* row block n / 8 */
        for (int64_t m0 = 0; m0 < M; m0 += X8_TILE) {
            int mt = M - m0 < X8_TILE ? (int)(M - m0) : X8_TILE;
            const act_group *xm = x + m0 * G;
            switch (mt) {
            case 1: x8_block(base, tiles, G, xm, G, 1, acc); break;
            case 2: x8_block(base, tiles, G, xm, G, 2, acc); break;
            case 3: x8_block(base, tiles, G, xm, G, 3, acc); break;
            default: x8_block(base, tiles, G, xm, G, 4, acc); break;
            }
            for (int m = 0; m < mt; m++) {
                float *dst = y + (m0 + m) * ldy + n;
                __m256 v = accumulate ? _mm256_add_ps(_mm256_loadu_ps(dst), acc[m]) : acc[m];
                _mm256_storeu_ps(dst, v);
            }
        }
    }
}

static void x8_rows(int base, const uint8_t *w, int64_t n0, int64_t n1, int64_t K, const act_group *x, int64_t M,
                    float *y, int64_t ldy, int accumulate) {
    switch (base) { /* a constant format in each copy: no test of it inside the loops */
    case TL_Q4_0: x8_rows_of(TL_Q4_0, w, n0, n1, K, x, M, y, ldy, accumulate); break;
    case TL_Q4_1: x8_rows_of(TL_Q4_1, w, n0, n1, K, x, M, y, ldy, accumulate); break;
    default: x8_rows_of(TL_Q8_0, w, n0, n1, K, x, M, y, ldy, accumulate); break;
    }
}

#else /* portable C: the same integer sums and the same two float steps, lane by lane */

#define X8_PORTABLE_ROWS 16 /* activation rows whose sums a pass over the tiles keeps */

static void x8_rows(int base, const uint8_t *w, int64_t n0, int64_t n1, int64_t K, const act_group *x, int64_t M,
                    float *y, int64_t ldy, int accumulate) {
    const int64_t rb = row_bytes(base, K), G = K / QK, tb = tile_bytes(base);
    int16_t c[8][QK];
    float dw[8], mw[8];
    for (int64_t n = n0; n < n1; n += 8) {
        const uint8_t *tiles = w + n * rb;
        for (int64_t m0 = 0; m0 < M; m0 += X8_PORTABLE_ROWS) {
            int64_t mt = M - m0 < X8_PORTABLE_ROWS ? M - m0 : X8_PORTABLE_ROWS;
            float acc[X8_PORTABLE_ROWS][8] = {{0}};
            for (int64_t g = 0; g < G; g++) { /* each (row, column) sum in g order, as the SIMD paths */
                x8_unpack(base, tiles + g * tb, c, dw, mw);
                for (int64_t m = 0; m < mt; m++) {
                    const act_group *a = x + (m0 + m) * G + g;
                    for (int j = 0; j < 8; j++) {
                        int32_t sum = 0;
                        for (int k = 0; k < QK; k++) sum += c[j][k] * a->q[k];
                        if (base == TL_Q4_0) sum -= 8 * a->sum;
                        acc[m][j] = fmaf((float)sum, dw[j] * a->d, acc[m][j]);
                        if (base == TL_Q4_1) acc[m][j] = fmaf(mw[j], a->s, acc[m][j]);
                    }
                }
            }
            for (int64_t m = 0; m < mt; m++) {
                float *dst = y + (m0 + m) * ldy + n;
                for (int j = 0; j < 8; j++) dst[j] = accumulate ? dst[j] + acc[m][j] : acc[m][j];
            }
        }
    }
}
#endif

/* qmatmul.c's tl_qrows for the tiled kinds: rows [n0, n1), both multiples of 8. */
void tl_qrows_x8(int kind, const uint8_t *w, int64_t n0, int64_t n1, int64_t K, const act_group *x, int64_t M,
                 float *y, int64_t ldy, int accumulate) {
    x8_rows(kind - TL_X8, w, n0, n1, K, x, M, y, ldy, accumulate);
}

/* Row block r (rows 8r..8r+7) of a tiled W as float32 (8, K): the values the file's own layout gives. */
void tl_dequantize_x8(int kind, const uint8_t *w, int64_t r, int64_t K, float *out) {
    const int base = kind - TL_X8;
    const int64_t G = K / QK, tb = tile_bytes(base);
    const uint8_t *tiles = w + 8 * r * row_bytes(base, K);
    int16_t c[8][QK];
    float dw[8], mw[8];
    for (int64_t g = 0; g < G; g++) {
        x8_unpack(base, tiles + g * tb, c, dw, mw);
        for (int j = 0; j < 8; j++) {
            float *v = out + j * K + g * QK, mn = base == TL_Q4_0 ? -8.0f * dw[j] : mw[j];
            for (int k = 0; k < QK; k++) v[k] = base == TL_Q8_0 ? dw[j] * c[j][k] : dw[j] * c[j][k] + mn;
        }
    }
}
