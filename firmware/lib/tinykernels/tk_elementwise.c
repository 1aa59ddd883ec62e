/* ADD and MUL, int8, with numpy-style broadcasting over up to six dimensions. */
#include "tinykernels.h"
#include "tk_dsp.h"
#include "tk_fixedpoint.h"

static int32_t add_one(const tk_binary_params *p, int8_t a, int8_t b) {
  const int32_t x = tk_shl_wrap(p->in1_offset + a, p->left_shift);
  const int32_t y = tk_shl_wrap(p->in2_offset + b, p->left_shift);
  const int32_t sum = tk_mbqm(x, p->in1_mult, p->in1_shift) + tk_mbqm(y, p->in2_mult, p->in2_shift);
  const int32_t r = tk_mbqm(sum, p->out_mult, p->out_shift) + p->out_offset;
  return TK_MIN(p->act_max, TK_MAX(p->act_min, r));
}

static int32_t mul_one(const tk_binary_params *p, int8_t a, int8_t b) {
  const int32_t prod = (p->in1_offset + a) * (p->in2_offset + b);
  const int32_t r = p->out_offset + tk_mbqm(prod, p->out_mult, p->out_shift);
  return TK_MIN(p->act_max, TK_MAX(p->act_min, r));
}

static void binary(const tk_binary_params *p, const int8_t *in1, const int8_t *in2, int8_t *out,
                   int32_t (*fn)(const tk_binary_params *, int8_t, int8_t)) {
  const int *d = p->dims;
  const int *s1 = p->stride1;
  const int *s2 = p->stride2;
  long o = 0;
  int i0, i1, i2, i3, i4, i5;
  for (i0 = 0; i0 < d[0]; ++i0)
    for (i1 = 0; i1 < d[1]; ++i1)
      for (i2 = 0; i2 < d[2]; ++i2)
        for (i3 = 0; i3 < d[3]; ++i3)
          for (i4 = 0; i4 < d[4]; ++i4) {
            const long a = (long)i0 * s1[0] + (long)i1 * s1[1] + (long)i2 * s1[2] +
                           (long)i3 * s1[3] + (long)i4 * s1[4];
            const long b = (long)i0 * s2[0] + (long)i1 * s2[1] + (long)i2 * s2[2] +
                           (long)i3 * s2[3] + (long)i4 * s2[4];
            for (i5 = 0; i5 < d[5]; ++i5) {
              out[o++] = (int8_t)fn(p, in1[a + (long)i5 * s1[5]], in2[b + (long)i5 * s2[5]]);
            }
          }
}

void tk_add_s8_ref(const tk_binary_params *p, const int8_t *in1, const int8_t *in2,
                   int8_t *out) {
  binary(p, in1, in2, out, add_one);
}

#if !TK_DSP
void tk_add_s8(const tk_binary_params *p, const int8_t *in1, const int8_t *in2, int8_t *out) {
  tk_add_s8_ref(p, in1, in2, out);
}
#endif

void tk_mul_s8(const tk_binary_params *p, const int8_t *in1, const int8_t *in2, int8_t *out) {
  binary(p, in1, in2, out, mul_one);
}
