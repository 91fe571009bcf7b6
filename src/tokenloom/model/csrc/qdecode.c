/* One decode step of a Llama-family model on GGUF blocks: every layer in one call.
 *
 * Decoding one token per sequence is a chain of small operations (norm, projections,
 * rotary embedding, attention over the cache, SwiGLU, residual adds), each far too small
 * to pay for a trip through Python and PyTorch's dispatcher: at batch 1 those trips cost
 * more than the arithmetic. Here the whole stack of layers runs in one OpenMP parallel
 * region, the threads meeting at a barrier between stages:
 *
 *   per layer:  h = rmsnorm(x)·g1 → int8 → qkv = h·Wqkvᵀ → rope(q), rope(k) → k, v into the cache
 *               → attention of each query head over its sequence's positions → int8
 *               → x += a·Woᵀ → h = rmsnorm(x)·g2 → int8 → u = h·Wupᵀ → silu(gate)·up → int8
 *               → x += s·Wdownᵀ
 *
 * The products are qmatmul.c's; norms, rotary embedding and attention are float32, as is
 * the cache: tokenloom/model/kv_cache.py's pool, (slots, Hkv, capacity, D) per layer, which
 * the step reads and writes in place at each sequence's own position. Every sequence's
 * numbers are computed the same way whatever else is in the batch.
 */
#include <stdlib.h>

#include "exp2.h"
#include "qblocks.h"

void tl_qrows(int kind, const uint8_t *w, int64_t n0, int64_t n1, int64_t K, const act_group *x, int64_t M,
              float *y, int64_t ldy, int accumulate);
int tl_qsupported(int kind, int64_t K);

typedef struct {
    int64_t kind, N, K;
    const uint8_t *data;
} tl_weight;

typedef struct {
    int64_t n_layers, dim, n_heads, n_kv_heads, head_dim, hidden, max_len;
    float eps;
    const float *const *attn_norm, *const *mlp_norm; /* [layers] → dim floats */
    const tl_weight *qkv, *out, *up, *down;         /* [layers]: (H + 2·Hkv)·D × dim, dim × H·D, 2F × dim, dim × F */
    const float *rope_cos, *rope_sin;               /* (max_len, D), each half repeated */
} tl_model;

typedef struct {
    float *const *k, *const *v; /* [layers] → (slots, Hkv, capacity, D) */
    int64_t slots, capacity;
} tl_cache;

#define ROWS_PER_CHUNK 16 /* output rows of a product handed to a thread at a time */

static void rms_norm_row(const float *x, const float *g, int64_t C, float eps, float *out) {
    double ss = 0.0;
    for (int64_t i = 0; i < C; i++) ss += (double)x[i] * x[i];
    float r = 1.0f / sqrtf((float)(ss / (double)C) + eps);
    for (int64_t i = 0; i < C; i++) out[i] = x[i] * r * g[i];
}

/* Σ a[i]·b[i] over 16 running sums (one vector register or two), so that compilers vectorize it
 * without reordering float additions on their own. n a multiple of 16 or not. */
static inline float dot16_generic(const float *a, const float *b, int64_t n) {
    float acc[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) acc[j] += a[i + j] * b[i + j];
    for (int64_t j = 0; i < n; i++, j++) acc[j] += a[i] * b[i];
    for (int w = 8; w > 0; w /= 2)
        for (int j = 0; j < w; j++) acc[j] += acc[j + w];
    return acc[0];
}

/* The same sums in the same order, the halving steps in registers: the compiled loop above went
 * through memory for them, which at a few hundred positions was most of a head's cost. */
static inline float dot16(const float *a, const float *b, int64_t n) {
#if defined(__AVX512F__)
    if (n % 16 == 0) {
        __m512 acc = _mm512_setzero_ps();
        for (int64_t i = 0; i < n; i += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc);
        __m256 h = _mm256_add_ps(_mm512_castps512_ps256(acc), _mm512_extractf32x8_ps(acc, 1));
        __m128 v = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
        v = _mm_add_ps(v, _mm_movehl_ps(v, v));
        return _mm_cvtss_f32(_mm_add_ss(v, _mm_shuffle_ps(v, v, 1)));
    }
#elif defined(TL_AVX2)
    if (n % 16 == 0) {
        __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
        for (int64_t i = 0; i < n; i += 16) {
            lo = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), lo);
            hi = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), hi);
        }
        __m256 h = _mm256_add_ps(lo, hi);
        __m128 v = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
        v = _mm_add_ps(v, _mm_movehl_ps(v, v));
        return _mm_cvtss_f32(_mm_add_ss(v, _mm_shuffle_ps(v, v, 1)));
    }
#endif
    return dot16_generic(a, b, n);
}

#define SCALAR(c) (c)
#define SCALAR_MULADD(a, b, c) ((a) * (b) + (c)) /* contracted to one fma where the target has it */

/* e^x for x ≤ 0 (scores minus their maximum; vexp_nonpositive below is the same lane by lane):
 * 2^t = 2^n · 2^f with n = round(t), |f| ≤ 1/2, and 2^f by the degree-6 polynomial of exp2.h
 * (relative error 1.9e-9 before float32 rounding). Below e^−87 the result is 0, as float32's
 * normal range ends there. */
static inline float exp_nonpositive(float x) {
    float t = x * 1.4426950408889634f;
    t = t < -126.0f ? -126.0f : t;
    float n = (float)(int32_t)(t - 0.5f); /* round to nearest for t ≤ 0 */
    float f = t - n;
    float p = TL_EXP2_POLY(SCALAR_MULADD, SCALAR, f);
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, 4);
    return x < -87.0f ? 0.0f : p * scale;
}

static void rope_head(float *h, const float *cos, const float *sin, int64_t D) {
    int64_t half = D / 2;
    for (int64_t i = 0; i < half; i++) {
        float a = h[i], b = h[i + half];
        h[i] = a * cos[i] - b * sin[i];
        h[i + half] = b * cos[i + half] + a * sin[i + half];
    }
}

#if defined(__AVX512F__)
#define VW 16 /* floats a vector */
#define vf __m512
#define vi __m512i
#define vset _mm512_set1_ps
#define vload _mm512_loadu_ps
#define vstore _mm512_storeu_ps
#define vmax _mm512_max_ps
#define vsub _mm512_sub_ps
#define vmul _mm512_mul_ps
#define vadd _mm512_add_ps
#define vfma _mm512_fmadd_ps
#define vtrunc _mm512_cvttps_epi32
#define vtofloat _mm512_cvtepi32_ps
#define vpow2(n) _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n, _mm512_set1_epi32(127)), 23))
#define vkeep(x, e) _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, vset(-87.0f), _CMP_NLT_UQ), e)
#elif defined(TL_AVX2)
#define VW 8
#define vf __m256
#define vi __m256i
#define vset _mm256_set1_ps
#define vload _mm256_loadu_ps
#define vstore _mm256_storeu_ps
#define vmax _mm256_max_ps
#define vsub _mm256_sub_ps
#define vmul _mm256_mul_ps
#define vadd _mm256_add_ps
#define vfma _mm256_fmadd_ps
#define vtrunc _mm256_cvttps_epi32
#define vtofloat _mm256_cvtepi32_ps
#define vpow2(n) _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23))
#define vkeep(x, e) _mm256_and_ps(_mm256_cmp_ps(x, vset(-87.0f), _CMP_NLT_UQ), e)
#endif

#ifdef VW
/* exp_nonpositive, its operations lane by lane (fused multiply-adds where the scalar's compile to them) */
static inline vf vexp_nonpositive(vf x) {
    vf u = vmax(vmul(x, vset(1.4426950408889634f)), vset(-126.0f));
    vi n = vtrunc(vsub(u, vset(0.5f)));
    vf f = vsub(u, vtofloat(n)), p = TL_EXP2_POLY(vfma, vset, f);
    return vkeep(x, vmul(p, vpow2(n)));
}
#endif

/* s[t] ← e^(s[t] − max s); returns Σ s over 16 running sums (position t in sum t mod 16), halved
 * as dot16's. The maximum is exact in any order; the vector loops compute what the C tail does. */
static float exp_shifted(float *s, int64_t S) {
    float top = -INFINITY, acc[16] = {0};
    int64_t t = 0;
#ifdef VW
    vf m = vset(-INFINITY);
    for (; t + VW <= S; t += VW) m = vmax(m, vload(s + t));
    float lanes[VW];
    vstore(lanes, m);
    for (int j = 0; j < VW; j++) top = lanes[j] > top ? lanes[j] : top;
#endif
    for (int64_t r = t; r < S; r++) top = s[r] > top ? s[r] : top;
    t = 0;
#ifdef VW
    vf sum[16 / VW];
    for (int j = 0; j < 16 / VW; j++) sum[j] = vset(0.0f);
    for (; t + 16 <= S; t += 16)
        for (int j = 0; j < 16 / VW; j++) {
            vf e = vexp_nonpositive(vsub(vload(s + t + j * VW), vset(top)));
            vstore(s + t + j * VW, e);
            sum[j] = vadd(sum[j], e);
        }
    for (int j = 0; j < 16 / VW; j++) vstore(acc + j * VW, sum[j]);
#endif
    for (; t < S; t++) { /* all of them in portable C, the last S mod 16 after the vector loop */
        s[t] = exp_nonpositive(s[t] - top);
        acc[t % 16] += s[t];
    }
    for (int w = 8; w > 0; w /= 2)
        for (int j = 0; j < w; j++) acc[j] += acc[j + w];
    return acc[0];
}

/* o = Σ_t (s[t]·inv)·V[t], up to 64 of o's values held in registers over the positions (written
 * through o at every position, they were reloaded each time): four independent chains, as one
 * would wait on each multiply-add. Each o[d] still adds its terms in position order. */
static void weigh_values(const float *s, float inv, const float *V, int64_t S, int64_t D, float *o) {
    int64_t d0 = 0;
#ifdef VW
    for (; d0 + 4 * VW <= D; d0 += 4 * VW) {
        vf acc[4] = {vset(0.0f), vset(0.0f), vset(0.0f), vset(0.0f)};
        for (int64_t t = 0; t < S; t++) {
            const vf p = vset(s[t] * inv);
            for (int j = 0; j < 4; j++) acc[j] = vfma(p, vload(V + t * D + d0 + j * VW), acc[j]);
        }
        for (int j = 0; j < 4; j++) vstore(o + d0 + j * VW, acc[j]);
    }
#endif
    for (int64_t d = d0; d < D; d++) {
        float acc = 0.0f;
        for (int64_t t = 0; t < S; t++) acc += s[t] * inv * V[t * D + d];
        o[d] = acc;
    }
}

/* One query head over S positions of keys and values (S, D) each, as the step computes it: the
 * step's own attention, callable alone so that tests can hold it to a float64 softmax. */
void tl_attend_head(const float *q, const float *K, const float *V, int64_t S, int64_t D, float scale,
                    float *scores, float *out) {
    for (int64_t t = 0; t < S; t++) scores[t] = dot16(q, K + t * D, D) * scale;
    weigh_values(scores, 1.0f / exp_shifted(scores, S), V, S, D, out);
}

/* Products over all rows of W, shared among the team: called by every thread of the region. */
static void team_product(const tl_weight *w, const act_group *act, int64_t B, float *y, int64_t ldy, int accumulate) {
    int64_t chunks = (w->N + ROWS_PER_CHUNK - 1) / ROWS_PER_CHUNK;
#pragma omp for schedule(static)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t n0 = c * ROWS_PER_CHUNK, n1 = n0 + ROWS_PER_CHUNK < w->N ? n0 + ROWS_PER_CHUNK : w->N;
        tl_qrows((int)w->kind, w->data, n0, n1, w->K, act, B, y, ldy, accumulate);
    }
}

/* Checks what the step relies on; 0 when the model can run here. */
int tl_decode_check(const tl_model *m) {
    if (m->head_dim % 2 || m->n_heads % m->n_kv_heads || m->dim % QK || m->hidden % QK) return 1;
    for (int64_t l = 0; l < m->n_layers; l++) {
        const tl_weight *ws[4] = {&m->qkv[l], &m->out[l], &m->up[l], &m->down[l]};
        for (int i = 0; i < 4; i++)
            if (!tl_qsupported((int)ws[i]->kind, ws[i]->K) || (ws[i]->kind > TL_X8 && ws[i]->N % 8)) return 2;
    }
    return 0;
}

/* x (B, dim): the embedded tokens in, the residual stream after the last layer out (before the
 * final norm). Sequence b writes position pos[b] of cache slot slots[b] and attends to [0, pos[b]].
 * Returns 0; 1 for a position or slot out of range; 2 when scratch memory is short. */
int tl_decode(const tl_model *m, const tl_cache *c, int64_t B, const int64_t *slots, const int64_t *pos, float *x,
              int threads) {
    const int64_t C = m->dim, H = m->n_heads, Hkv = m->n_kv_heads, D = m->head_dim, F = m->hidden;
    const int64_t G = H / Hkv, NQKV = (H + 2 * Hkv) * D, widest = C > F ? (C > H * D ? C : H * D) : F;
    for (int64_t b = 0; b < B; b++)
        if (pos[b] < 0 || pos[b] >= c->capacity || pos[b] >= m->max_len || slots[b] < 0 || slots[b] >= c->slots)
            return 1;
    act_group *act = malloc(sizeof(act_group) * (size_t)(B * (widest / QK)));
    float *qkv = malloc(sizeof(float) * (size_t)(B * NQKV));
    float *att = malloc(sizeof(float) * (size_t)(B * H * D));
    float *up = malloc(sizeof(float) * (size_t)(B * 2 * F));
    float *row = malloc(sizeof(float) * (size_t)(B * widest));
    int64_t longest = 0;
    for (int64_t b = 0; b < B; b++) longest = pos[b] + 1 > longest ? pos[b] + 1 : longest;
    float *scores = malloc(sizeof(float) * (size_t)(B * H * longest));
    int status = 0;
    if (!act || !qkv || !att || !up || !row || !scores) {
        status = 2;
        goto done;
    }
    const float scale = 1.0f / sqrtf((float)D);
    const int64_t slot_stride = Hkv * c->capacity * D, head_stride = c->capacity * D;

#pragma omp parallel num_threads(threads)
    for (int64_t l = 0; l < m->n_layers; l++) {
#pragma omp for schedule(static)
        for (int64_t b = 0; b < B; b++) {
            rms_norm_row(x + b * C, m->attn_norm[l], C, m->eps, row + b * widest);
            quantize_row(row + b * widest, C, act + b * (C / QK));
        }
        team_product(&m->qkv[l], act, B, qkv, NQKV, 0);

        /* keys rotate and go to the cache with the values, one (sequence, kv head) at a time */
#pragma omp for schedule(static)
        for (int64_t i = 0; i < B * Hkv; i++) {
            int64_t b = i / Hkv, g = i % Hkv;
            float *k = qkv + b * NQKV + (H + g) * D, *v = k + Hkv * D;
            rope_head(k, m->rope_cos + pos[b] * D, m->rope_sin + pos[b] * D, D);
            float *base = c->k[l] + slots[b] * slot_stride + g * head_stride + pos[b] * D;
            memcpy(base, k, sizeof(float) * D);
            memcpy(c->v[l] + slots[b] * slot_stride + g * head_stride + pos[b] * D, v, sizeof(float) * D);
        }
        /* each query head over the positions its sequence has */
#pragma omp for schedule(static)
        for (int64_t i = 0; i < B * H; i++) {
            int64_t b = i / H, h = i % H, g = h / G, S = pos[b] + 1;
            float *q = qkv + b * NQKV + h * D;
            rope_head(q, m->rope_cos + pos[b] * D, m->rope_sin + pos[b] * D, D);
            const float *K = c->k[l] + slots[b] * slot_stride + g * head_stride;
            const float *V = c->v[l] + slots[b] * slot_stride + g * head_stride;
            tl_attend_head(q, K, V, S, D, scale, scores + i * longest, att + b * H * D + h * D);
        }
#pragma omp for schedule(static)
        for (int64_t b = 0; b < B; b++) quantize_row(att + b * H * D, H * D, act + b * (H * D / QK));
        team_product(&m->out[l], act, B, x, C, 1);

#pragma omp for schedule(static)
        for (int64_t b = 0; b < B; b++) {
            rms_norm_row(x + b * C, m->mlp_norm[l], C, m->eps, row + b * widest);
            quantize_row(row + b * widest, C, act + b * (C / QK));
        }
        team_product(&m->up[l], act, B, up, 2 * F, 0);
#pragma omp for schedule(static)
        for (int64_t b = 0; b < B; b++) {
            const float *gate = up + b * 2 * F, *lin = gate + F;
            float *s = row + b * widest;
            for (int64_t j = 0; j < F; j++) s[j] = gate[j] / (1.0f + expf(-gate[j])) * lin[j];
            quantize_row(s, F, act + b * (F / QK));
        }
        team_product(&m->down[l], act, B, x, C, 1);
    }
done:
    free(act);
    free(qkv);
    free(att);
    free(up);
    free(row);
    free(scores);
    return status;
}
