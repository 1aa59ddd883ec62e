/* FULLY_CONNECTED for cores with Helium (MVE).
 *
 * Per output channel one pass over the filter row: VMLADAVA accumulates filter x input and
 * VADDVA the filter sum, which times the input offset completes the dot product with
 * (input + offset); 16 bytes per step, the last step predicated. Four channels are requantized
 * together (tk_mve.h). Weights with a non-zero zero point take the reference kernel.
 */
#include "tk_mve.h"

#if TK_MVE

void tk_fully_connected_s8(const tk_fc_params *p, const int8_t *in, const int8_t *filter,
                           const int32_t *bias, int8_t *out) {
  const int k = p->accum_depth, n = p->out_depth;
  int b, oc, i;
  if (p->filter_offset != 0) {
    tk_fully_connected_s8_ref(p, in, filter, bias, out);
    return;
  }
  for (b = 0; b < p->batches; ++b) {
    const int8_t *x = in + (long)b * k;
    int8_t *o = out + (long)b * n;
    for (oc = 0; oc < n; oc += 4) {
      int32_t acc[4] __attribute__((aligned(16)));
      int32_t mult[4] __attribute__((aligned(16))), shift[4] __attribute__((aligned(16)));
      int32x4_t v, left, negright;
      for (i = 0; i < 4; ++i) {
        const int c = oc + i < n ? oc + i : n - 1;
        const int8_t *w = filter + (long)c * k;
        const int q = p->per_channel ? c : 0;
        int32_t dot = 0, sum = 0;
        int j = 0;
        for (; j + 16 <= k; j += 16) {
          const int8x16_t wv = vldrbq_s8(w + j);
          dot = vmladavaq_s8(dot, vldrbq_s8(x + j), wv);
          sum = vaddvaq_s8(sum, wv);
        }
        if (j < k) {
          const mve_pred16_t pr = vctp8q(k - j);
          const int8x16_t wv = vldrbq_z_s8(w + j, pr);
          dot = vmladavaq_s8(dot, vldrbq_z_s8(x + j, pr), wv);
          sum = vaddvaq_s8(sum, wv);
        }
        /* Wrapping int32 arithmetic, as the reference accumulator. */
        acc[i] = tk_wrap32((uint32_t)dot + (uint32_t)p->in_offset * (uint32_t)sum +
                           (uint32_t)(bias ? bias[c] : 0));
        mult[i] = p->mult[q];
        shift[i] = p->shift[q];
      }
      v = vldrwq_s32(shift);
      left = vmaxq_s32(v, vdupq_n_s32(0));
      negright = vminq_s32(v, vdupq_n_s32(0));
      v = tk_mve_rq(vldrwq_s32(acc), vldrwq_s32(mult), left, negright);
      v = tk_mve_clamp(vaddq_n_s32(v, p->out_offset), p->act_min, p->act_max);
      vstrbq_p_s32(o + oc, v, vctp32q(n - oc));
    }
  }
}

#endif
