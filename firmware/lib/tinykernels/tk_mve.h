/* Helium (MVE) helpers shared by the *_mve.c kernels (internal header).
 *
 * Requantization on four int32 lanes, bit-exact with TFLM's MultiplyByQuantizedMultiplier:
 * - VQRDMULH computes sat((2 a b + 2^31) >> 32) = floor((a b + 2^30) / 2^31), the same value as
 *   TFLM's SaturatingRoundingDoublingHighMul, whose nudge 1 - 2^30 for negative products and
 *   truncating division also round halves upwards (ceil((ab + 1 - 2^30) / 2^31) =
 *   floor((ab + 2^30) / 2^31)); both saturate only INT32_MIN * INT32_MIN.
 * - VRSHL by -e rounds halves upwards, TFLM's RoundingDivideByPOT rounds them away from zero: a
 *   negative value is first lowered by one (saturating, INT32_MIN stays exact) when e > 0.
 * - The left shift before the multiplication wraps like the reference's x * (1 << left).
 */
#ifndef TK_MVE_H
#define TK_MVE_H

#include "tk_dsp.h"

#if TK_MVE
#include <arm_mve.h>

/* Per-lane multiplier, left shift (>= 0) and negated right shift (<= 0). */
static inline int32x4_t tk_mve_rq(int32x4_t x, int32x4_t mult, int32x4_t left,
                                  int32x4_t negright) {
  const int32x4_t y = vqrdmulhq_s32(vshlq_s32(x, left), mult);
  const int32x4_t fix = vshrq_n_s32(vandq_s32(y, negright), 31);
  return vrshlq_s32(vqaddq_s32(y, fix), negright);
}

/* One multiplier and shift for all lanes (shift as TFLM stores it: > 0 left, < 0 right). */
static inline int32x4_t tk_mve_rq1(int32x4_t x, int32_t mult, int32_t shift) {
  const int32_t left = shift > 0 ? shift : 0;
  const int32_t negright = shift > 0 ? 0 : shift;
  const int32x4_t y = vqrdmulhq_n_s32(vshlq_r_s32(x, left), mult);
  const int32x4_t fix = vshrq_n_s32(vandq_s32(y, vdupq_n_s32(negright)), 31);
  return vrshlq_n_s32(vqaddq_s32(y, fix), negright);
}

static inline int32x4_t tk_mve_clamp(int32x4_t v, int32_t lo, int32_t hi) {
  return vminq_s32(vmaxq_s32(v, vdupq_n_s32(lo)), vdupq_n_s32(hi));
}

/* Sum of n int8 values (n >= 0): full vectors, then one predicated. */
static inline int32_t tk_mve_sum_s8(const int8_t *p, int n) {
  int32_t s = 0;
  for (; n >= 16; n -= 16, p += 16) s = vaddvaq_s8(s, vldrbq_s8(p));
  if (n > 0) s = vaddvaq_s8(s, vldrbq_z_s8(p, vctp8q(n)));
  return s;
}

/* dst[0..n) = src[0..n) and dst[0..n) = v (n >= 0), 16 bytes per step. */
static inline void tk_mve_copy(int8_t *dst, const int8_t *src, int n) {
  for (; n > 0; n -= 16, src += 16, dst += 16) {
    const mve_pred16_t p = vctp8q(n);
    vstrbq_p_s8(dst, vldrbq_z_s8(src, p), p);
  }
}

static inline void tk_mve_fill(int8_t *dst, int8_t v, int n) {
  const int8x16_t vv = vdupq_n_s8(v);
  for (; n > 0; n -= 16, dst += 16) vstrbq_p_s8(dst, vv, vctp8q(n));
}

/* Round a scratch pointer up to 16 bytes. */
static inline void *tk_mve_align16(void *p) {
  return (void *)(((uintptr_t)p + 15u) & ~(uintptr_t)15u);
}
#endif

#endif /* TK_MVE_H */
