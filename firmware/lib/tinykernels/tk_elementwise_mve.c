/* ADD for cores with Helium (MVE).
 *
 * The exporter tabulates both rescaled inputs (left shift and input multiplier, doubled) for
 * all 256 int8 values: four elements per step are two widening byte loads, two word gathers
 * from the tables, a halving add (the exact sum of the two rescaled inputs) and the output
 * requantization (tk_mve.h). Broadcasting and missing tables take the reference kernel. MUL
 * stays portable (tk_elementwise.c).
 */
#include "tk_mve.h"

#if TK_MVE

/* Elements of a broadcast-free operation, or 0 if either input is broadcast or strided. */
static long flat_count(const tk_binary_params *p) {
  long n = 1;
  int d;
  for (d = TK_MAX_DIMS - 1; d >= 0; --d) {
    if (p->dims[d] > 1 && (p->stride1[d] != n || p->stride2[d] != n)) return 0;
    n *= p->dims[d];
  }
  return n;
}

/* The loop over n elements with the parameters as scalars (an int8 store could alias *p and
 * force reloads): right shift >= 1 (fast rounding fix-up) or any shift. */
__attribute__((always_inline)) static inline void add_loop(
    const int32_t *l1, const int32_t *l2, const uint8_t *a, const uint8_t *b, int8_t *out, long n,
    int32_t mult, int32_t shift, int32_t off, int32_t lo, int32_t hi, int fast) {
  const int32x4_t vlo = vdupq_n_s32(lo), vhi = vdupq_n_s32(hi);
  long i = 0;
#define TK_ADD4(ua, ub, y)                                                                   \
  do {                                                                                       \
    const int32x4_t s_ = vhaddq_s32(vldrwq_gather_shifted_offset_s32(l1, (ua)),             \
                                    vldrwq_gather_shifted_offset_s32(l2, (ub)));            \
    if (fast) {                                                                              \
      (y) = vqrdmulhq_n_s32(s_, mult);                                                       \
      (y) = vrshlq_n_s32(vqaddq_s32((y), vshrq_n_s32((y), 31)), shift);                      \
    } else {                                                                                 \
      (y) = tk_mve_rq1(s_, mult, shift);                                                     \
    }                                                                                        \
    (y) = vminq_s32(vmaxq_s32(vaddq_n_s32((y), off), vlo), vhi);                             \
  } while (0)
  /* Predication only for the last elements (predicated loops compile poorly). */
  for (; i + 4 <= n; i += 4) {
    int32x4_t y;
    TK_ADD4(vldrbq_u32(a + i), vldrbq_u32(b + i), y);
    vstrbq_s32(out + i, y);
  }
  if (i < n) {
    const mve_pred16_t pr = vctp32q((uint32_t)(n - i));
    int32x4_t y;
    TK_ADD4(vldrbq_z_u32(a + i, pr), vldrbq_z_u32(b + i, pr), y);
    vstrbq_p_s32(out + i, y, pr);
  }
#undef TK_ADD4
}

void tk_add_s8(const tk_binary_params *p, const int8_t *in1, const int8_t *in2, int8_t *out) {
  const long n = flat_count(p);
  const uint8_t *a = (const uint8_t *)in1, *b = (const uint8_t *)in2; /* table index: the byte */
  if (n == 0 || p->lut1 == NULL || p->lut2 == NULL) {
    tk_add_s8_ref(p, in1, in2, out);
    return;
  }
  if (p->out_shift < 0) {
    add_loop(p->lut1, p->lut2, a, b, out, n, p->out_mult, p->out_shift, p->out_offset,
             p->act_min, p->act_max, 1);
  } else {
    add_loop(p->lut1, p->lut2, a, b, out, n, p->out_mult, p->out_shift, p->out_offset,
             p->act_min, p->act_max, 0);
  }
}

#endif
