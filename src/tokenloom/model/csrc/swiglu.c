/* SwiGLU in float32 for AVX-512 CPUs: out[r, j] = silu(h[r, j]) · h[r, F + j], silu(g) = g / (1 + e^−g).
 *
 * h is the fused gate-and-up projection, rows of 2F (gate first). One pass reads each row and
 * writes its F outputs, where PyTorch makes two (silu, then the product) and an intermediate.
 * Built with causal_attention.c into one library by tokenloom/model/native.py.
 */
#include <immintrin.h>
#include <stdint.h>

#include "exp2.h"

/* Returns 0, or 1 when F is not a multiple of 16. Rows are shared among PyTorch's OpenMP threads. */
int tl_swiglu(const float *h, float *out, int64_t rows, int64_t F, int threads) {
    if (F % 16) return 1;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *gate = h + r * 2 * F, *up = gate + F;
        float *o = out + r * F;
        for (int64_t j = 0; j < F; j += 16) {
            __m512 g = _mm512_loadu_ps(gate + j), u = _mm512_loadu_ps(up + j);
            __m512 e = exp2_ps(_mm512_mul_ps(g, _mm512_set1_ps(-1.4426950408889634f))); /* e^−g */
            __m512 silu = _mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
            _mm512_storeu_ps(o + j, _mm512_mul_ps(silu, u));
        }
    }
    return 0;
}
