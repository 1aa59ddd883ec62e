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

void tk_add_s8(const tk_binary_params *p, const int8_t *in1, const int8_t *in2, int8_t *out) {
  const long n = flat_count(p);
  long i;
  if (n == 0 || p->lut1 == NULL || p->lut2 == NULL) {
    tk_add_s8_ref(p, in1, in2, out);
    return;
  }
  for (i = 0; i < n; i += 4) {
    const mve_pred16_t pr = vctp32q((uint32_t)(n - i < 4 ? n - i : 4));
    const uint32x4_t a = vldrbq_z_u32((const uint8_t *)in1 + i, pr);
    const uint32x4_t b = vldrbq_z_u32((const uint8_t *)in2 + i, pr);
    const int32x4_t s = vhaddq_s32(vldrwq_gather_shifted_offset_s32(p->lut1, a),
                                   vldrwq_gather_shifted_offset_s32(p->lut2, b));
    int32x4_t v = tk_mve_rq1(s, p->out_mult, p->out_shift);
    v = tk_mve_clamp(vaddq_n_s32(v, p->out_offset), p->act_min, p->act_max);
    vstrbq_p_s32(out + i, v, pr);
  }
}

#endif
