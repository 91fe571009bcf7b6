/* RMSNorm (after an optional residual add) and rotary position embedding in float32 for AVX-512 CPUs.
 *
 *   tl_rms_norm:  s = x + h (or x),  y = s / sqrt(mean(s²) + eps) · w,  per row of C floats
 *   tl_rope:      y[d] = x[d]·cos[d] − x[d + D/2]·sin[d]     (d < D/2)
 *                 y[d] = x[d]·cos[d] + x[d − D/2]·sin[d]     (d ≥ D/2)
 *
 * PyTorch spends five or six passes over memory on each (squares, mean, scale and weight; a
 * concatenation, a negation, two products and a sum), each a parallel region of its own; these
 * read their input once and write their output once. Rows are shared among PyTorch's OpenMP
 * threads. Built with the other kernels into one library by tokenloom/model/native.py.
 */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

/* Rows (b, t) of B sequences of T: x row at x + b·x_sb + t·C (x may be the tail of longer
 * sequences); h, sum and y contiguous (B, T, C). h and sum are NULL without a residual add. C is
 * a multiple of 16: returns 1 otherwise, else 0. */
int tl_rms_norm(const float *x, int64_t x_sb, const float *h, float *sum, float *y, const float *w,
                int64_t B, int64_t T, int64_t C, float eps, int threads) {
    if (C % 16) return 1;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t row = 0; row < B * T; row++) {
        const float *xr = x + row / T * x_sb + row % T * C;
        const float *s = xr; /* the row to normalise: x, or x + h once written to sum */
        __m512 sq = _mm512_setzero_ps();
        if (h) {
            const float *hr = h + row * C;
            float *sr = sum + row * C;
            for (int64_t j = 0; j < C; j += 16) {
                __m512 v = _mm512_add_ps(_mm512_loadu_ps(xr + j), _mm512_loadu_ps(hr + j));
                _mm512_storeu_ps(sr + j, v);
                sq = _mm512_fmadd_ps(v, v, sq);
            }
            s = sr;
        } else {
            for (int64_t j = 0; j < C; j += 16) {
                __m512 v = _mm512_loadu_ps(xr + j);
                sq = _mm512_fmadd_ps(v, v, sq);
            }
        }
        __m512 r = _mm512_set1_ps(1.0f / sqrtf(_mm512_reduce_add_ps(sq) / (float)C + eps));
        float *yr = y + row * C;
        for (int64_t j = 0; j < C; j += 16)
            _mm512_storeu_ps(yr + j, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(s + j), r), _mm512_loadu_ps(w + j)));
    }
    return 0;
}

/* x: (B, N, T, D) heads with strides x_sb, x_sh, x_st (D contiguous); cos, sin: (B, T, D) with
 * strides c_sb (0 when shared by the batch) and c_st; y: (B, N, T, D) contiguous. D is a multiple
 * of 32: returns 1 otherwise, else 0. */
int tl_rope(const float *x, int64_t x_sb, int64_t x_sh, int64_t x_st, const float *cos, const float *sin,
            int64_t c_sb, int64_t c_st, float *y, int64_t B, int64_t N, int64_t T, int64_t D, int threads) {
    if (D % 32) return 1;
    const int64_t half = D / 2;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t bt = 0; bt < B * T; bt++) {
        int64_t b = bt / T, t = bt % T;
        const float *c = cos + b * c_sb + t * c_st, *s = sin + b * c_sb + t * c_st;
        for (int64_t n = 0; n < N; n++) {
            const float *xr = x + b * x_sb + n * x_sh + t * x_st;
            float *yr = y + ((b * N + n) * T + t) * D;
            for (int64_t j = 0; j < half; j += 16) {
                __m512 lo = _mm512_loadu_ps(xr + j), hi = _mm512_loadu_ps(xr + half + j);
                _mm512_storeu_ps(yr + j, _mm512_fmsub_ps(lo, _mm512_loadu_ps(c + j),
                                                         _mm512_mul_ps(hi, _mm512_loadu_ps(s + j))));
                _mm512_storeu_ps(yr + half + j, _mm512_fmadd_ps(hi, _mm512_loadu_ps(c + half + j),
                                                                _mm512_mul_ps(lo, _mm512_loadu_ps(s + half + j))));
            }
        }
    }
    return 0;
}
