/* The CPU's float32 multiply-add peak: what no float32 implementation can beat.
 *
 *     cc -O2 -march=x86-64-v4 -fopenmp benchmarks/fma_peak.c -o fma_peak && OMP_NUM_THREADS=2 ./fma_peak
 *
 * Each thread runs 12 independent chains of 16-wide fused multiply-adds (enough to
 * cover the instruction's latency on current x86 cores), all in registers, so
 * nothing but the multiply-add units is measured. Prints the best of 7 runs in
 * GFLOP/s (a multiply-add counts as 2), over all OpenMP threads together.
 */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>

#define CHAINS 12

int main(void) {
    const long steps = 20000000;
    double best = 0.0;
    float sink = 0.0f;
    for (int run = 0; run < 7; run++) {
        int threads = 1;
        double start = omp_get_wtime();
#pragma omp parallel reduction(+ : sink)
        {
#pragma omp single
            threads = omp_get_num_threads();
            __m512 acc[CHAINS];
            const __m512 mul = _mm512_set1_ps(0.999999f), add = _mm512_set1_ps(1e-7f);
            for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_set1_ps((float)i);
            for (long n = 0; n < steps; n++)
#pragma GCC unroll 12
                for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_fmadd_ps(acc[i], mul, add);
            for (int i = 1; i < CHAINS; i++) acc[0] = _mm512_add_ps(acc[0], acc[i]);
            sink += _mm512_reduce_add_ps(acc[0]);  /* keeps the chains alive */
        }
        double flops = 2.0 * 16 * CHAINS * (double)steps * threads;
        double rate = flops / (omp_get_wtime() - start);
        if (rate > best) best = rate;
    }
    printf("%.1f\n", best / 1e9);
    return sink == 0.5f;  /* never: the sum is far from 0.5 */
}
