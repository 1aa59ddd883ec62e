/* Fixed-point helpers shared by the kernels (internal header).
 *
 * These reproduce the integer arithmetic TFLite Micro's reference kernels use (double-rounding
 * requantization, Q-format exp/reciprocal), written so that no step relies on signed overflow.
 */
#ifndef TK_FIXEDPOINT_H
#define TK_FIXEDPOINT_H

#include <stdint.h>

#define TK_MIN(a, b) ((a) < (b) ? (a) : (b))
#define TK_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Two's-complement wrap of a 32-bit pattern, without implementation-defined conversions. */
static inline int32_t tk_wrap32(uint32_t u) {
  return u <= 0x7FFFFFFFu ? (int32_t)u : (int32_t)(u - 0x80000000u) - INT32_MAX - 1;
}

/* A channel's bias (0 when bias is NULL) plus in_offset times the sum of its weights: the input
 * offset folded into the accumulator's start, as the 32-bit pattern of the reference's wrapping
 * int32 accumulator; tk_fold_bias gives it as an int32_t. Both forms because GCC schedules the
 * code around them differently: each kernel uses the one it runs faster with. */
#define TK_FOLD_BIAS(bias, c, in_offset, sum) \
  ((uint32_t)((bias) ? (bias)[c] : 0) + (uint32_t)(in_offset) * (uint32_t)(sum))

static inline int32_t tk_fold_bias(const int32_t *bias, int c, int32_t in_offset, int32_t sum) {
  return tk_wrap32(TK_FOLD_BIAS(bias, c, in_offset, sum));
}

/* x * 2^n with 32-bit wrap-around (what the reference code's `x * (1 << n)` does in practice). */
static inline int32_t tk_shl_wrap(int32_t x, int n) {
  return tk_wrap32((uint32_t)x << n);
}

/* round(a * b / 2^31), saturating the single overflow case. */
static inline int32_t tk_srdhm(int32_t a, int32_t b) {
  int64_t ab;
  if (a == b && a == INT32_MIN) return INT32_MAX;
  ab = (int64_t)a * (int64_t)b;
  ab += ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
  return (int32_t)(ab / ((int64_t)1 << 31));
}

/* Arithmetic shift right rounding half away from zero; exponent in [0, 31]. */
static inline int32_t tk_rdbp(int32_t x, int exponent) {
  const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  /* Floor division by 2^exponent: right shift of a negative value is implementation-defined. */
  const int32_t floor_div = x >= 0 ? (x >> exponent)
                                   : (int32_t)(-1 - (int32_t)((-1 - (int64_t)x) >> exponent));
  return floor_div + (remainder > threshold ? 1 : 0);
}

/* Multiply by a quantized multiplier (Q31) and a power of two, as TFLM does it. */
static inline int32_t tk_mbqm(int32_t x, int32_t mult, int shift) {
  const int left = shift > 0 ? shift : 0;
  const int right = shift > 0 ? 0 : -shift;
  return tk_rdbp(tk_srdhm(tk_shl_wrap(x, left), mult), right);
}

/* Saturating x * 2^n for n in [0, 31). */
static inline int32_t tk_sat_shl(int32_t x, int n) {
  const int32_t threshold = (int32_t)(((int64_t)1 << (31 - n)) - 1);
  if (x > threshold) return INT32_MAX;
  if (x < -threshold) return INT32_MIN;
  return tk_shl_wrap(x, n);
}

static inline int tk_clz32(uint32_t x) {
  int n = 0;
  if (x == 0) return 32;
  while (!(x & 0x80000000u)) {
    x <<= 1;
    ++n;
  }
  return n;
}

static inline int32_t tk_rounding_half_sum(int32_t a, int32_t b) {
  const int64_t sum = (int64_t)a + (int64_t)b;
  return (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
}

/* exp(a) for a in [-1/4, 0), a and result in Q0.31. */
static inline int32_t tk_exp_quarter(int32_t a) {
  const int32_t constant_term = 1895147668;     /* exp(-1/8) */
  const int32_t one_third = 715827883;
  const int32_t x = a + (1 << 28);              /* Taylor expansion around -1/8 */
  const int32_t x2 = tk_srdhm(x, x);
  const int32_t x3 = tk_srdhm(x2, x);
  const int32_t x4 = tk_srdhm(x2, x2);
  const int32_t x4_over_4 = tk_rdbp(x4, 2);
  const int32_t poly = tk_rdbp(tk_srdhm(x4_over_4 + x3, one_third) + x2, 1);
  return constant_term + tk_srdhm(constant_term, x + poly);
}

/* exp(a) for a <= 0 in Q(int_bits).(31-int_bits); result in Q0.31. int_bits must be <= 5. */
static inline int32_t tk_exp_on_negative(int32_t a, int int_bits) {
  /* exp(-2^k) in Q0.31 for k = -2..4 */
  static const int32_t barrel[7] = {1672461947, 1302514674, 790015084, 290630308,
                                    39332535, 720401, 242};
  const int frac_bits = 31 - int_bits;
  const int32_t quarter = (int32_t)1 << (frac_bits - 2);
  const int32_t a_mod_quarter_minus_quarter = (a & (quarter - 1)) - quarter;
  const int32_t remainder = a_mod_quarter_minus_quarter - a;
  int32_t result = tk_exp_quarter(tk_sat_shl(a_mod_quarter_minus_quarter, int_bits));
  int k;
  for (k = -2; k <= 4; ++k) {
    if (int_bits > k && (remainder & ((int32_t)1 << (frac_bits + k)))) {
      result = tk_srdhm(result, barrel[k + 2]);
    }
  }
  return a == 0 ? INT32_MAX : result;
}

/* 1 / (1 + x) for x in [0, 1) in Q0.31 (Newton-Raphson, three steps). */
static inline int32_t tk_one_over_one_plus_x(int32_t a) {
  const int32_t half_denominator = tk_rounding_half_sum(a, INT32_MAX);
  int32_t x = 1515870810 + tk_srdhm(half_denominator, -1010580540); /* 48/17 - 32/17 d, Q2.29 */
  int i;
  for (i = 0; i < 3; ++i) {
    const int32_t one_minus = (1 << 29) - tk_srdhm(half_denominator, x);
    x = x + tk_sat_shl(tk_srdhm(x, one_minus), 2);
  }
  return tk_sat_shl(x, 1);
}

static inline int8_t tk_sat8(int32_t v) {
  return (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
}

#endif /* TK_FIXEDPOINT_H */
