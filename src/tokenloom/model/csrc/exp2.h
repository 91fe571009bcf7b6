/* Shared by tokenloom's CPU kernels: 2^f's polynomial, and 2^x in AVX-512 registers. */
#ifndef TOKENLOOM_EXP2_H
#define TOKENLOOM_EXP2_H

/* 2^f for |f| ≤ 1/2 by Horner's rule, given a multiply-add FMA(a, b, c) = a·b + c and SET(constant):
 * one definition for scalar and vector code. */
#define TL_EXP2_POLY(FMA, SET, f)                                                                          \
    FMA(FMA(FMA(FMA(FMA(FMA(SET(1.5346250438597053e-04f), f, SET(1.3399935560300946e-03f)), f,            \
                        SET(9.61848720908165e-03f)), f, SET(5.550328642129898e-02f)), f,                   \
                SET(2.4022646248340607e-01f)), f, SET(6.931471824645996e-01f)), f, SET(1.0f))

#ifdef __AVX512F__
#include <immintrin.h>

/* 2^x = 2^n · 2^f with n = round(x), |f| ≤ 1/2, and 2^f by a degree-6 polynomial fitted to its
 * relative error on [−1/2, 1/2] (1.9e-9, under the 9.6e-8 that float32 evaluation adds; a Taylor
 * polynomial needs degree 7 for this). Lanes below −126, −inf among them, give exactly 0; lanes
 * above 128 give +inf. */
static inline __m512 exp2_ps(__m512 x) {
    __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-126.0f), _CMP_GE_OQ);
    x = _mm512_max_ps(x, _mm512_set1_ps(-126.0f));
    __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_sub_ps(x, n);
    __m512 p = TL_EXP2_POLY(_mm512_fmadd_ps, _mm512_set1_ps, f);
    return _mm512_maskz_mov_ps(live, _mm512_scalef_ps(p, n));
}
#endif

#endif
