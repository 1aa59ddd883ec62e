/* LOGISTIC, int8 in / int8 out (zero point -128), fixed-point sigmoid on Q4.27. */
#include "tinykernels.h"
#include "tk_fixedpoint.h"

#define INPUT_INT_BITS 4

static int32_t sigmoid_q0(int32_t a) {
  int32_t pos;
  if (a == 0) return 1 << 30;
  /* a is bounded by the input radius, so negation cannot overflow. */
  pos = tk_one_over_one_plus_x(tk_exp_on_negative(a > 0 ? -a : a, INPUT_INT_BITS));
  return a > 0 ? pos : INT32_MAX - pos;
}

void tk_logistic_s8(const int8_t *in, int8_t *out, int n, int32_t in_zp, int32_t radius,
                    int32_t mult, int left_shift) {
  int i;
  for (i = 0; i < n; ++i) {
    const int32_t x = (int32_t)in[i] - in_zp;
    if (x <= -radius) {
      out[i] = -128;
    } else if (x >= radius) {
      out[i] = 127;
    } else {
      const int32_t q4 = tk_mbqm(x, mult, left_shift);
      out[i] = tk_sat8(tk_rdbp(sigmoid_q0(q4), 31 - 8) - 128);
    }
  }
}
