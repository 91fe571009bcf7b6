/* log Σ_j exp(x[r, j]) per row in float32 for AVX-512 CPUs: the normaliser of a softmax over the
 * vocabulary, from which −log P(target) = lse − x[target].
 *
 * Two passes over each row: its maximum m, then Σ 2^((x − m)·log2 e) with the exponential of
 * exp2.h, so lse = m + log Σ. A row of logits (192 KB for V = 49152) is still in the core's cache
 * for the second pass, where PyTorch's log-softmax writes a second (rows, V) array that is read
 * again to pick the targets. NaN anywhere in a row gives NaN; a row of −inf gives −inf. Rows
 * are shared among PyTorch's OpenMP threads. Built with the other kernels by
 * tokenloom/model/native.py.
 */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#include "exp2.h"

static inline __mmask16 tail_mask(int64_t V, int64_t j) {
    return V - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (V - j)) - 1);
}

/* x: rows of V floats, ld apart; lse: one float per row. Returns 0. */
int tl_logsumexp(const float *x, int64_t ld, int64_t rows, int64_t V, float *lse, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * ld;
        const __m512 low = _mm512_set1_ps(-INFINITY);
        __m512 top[4] = {low, low, low, low};
        __mmask16 nan = 0;
        int64_t j = 0;
        for (; j + 64 <= V; j += 64)
            for (int c = 0; c < 4; c++) {
                __m512 v = _mm512_loadu_ps(xr + j + 16 * c);
                nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
                top[c] = _mm512_max_ps(top[c], v);
            }
        for (; j < V; j += 16) {
            __m512 v = _mm512_mask_loadu_ps(low, tail_mask(V, j), xr + j);
            nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
            top[0] = _mm512_max_ps(top[0], v);
        }
        float m = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(top[0], top[1]), _mm512_max_ps(top[2], top[3])));
        if (nan || isinf(m)) { /* NaN, or no finite maximum to subtract */
            lse[r] = nan ? NAN : m;
            continue;
        }
        const __m512 mv = _mm512_set1_ps(m), log2e = _mm512_set1_ps(1.4426950408889634f);
        /* Each 64 terms are summed in float32, those sums in float64: a float32 running sum of
         * tens of thousands of small terms would drop their low bits, and always downwards. */
        __m512d sum = _mm512_setzero_pd();
        for (j = 0; j < V; j += 64) {
            __m512 block = _mm512_setzero_ps();
            for (int c = 0; c < 4 && j + 16 * c < V; c++) {
                __m512 v = _mm512_mask_loadu_ps(low, tail_mask(V, j + 16 * c), xr + j + 16 * c);
                block = _mm512_add_ps(block, exp2_ps(_mm512_mul_ps(_mm512_sub_ps(v, mv), log2e))); /* −inf: 0 */
            }
            sum = _mm512_add_pd(sum, _mm512_add_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(block)),
                                                   _mm512_cvtps_pd(_mm512_extractf32x8_ps(block, 1))));
        }
        lse[r] = (float)((double)m + log(_mm512_reduce_add_pd(sum)));
    }
    return 0;
}
