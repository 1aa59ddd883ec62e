/* RELU and RELU6 (and friends), int8. */
#include "tinykernels.h"
#include "tk_fixedpoint.h"

void tk_relu_s8(const int8_t *in, int8_t *out, int n, int32_t in_zp, int32_t out_zp,
                int32_t mult, int shift, int32_t act_min, int32_t act_max) {
  int i;
  for (i = 0; i < n; ++i) {
    int32_t v = out_zp + tk_mbqm((int32_t)in[i] - in_zp, mult, shift);
    v = TK_MAX(act_min, v);
    v = TK_MIN(act_max, v);
    out[i] = (int8_t)v;
  }
}

/* TFLM's int8 RELU6 clamps in the input's scale without requantizing. */
void tk_clamp_s8(const int8_t *in, int8_t *out, int n, int8_t lower, int8_t upper) {
  int i;
  for (i = 0; i < n; ++i) {
    const int8_t v = in[i];
    out[i] = v > upper ? upper : (v < lower ? lower : v);
  }
}
