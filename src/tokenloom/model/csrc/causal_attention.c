/* Causal attention in float32 for AVX-512 CPUs, one pass over the keys per block of queries.
 *
 *   out[b, i, h] = Σ_{j ≤ i + S − T} softmax_j(scale · q[b, h, i] · k[b, g, j]) · v[b, g, j],   g = h / (H / Hkv)
 *
 * The T queries are the last T of S positions (a prompt after S − T cached ones, or a whole
 * window when S = T). Blocks of MQ queries of one head are the unit of work; each runs over
 * its visible keys in blocks of NK, keeping a running maximum m and sum l per query (the
 * online softmax of flash attention), so the T × S scores never exist in memory and keys
 * past a block's last query are never touched. The exponential is base 2 (scale carries
 * log2 e) and computed in registers. The threads of an OpenMP team share one task counter,
 * costliest tasks first.
 *
 * Built and loaded by tokenloom/model/native.py, which falls back to PyTorch when it cannot be.
 */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#include "exp2.h"

#define NK 64 /* keys per block: four 16-float vectors per score row */
#define MQ 48 /* queries per task: a multiple of the rows per tile, 6 or 3 */

typedef struct {
    const float *q;   /* (B, H, T, D), any strides with D contiguous */
    const float *kt;  /* (B, Hkv, S_pad / NK, D, NK) contiguous: blocks of NK keys, each transposed; zero past S */
    const float *v;   /* (B, Hkv, S, D), any strides with D contiguous */
    float *out;       /* (B, H, T, D), any strides with D contiguous */
    int64_t B, H, Hkv, T, S, D, S_pad;
    int64_t q_sb, q_sh, q_st, v_sb, v_sh, v_st, o_sb, o_sh, o_st; /* strides in floats: batch, head, position */
    float scale;      /* score scale times log2(e) */
    int threads;      /* OpenMP threads for the call: PyTorch's count */
} Args;

/* R query rows (scaled, in qrows) against keys [n0, n0 + NK): scores, the online-softmax update
 * of m and l, and orows ← α · orows + P · V. Row r sees keys up to first_limit + r. Always inlined
 * with constant R and DV = D / 16, so that the accumulators stay in the 32 vector registers. */
static inline __attribute__((always_inline)) void tile(
    const int R, const int DV, const float *qrows, const float *kt, const float *v, int64_t v_st,
    float *orows, float *m, float *l, int64_t first_limit, int64_t n0)
{
    const int D = DV * 16;
    __m512 s[6][4]; /* (R, NK) scores */
#pragma GCC unroll 6
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) s[r][c] = _mm512_setzero_ps();
    for (int d = 0; d < D; d++) {
        const float *krow = kt + n0 * D + d * NK; /* block n0 / NK of kt, row d */
        __m512 k[4];
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) k[c] = _mm512_loadu_ps(krow + 16 * c);
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) {
            __m512 qd = _mm512_set1_ps(qrows[r * D + d]);
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) s[r][c] = _mm512_fmadd_ps(qd, k[c], s[r][c]);
        }
    }
    float p[6][NK] __attribute__((aligned(64)));
    float alpha[6], rowsum[6];
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) {
        int64_t limit = first_limit + r - n0; /* last visible key of row r, from n0 */
        if (limit < NK - 1) {
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) {
                __m512i key = _mm512_add_epi32(_mm512_set1_epi32(16 * c),
                    _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0));
                __mmask16 later = _mm512_cmpgt_epi32_mask(key, _mm512_set1_epi32((int)limit));
                s[r][c] = _mm512_mask_mov_ps(s[r][c], later, _mm512_set1_ps(-INFINITY));
            }
        }
        __m512 top = _mm512_max_ps(_mm512_max_ps(s[r][0], s[r][1]), _mm512_max_ps(s[r][2], s[r][3]));
        float top_r = _mm512_reduce_max_ps(top), m_new = top_r > m[r] ? top_r : m[r];
        alpha[r] = m[r] - m_new; /* exponentiated below, all rows at once */
        __m512 mv = _mm512_set1_ps(m_new), sum = _mm512_setzero_ps();
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m512 e = exp2_ps(_mm512_sub_ps(s[r][c], mv));
            sum = _mm512_add_ps(sum, e);
            _mm512_store_ps(p[r] + 16 * c, e);
        }
        rowsum[r] = _mm512_reduce_add_ps(sum);
        m[r] = m_new;
    }
    {
        __m512 x = _mm512_maskz_loadu_ps((__mmask16)((1u << R) - 1), alpha);
        _mm512_mask_storeu_ps(alpha, (__mmask16)((1u << R) - 1), exp2_ps(x)); /* −inf − m: 0 */
    }
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) l[r] = l[r] * alpha[r] + rowsum[r];
    int64_t n_end = first_limit + R - n0; /* keys any row of the tile sees */
    if (n_end > NK) n_end = NK;
    __m512 o[6][8];
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) {
        __m512 a = _mm512_set1_ps(alpha[r]);
#pragma GCC unroll 8
        for (int c = 0; c < DV; c++) o[r][c] = _mm512_mul_ps(_mm512_loadu_ps(orows + r * D + 16 * c), a);
    }
    for (int64_t n = 0; n < n_end; n++) {
        const float *vrow = v + (n0 + n) * v_st;
        __m512 vn[8];
#pragma GCC unroll 8
        for (int c = 0; c < DV; c++) vn[c] = _mm512_loadu_ps(vrow + 16 * c);
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) {
            __m512 pn = _mm512_set1_ps(p[r][n]);
#pragma GCC unroll 8
            for (int c = 0; c < DV; c++) o[r][c] = _mm512_fmadd_ps(pn, vn[c], o[r][c]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int c = 0; c < DV; c++) _mm512_storeu_ps(orows + r * D + 16 * c, o[r][c]);
}

/* One task: MQ queries of one head of one sequence. */
static inline __attribute__((always_inline)) void run_task(const Args *a, int64_t task, const int DV) {
    const int D = DV * 16, R = DV <= 4 ? 6 : 3; /* R · DV output accumulators fit the registers */
    int64_t heads = a->B * a->H, blocks = (a->T + MQ - 1) / MQ;
    int64_t qb = blocks - 1 - task / heads, b = task % heads / a->H, h = task % a->H;
    int64_t g = h / (a->H / a->Hkv), off = a->S - a->T;
    int64_t i0 = qb * MQ, rows = a->T - i0 < MQ ? a->T - i0 : MQ;
    float qbuf[MQ * 128] __attribute__((aligned(64))), obuf[MQ * 128] __attribute__((aligned(64)));
    float m[MQ], l[MQ];
    const float *q = a->q + b * a->q_sb + h * a->q_sh + i0 * a->q_st;
    for (int64_t r = 0; r < rows; r++) {
        for (int d = 0; d < D; d++) {
            qbuf[r * D + d] = q[r * a->q_st + d] * a->scale;
            obuf[r * D + d] = 0.0f;
        }
        m[r] = -INFINITY;
        l[r] = 0.0f;
    }
    const float *kt = a->kt + (b * a->Hkv + g) * D * a->S_pad, *v = a->v + b * a->v_sb + g * a->v_sh;
    for (int64_t n0 = 0; n0 <= i0 + rows - 1 + off; n0 += NK) {
        for (int64_t r0 = 0; r0 < rows; r0 += R) {
            int64_t first_limit = i0 + r0 + off;
            if (n0 > first_limit + R - 1) continue; /* no row of this tile sees the block; later tiles may */
            float *o = obuf + r0 * D, *qr = qbuf + r0 * D;
            switch (rows - r0 < R ? rows - r0 : R) { /* fewer than R rows only at the end of the last block */
            case 6: tile(6, DV, qr, kt, v, a->v_st, o, m + r0, l + r0, first_limit, n0); break;
            case 5: tile(5, DV, qr, kt, v, a->v_st, o, m + r0, l + r0, first_limit, n0); break;
            case 4: tile(4, DV, qr, kt, v, a->v_st, o, m + r0, l + r0, first_limit, n0); break;
            case 3: tile(3, DV, qr, kt, v, a->v_st, o, m + r0, l + r0, first_limit, n0); break;
            case 2: tile(2, DV, qr, kt, v, a->v_st, o, m + r0, l + r0, first_limit, n0); break;
            default: tile(1, DV, qr, kt, v, a->v_st, o, m + r0, l + r0, first_limit, n0);
            }
        }
    }
    float *out = a->out + b * a->o_sb + h * a->o_sh + i0 * a->o_st;
    for (int64_t r = 0; r < rows; r++) {
        float inv = 1.0f / l[r];
        for (int d = 0; d < D; d++) out[r * a->o_st + d] = obuf[r * D + d] * inv;
    }
}

/* The threads of an OpenMP team (PyTorch's own, as the library shares its runtime) take tasks
 * from one counter until none is left. Returns 0, or 1 for a head size without a kernel. */
int tl_causal_attention(const Args *a) {
    if (a->D != 64 && a->D != 128) return 1;
    int64_t total = a->B * a->H * ((a->T + MQ - 1) / MQ), next = 0;
#pragma omp parallel num_threads(a->threads)
    for (;;) {
        int64_t task = __atomic_fetch_add(&next, 1, __ATOMIC_RELAXED);
        if (task >= total) break;
        if (a->D == 64)
            run_task(a, task, 4);
        else
            run_task(a, task, 8);
    }
    return 0;
}
