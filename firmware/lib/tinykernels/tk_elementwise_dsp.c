/* ADD for cores with the DSP extension.
 *
 * The exporter tabulates both rescaled inputs (left shift and input multiplier) for all 256 int8
 * values, doubled, so one element costs two table loads, an add and the output rescale: with
 * |2 * sum| < 2^31, SMMULR(2 * sum, m) = (sum * m + 2^30) >> 31, which is TFLM's rounding doubling
 * high multiply (its only saturating case, both operands INT32_MIN, cannot occur). Four elements
 * per loop from one word of each input. Broadcasting, missing tables and left-shift output
 * multipliers take the reference kernel. Results equal it bit for bit.
 */
#include "tk_dsp.h"

#if TK_DSP && !TK_MVE

static inline int32_t tk_smmulr(int32_t a, int32_t b) {
  int32_t r;
  __asm("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
  return r;
}

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

/* Output rescale of one sum with 1 <= right <= 22 and m >= 0: SMMLAR adds the rounding term
 * 2^(right - 1) + (out_offset << right) to SMMULR(sum, m) (|total| < 2^31), the round-half-away
 * correction takes the sign of sum (equal to the sign of SMMULR(sum, m) unless that is 0, where
 * it does not change the result), one arithmetic shift. */
static inline int32_t add_rq(int32_t sum, int32_t m, int32_t c, int32_t right) {
  int32_t v;
  __asm("smmlar %0, %1, %2, %3" : "=r"(v) : "r"(sum), "r"(m), "r"(c));
  return (v - (int32_t)((uint32_t)sum >> 31)) >> right;
}

__attribute__((always_inline)) static inline void add_body(const int32_t *l1, const int32_t *l2,
                                                           const int8_t *in1, const int8_t *in2,
                                                           int8_t *out, long n, int32_t m,
                                                           int32_t c, int32_t right, int sat8,
                                                           int32_t lo, int32_t hi) {
  long i = 0;
#define TK_ADD_FAST(a, b, dst)                                    \
  do {                                                            \
    int32_t v_ = add_rq(l1[(a)] + l2[(b)], m, c, right);          \
    if (sat8) {                                                   \
      v_ = __ssat(v_, 8);                                         \
    } else {                                                      \
      v_ = v_ < lo ? lo : v_;                                     \
      v_ = v_ > hi ? hi : v_;                                     \
    }                                                             \
    (dst) = (int8_t)v_;                                           \
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
  const int32_t *l1 = p->lut1, *l2 = p->lut2;
  const long n = flat_count(p);
  const tk_rq r = tk_rq_make(p->out_mult, p->out_shift);
  const int32_t m = r.mult, half = r.half, off = p->out_offset, lo = p->act_min, hi = p->act_max;
  const int right = r.right;
  long i = 0;
  if (!l1 || !l2 || n == 0 || r.slow) {
    tk_add_s8_ref(p, in1, in2, out);
    return;
  }
  if (right >= 1 && right <= 22) {
    const int32_t c = (int32_t)(((uint32_t)1 << (right - 1)) + ((uint32_t)off << right));
    if (lo == -128 && hi == 127) {
      add_sat(l1, l2, in1, in2, out, n, m, c, right);
    } else {
      add_clamp(l1, l2, in1, in2, out, n, m, c, right, lo, hi);
    }
    return;
  }
#define TK_ADD_ONE(a, b, dst)                                          \
  do {                                                                 \
    int32_t v_ = tk_smmulr(l1[(a)] + l2[(b)], m);                      \
    v_ = ((__qadd(v_, half) - (int32_t)((uint32_t)v_ >> 31)) >> right) + off; \
    v_ = v_ < lo ? lo : v_;                                            \
    (dst) = (int8_t)(v_ > hi ? hi : v_);                               \
  } while (0)
  for (; i + 4 <= n; i += 4) {
    const uint32_t a = *(const tk_u32u *)(const void *)(in1 + i);
    const uint32_t b = *(const tk_u32u *)(const void *)(in2 + i);
    TK_ADD_ONE(a & 0xFF, b & 0xFF, out[i]);
    TK_ADD_ONE((a >> 8) & 0xFF, (b >> 8) & 0xFF, out[i + 1]);
    TK_ADD_ONE((a >> 16) & 0xFF, (b >> 16) & 0xFF, out[i + 2]);
    TK_ADD_ONE(a >> 24, b >> 24, out[i + 3]);
  }
  for (; i < n; ++i) TK_ADD_ONE((uint8_t)in1[i], (uint8_t)in2[i], out[i]);
#undef TK_ADD_ONE
}

#else
typedef int tk_elementwise_dsp_unused;
#endif
