/* ADD for cores with the DSP extension.
 *
 * The exporter tabulates both rescaled inputs (left shift and input multiplier) for all 256 int8
 * values, doubled, so one element costs two table loads, an add and the output rescale with
 * tk_rq (the doubled sum is its acc2): about 11 instructions per element, four elements per loop
 * from one word of each input. Broadcasting, missing tables and output multipliers that tk_rq
 * does not take use the reference kernel. Results equal it bit for bit.
 */
#include "tk_dsp.h"

#if TK_DSP && !TK_MVE

__attribute__((always_inline)) static inline void add_body(const int32_t *l1, const int32_t *l2,
                                                           const int8_t *in1, const int8_t *in2,
                                                           int8_t *out, long n, int32_t m,
                                                           int32_t c, int32_t right, int sat8,
                                                           int32_t lo, int32_t hi) {
  long i = 0;
#define TK_ADD_FAST(a, b, dst)                                    \
  do {                                                            \
    const int32_t v_ = tk_rq(l1[(a)] + l2[(b)], m, c, right);     \
    (dst) = sat8 ? (int8_t)__ssat(v_, 8) : tk_act(v_, lo, hi);    \
  } while (0)
  for (; i + 4 <= n; i += 4) {
    const uint32_t a = *(const tk_u32u *)(const void *)(in1 + i);
    const uint32_t b = *(const tk_u32u *)(const void *)(in2 + i);
    TK_ADD_FAST(a & 0xFF, b & 0xFF, out[i]);
    TK_ADD_FAST((a >> 8) & 0xFF, (b >> 8) & 0xFF, out[i + 1]);
    TK_ADD_FAST((a >> 16) & 0xFF, (b >> 16) & 0xFF, out[i + 2]);
    TK_ADD_FAST(a >> 24, b >> 24, out[i + 3]);
  }
  for (; i < n; ++i) TK_ADD_FAST((uint8_t)in1[i], (uint8_t)in2[i], out[i]);
#undef TK_ADD_FAST
}

__attribute__((noinline)) static void add_sat(const int32_t *l1, const int32_t *l2,
                                              const int8_t *in1, const int8_t *in2, int8_t *out,
                                              long n, int32_t m, int32_t c, int32_t right) {
  add_body(l1, l2, in1, in2, out, n, m, c, right, 1, -128, 127);
}

__attribute__((noinline)) static void add_clamp(const int32_t *l1, const int32_t *l2,
                                                const int8_t *in1, const int8_t *in2, int8_t *out,
                                                long n, int32_t m, int32_t c, int32_t right,
                                                int32_t lo, int32_t hi) {
  add_body(l1, l2, in1, in2, out, n, m, c, right, 0, lo, hi);
}

void tk_add_s8(const tk_binary_params *p, const int8_t *in1, const int8_t *in2, int8_t *out) {
  const long n = tk_flat_count(p);
  const int32_t lo = p->act_min, hi = p->act_max;
  int32_t c, right;
  if (!p->lut1 || !p->lut2 || n == 0 || !tk_rq_ok(p->out_mult, p->out_shift)) {
    tk_add_s8_ref(p, in1, in2, out);
    return;
  }
  right = -p->out_shift;
  c = tk_rq_add(right, p->out_offset);
  if (lo == -128 && hi == 127) {
    add_sat(p->lut1, p->lut2, in1, in2, out, n, p->out_mult, c, right);
  } else {
    add_clamp(p->lut1, p->lut2, in1, in2, out, n, p->out_mult, c, right, lo, hi);
  }
}

#else
typedef int tk_elementwise_dsp_unused;
#endif
