/* Compile-time kernel selection and the helpers the DSP (and MVE) kernels share (internal
 * header; tk_mve.h includes it, MVE implies the DSP extension).
 *
 * TK_DSP is 1 when the target has the Armv7E-M DSP extension (Cortex-M4/M7/M33/M55 ...) and
 * TK_PORTABLE is not defined; the *_dsp.c sources then provide the public kernels and the
 * portable reference versions (named *_ref) remain the fallback for shapes they do not cover.
 * TK_MVE is 1 when the core also has integer Helium (M-profile Vector Extension, Cortex-M55/M85);
 * it takes priority: the *_mve.c sources provide the public kernels and the *_dsp.c sources
 * compile to nothing. MVE implies the DSP extension, so TK_MVE implies TK_DSP.
 * Everywhere else the portable kernels are the public ones.
 */
#ifndef TK_DSP_H
#define TK_DSP_H

#include <stdint.h>

#include "tinykernels.h"
#include "tk_fixedpoint.h"

#if defined(__ARM_FEATURE_DSP) && !defined(TK_PORTABLE)
#define TK_DSP 1
#else
#define TK_DSP 0
#endif

#if TK_DSP && defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
#define TK_MVE 1
#else
#define TK_MVE 0
#endif

void tk_conv2d_s8_ref(const tk_conv_params *p, const int8_t *in, const int8_t *filter,
                      const int32_t *bias, int8_t *out);
void tk_depthwise_conv2d_s8_ref(const tk_conv_params *p, int depth_mult, const int8_t *in,
                                const int8_t *filter, const int32_t *bias, int8_t *out);
void tk_add_s8_ref(const tk_binary_params *p, const int8_t *in1, const int8_t *in2, int8_t *out);
void tk_fully_connected_s8_ref(const tk_fc_params *p, const int8_t *in, const int8_t *filter,
                               const int32_t *bias, int8_t *out);
void tk_avg_pool_s8_ref(const tk_pool_params *p, const int8_t *in, int8_t *out);
void tk_max_pool_s8_ref(const tk_pool_params *p, const int8_t *in, int8_t *out);

/* The reference convolutions' output for channel oc: bias, TFLM's requantization, activation
 * range. */
static inline int8_t tk_conv_out_ref(const tk_conv_params *p, int32_t acc, const int32_t *bias,
                                     int oc) {
  if (bias) acc += bias[oc];
  acc = tk_mbqm(acc, p->mult[oc], p->shift[oc]) + p->out_offset;
  return (int8_t)TK_MIN(TK_MAX(acc, p->act_min), p->act_max);
}

#if TK_DSP
#include <arm_acle.h>

/* Numbers shared by C (static assertions) and hand-written asm (stringified). */
#define TK_STR_(x) #x
#define TK_STR(x) TK_STR_(x)

/* Ties hand-written asm to the C structures it reads: C11's _Static_assert, which GCC and Clang
 * also take in C99 mode (__extension__ keeps -pedantic quiet). */
#define TK_STATIC_ASSERT(cond, msg) __extension__ _Static_assert(cond, msg)

/* 32-bit word that may alias any buffer (scratch of packed int16 pairs). */
typedef int32_t tk_w32 __attribute__((may_alias, aligned(4)));
typedef uint32_t tk_u32u __attribute__((may_alias, aligned(1)));
typedef uint16_t tk_u16u __attribute__((may_alias, aligned(1)));

static inline uint32_t tk_ror8(uint32_t x) { return (x >> 8) | (x << 24); }

static inline uint32_t tk_sxtb16_ror8(uint32_t x) {
  uint32_t r;
  __asm("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
  return r;
}

/* ---- Requantization of the fast paths ----
 *
 * TFLM's MultiplyByQuantizedMultiplier(acc, m, -right) + out_offset, for m >= 0 and a right
 * shift in 1..TK_RQ_MAX_RIGHT, from acc2 = 2 * acc (the kernels accumulate doubled values; the
 * exporter's small_acc guarantees |acc| < 2^30 so that it fits):
 * - SMMULR(acc2, m) = floor((acc * m + 2^30) / 2^31), which is TFLM's rounding doubling high
 *   multiply for either sign (its one saturating case, both operands INT32_MIN, cannot occur);
 * - the rounding right shift (half away from zero) is floor((v + 2^(right-1) - [v < 0]) /
 *   2^right); SMMLAR adds add = 2^(right-1) + (out_offset << right) (tk_rq_add; |v + add| <
 *   2^30 + 2^29 + 2^21 for right <= 22), and [v < 0] is taken from the sign of acc2, which
 *   differs from it only where v = 0, and there floor((add - 1) / 2^right) = out_offset too.
 * TK_RQ_ASM is the instruction sequence (t: destination, the others: inputs); the asm kernels
 * paste it, C calls tk_rq(). Every other case goes through tk_mbqm, the reference arithmetic. */
#define TK_RQ_MAX_RIGHT 22
#define TK_RQ_ASM(t, acc2, m, add, right)                  \
  "smmlar " t ", " acc2 ", " m ", " add "\n\t"              \
  "sub " t ", " t ", " acc2 ", lsr #31\n\t"                \
  "asr " t ", " t ", " right "\n\t"

static inline int32_t tk_rq(int32_t acc2, int32_t m, int32_t add, int32_t right) {
  int32_t v;
  __asm(TK_RQ_ASM("%0", "%1", "%2", "%3", "%4")
        : "=&r"(v)
        : "r"(acc2), "r"(m), "r"(add), "r"(right));
  return v;
}

/* Whether a channel's (multiplier, shift) can use tk_rq. */
static inline int tk_rq_ok(int32_t mult, int32_t shift) {
  return mult >= 0 && shift <= -1 && shift >= -TK_RQ_MAX_RIGHT;
}

/* The addend of tk_rq for a right shift accepted by tk_rq_ok (never 0: 2^(right-1) times an
 * odd number, so 0 can mark a channel that needs tk_mbqm). */
static inline int32_t tk_rq_add(int32_t right, int32_t out_offset) {
  return (int32_t)(((uint32_t)1 << (right - 1)) + ((uint32_t)out_offset << right));
}

static inline int8_t tk_act(int32_t v, int32_t lo, int32_t hi) {
  v = v < lo ? lo : v;
  return (int8_t)(v > hi ? hi : v);
}

/* Elements of a broadcast-free binary operation, or 0 if either input is broadcast or strided
 * (the fast ADD kernels, DSP and MVE, take only those). */
static inline long tk_flat_count(const tk_binary_params *p) {
  long n = 1;
  int d;
  for (d = TK_MAX_DIMS - 1; d >= 0; --d) {
    if (p->dims[d] > 1 && (p->stride1[d] != n || p->stride2[d] != n)) return 0;
    n *= p->dims[d];
  }
  return n;
}
#endif

#endif /* TK_DSP_H */
