/* GGUF block formats, 8-bit activations, and the dot products between them.
 *
 * Weights stay in the file's blocks. Activations are quantized per group of 32 to int8
 * with one float scale (as llama.cpp quantizes them to Q8_0 / Q8_K), so a group's dot
 * product is an integer sum, scaled once:
 *
 *   Q4_0  w = d·(q − 8)          Σ w·x ≈ d·dx·Σ q·qx − 8·d·sx
 *   Q4_1  w = d·q + m            Σ w·x ≈ d·dx·Σ q·qx + m·sx
 *   Q8_0  w = d·q                Σ w·x ≈ d·dx·Σ q·qx
 *   Q4_K, Q5_K (256 a block): per group of 32, w = d·sc·q − dmin·mn
 *   Q6_K (256 a block): per half group of 16, w = d·sc·(q − 32)
 *
 * with sx = dx·Σ qx, kept per half group (s0, s1) for Q6_K's 16-wide scales. The integer
 * sums run on unsigned codes times signed activations: AVX-512 VNNI's vpdpbusd, or AVX2's
 * vpmaddubsw + vpmaddwd (pairs of products 15·127·2 and 63·127·2 fit an int16), or plain C.
 * This one source is compiled once per instruction set (tokenloom/model/blocks.py).
 */
#ifndef TOKENLOOM_QBLOCKS_H
#define TOKENLOOM_QBLOCKS_H
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define TL_AVX2 1
#include <immintrin.h>
#endif

#define QK 32      /* weights a group */
#define QK_K 256   /* weights a K-quant block */

enum { TL_Q4_0 = 2, TL_Q4_1 = 3, TL_Q8_0 = 8, TL_Q4_K = 12, TL_Q5_K = 13, TL_Q6_K = 14 }; /* GGML's type ids */
/* TL_X8 + a type id: the same blocks repacked eight rows to a tile (qinterleave.c) */
enum { TL_X8 = 100 };

/* A group of 32 activations: x ≈ d·q. s0, s1 = d·Σq over the first and the second 16, s = s0 + s1,
 * sum = Σq itself. 64 bytes, so that q starts 32 bytes in. */
typedef struct {
    float d, s, s0, s1;
    int32_t sum, pad[3];
    int8_t q[QK];
} act_group;

static inline float half_to_float(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
#ifdef TL_AVX2
    return _cvtsh_ss(h);
#else
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 31, man = h & 1023, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do { man <<= 1; e++; } while (!(man & 1024));
            bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 1023) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7F800000u | (man << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
#endif
}

/* Bytes a row of K weights takes in a format; 0 for a format this file does not know. */
static inline int64_t row_bytes(int kind, int64_t K) {
    if (kind > TL_X8) kind -= TL_X8; /* a tiled row block takes what its rows took */
    switch (kind) {
    case TL_Q4_0: return K / QK * 18;
    case TL_Q4_1: return K / QK * 20;
    case TL_Q8_0: return K / QK * 34;
    case TL_Q4_K: return K / QK_K * 144;
    case TL_Q5_K: return K / QK_K * 176;
    case TL_Q6_K: return K / QK_K * 210;
    default: return 0;
    }
}

static inline int64_t block_width(int kind) {
    if (kind > TL_X8) kind -= TL_X8;
    return (kind == TL_Q4_K || kind == TL_Q5_K || kind == TL_Q6_K) ? QK_K : QK;
}

/* Q4_K and Q5_K pack 8 six-bit scales and 8 six-bit mins into 12 bytes. */
static inline void k_scale_min(int j, const uint8_t *s, uint8_t *sc, uint8_t *mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* A K-quant block as unsigned codes (256) and, per sixteen weights, a scale and an offset:
 * w = a·q + b, with a[i], b[i] for weights 16i..16i+15 (Q4_K and Q5_K repeat each group's pair). */
static inline void unpack_k(int kind, const uint8_t *blk, uint8_t *codes, float *a, float *b) {
    if (kind == TL_Q6_K) {
        const uint8_t *ql = blk, *qh = blk + 128;
        const int8_t *sc = (const int8_t *)(blk + 192);
        float d = half_to_float(blk + 208);
        for (int n = 0; n < 2; n++) { /* two halves of 128 */
            uint8_t *c = codes + 128 * n;
            for (int l = 0; l < 32; l++) {
                c[l] = (ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4);
                c[l + 32] = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4);
                c[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
                c[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
            }
            for (int s = 0; s < 8; s++) { /* 8 sixteens of this half: scale index 8n + s */
                float scale = d * sc[8 * n + s];
                a[8 * n + s] = scale; /* element e of a half has scale sc[8n + e/16] */
                b[8 * n + s] = -32.0f * scale;
            }
            ql += 64;
            qh += 32;
        }
        return;
    }
    float d = half_to_float(blk), dmin = half_to_float(blk + 2);
    const uint8_t *scales = blk + 4;
    const uint8_t *qh = blk + 16, *qs = kind == TL_Q5_K ? blk + 48 : blk + 16;
    for (int j = 0; j < 4; j++) { /* 4 chunks of 64: low nibbles are group 2j, high 2j + 1 */
        uint8_t sc0, m0, sc1, m1;
        k_scale_min(2 * j, scales, &sc0, &m0);
        k_scale_min(2 * j + 1, scales, &sc1, &m1);
        for (int l = 0; l < 32; l++) {
            uint8_t lo = qs[32 * j + l] & 0xF, hi = qs[32 * j + l] >> 4;
            if (kind == TL_Q5_K) {
                lo |= ((qh[l] >> (2 * j)) & 1) << 4;
                hi |= ((qh[l] >> (2 * j + 1)) & 1) << 4;
            }
            codes[64 * j + l] = lo;
            codes[64 * j + 32 + l] = hi;
        }
        a[4 * j + 0] = a[4 * j + 1] = d * sc0;
        b[4 * j + 0] = b[4 * j + 1] = -dmin * m0;
        a[4 * j + 2] = a[4 * j + 3] = d * sc1;
        b[4 * j + 2] = b[4 * j + 3] = -dmin * m1;
    }
}

/* Quantize one row of K floats (K a multiple of 32) to groups: d = max|x| / 127, q = round(x / d),
 * rounding half to even (the SIMD conversion and nearbyintf both round so). */
static inline void quantize_row(const float *x, int64_t K, act_group *out) {
    for (int64_t g = 0; g < K / QK; g++) {
        const float *v = x + g * QK;
#ifdef TL_AVX2
        const __m256 sign = _mm256_set1_ps(-0.0f);
        __m256 x0 = _mm256_loadu_ps(v), x1 = _mm256_loadu_ps(v + 8), x2 = _mm256_loadu_ps(v + 16),
               x3 = _mm256_loadu_ps(v + 24);
        __m256 top = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, x0), _mm256_andnot_ps(sign, x1)),
                                   _mm256_max_ps(_mm256_andnot_ps(sign, x2), _mm256_andnot_ps(sign, x3)));
        __m128 t4 = _mm_max_ps(_mm256_castps256_ps128(top), _mm256_extractf128_ps(top, 1));
        t4 = _mm_max_ps(t4, _mm_movehl_ps(t4, t4));
        t4 = _mm_max_ss(t4, _mm_movehdup_ps(t4));
        float amax = _mm_cvtss_f32(t4);
        float d = amax / 127.0f, inv = d > 0.0f ? 1.0f / d : 0.0f;
        const __m256 scale = _mm256_set1_ps(inv);
        __m256i q0 = _mm256_cvtps_epi32(_mm256_mul_ps(x0, scale)), q1 = _mm256_cvtps_epi32(_mm256_mul_ps(x1, scale)),
                q2 = _mm256_cvtps_epi32(_mm256_mul_ps(x2, scale)), q3 = _mm256_cvtps_epi32(_mm256_mul_ps(x3, scale));
        __m256i h0 = _mm256_add_epi32(q0, q1), h1 = _mm256_add_epi32(q2, q3);
        __m128i a0 = _mm_add_epi32(_mm256_castsi256_si128(h0), _mm256_extracti128_si256(h0, 1));
        __m128i a1 = _mm_add_epi32(_mm256_castsi256_si128(h1), _mm256_extracti128_si256(h1, 1));
        a0 = _mm_hadd_epi32(_mm_hadd_epi32(a0, a1), _mm_setzero_si128()); /* lanes: s0, s1 */
        int s0 = _mm_cvtsi128_si32(a0), s1 = _mm_extract_epi32(a0, 1);
        /* int32 → int8 in order: the packs work per 128-bit lane, the permute puts the lanes back */
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)out[g].q, p);
#else
        float amax = 0.0f;
        for (int i = 0; i < QK; i++) amax = fmaxf(amax, fabsf(v[i]));
        float d = amax / 127.0f, inv = d > 0.0f ? 1.0f / d : 0.0f;
        int s0 = 0, s1 = 0;
        for (int i = 0; i < QK; i++) {
            int q = (int)nearbyintf(v[i] * inv);
            out[g].q[i] = (int8_t)q;
            if (i < 16) s0 += q; else s1 += q;
        }
#endif
        out[g].d = d;
        out[g].sum = s0 + s1;
        out[g].s0 = d * (float)s0;
        out[g].s1 = d * (float)s1;
        out[g].s = d * (float)(s0 + s1);
    }
}

#endif
