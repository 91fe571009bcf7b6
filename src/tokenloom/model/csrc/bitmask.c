/* A token mask applied to logits: out[r, j] = x[r, j] where bit j of row r's mask is set, else −inf.
 *
 * Structured output's matcher hands its allowed tokens as one bit per token, 32 to a word
 * (llguidance's layout: bit j of word w is token 32w + j). Expanding that to a boolean row and
 * selecting with numpy costs three passes over the vocabulary; here each word is one test, and
 * the runs of all-allowed or all-forbidden words that grammars give (inside a string nearly
 * everything, between values a few tokens) are a copy or a fill. Tokens at or past `known` (a
 * model vocabulary wider than the tokenizer's) are forbidden. Plain C: the compiler vectorizes
 * the copies and fills for whichever instruction set it builds for (model/blocks.py).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

/* mask (rows, words), x and out (rows, V), rows ld apart. Returns how many rows allow no token. */
int64_t tl_apply_bitmask(const uint32_t *mask, int64_t words, const float *x, float *out, int64_t rows, int64_t V,
                         int64_t ld, int64_t known) {
    int64_t empty = 0, limit = known < V ? known : V;
    if (limit > 32 * words) limit = 32 * words;
    for (int64_t r = 0; r < rows; r++) {
        const uint32_t *m = mask + r * words;
        const float *xr = x + r * ld;
        float *o = out + r * ld;
        int64_t allowed = 0, j = 0;
        for (; j + 32 <= limit; j += 32) {
            uint32_t bits = m[j / 32];
            if (bits == 0xFFFFFFFFu) {
                memcpy(o + j, xr + j, 32 * sizeof(float));
                allowed += 32;
            } else if (bits == 0) {
                for (int b = 0; b < 32; b++) o[j + b] = -INFINITY;
            } else {
                for (int b = 0; b < 32; b++) o[j + b] = (bits >> b) & 1u ? xr[j + b] : -INFINITY;
                allowed += __builtin_popcount(bits);
            }
        }
        for (; j < limit; j++) {
            int on = (m[j / 32] >> (j % 32)) & 1u;
            o[j] = on ? xr[j] : -INFINITY;
            allowed += on;
        }
        for (; j < V; j++) o[j] = -INFINITY;
        empty += allowed == 0;
    }
    return empty;
}
