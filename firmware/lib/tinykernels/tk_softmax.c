/* SOFTMAX, int8 in / int8 out (scale 1/256, zero point -128), fixed-point exp. */
#include "tinykernels.h"
#include "tk_fixedpoint.h"

/* Input differences are scaled into Q5.26; the sum of exps accumulates in Q12.19. */
#define SCALED_DIFF_INT_BITS 5
#define ACCUM_INT_BITS 12

void tk_softmax_s8(const int8_t *in, int8_t *out, int rows, int depth, int32_t mult,
                   int left_shift, int32_t diff_min) {
  int r, c;
  for (r = 0; r < rows; ++r) {
    const int8_t *x = in + (long)r * depth;
    int8_t *y = out + (long)r * depth;
    int32_t max_in_row = -128;
    int32_t sum = 0;
    int32_t scale, headroom, bits_over_unit, exponent;
    for (c = 0; c < depth; ++c) max_in_row = TK_MAX(max_in_row, x[c]);
    for (c = 0; c < depth; ++c) {
      const int32_t diff = (int32_t)x[c] - max_in_row;
      if (diff >= diff_min) {
        const int32_t scaled = tk_srdhm(tk_shl_wrap(diff, left_shift), mult);
        sum += tk_rdbp(tk_exp_on_negative(scaled, SCALED_DIFF_INT_BITS), ACCUM_INT_BITS);
      }
    }
    /* 1/sum as a Q0.31 mantissa and a power of two. */
    headroom = tk_clz32((uint32_t)sum);
    bits_over_unit = ACCUM_INT_BITS - headroom;
    scale = tk_one_over_one_plus_x(tk_wrap32(((uint32_t)sum << headroom) - 0x80000000u));
    exponent = bits_over_unit + 31 - 8;
    /* The computed values are all written after the row is read, so in place is safe. */
    for (c = 0; c < depth; ++c) {
      const int32_t diff = (int32_t)x[c] - max_in_row;
      if (diff >= diff_min) {
        const int32_t scaled = tk_srdhm(tk_shl_wrap(diff, left_shift), mult);
        const int32_t e = tk_exp_on_negative(scaled, SCALED_DIFF_INT_BITS);
        y[c] = tk_sat8(tk_rdbp(tk_srdhm(scale, e), exponent) - 128);
      } else {
        y[c] = -128;
      }
    }
  }
}
