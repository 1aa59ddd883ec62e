/* Compile-time kernel selection (internal header).
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

#if TK_DSP
#include <arm_acle.h>

#include "tk_fixedpoint.h"

/* 32-bit word that may alias any buffer (scratch of packed int16 pairs). */
typedef int32_t tk_w32 __attribute__((may_alias, aligned(4)));
typedef uint32_t tk_u32u __attribute__((may_alias, aligned(1)));

static inline uint32_t tk_ror8(uint32_t x) { return (x >> 8) | (x << 24); }

/* Per-channel requantization constants prepared once per call. */
typedef struct {
  int32_t mult, half, right;
  int slow;  /* left shift or a right shift above 23: use the reference arithmetic */
  int shift;
} tk_rq;

static inline tk_rq tk_rq_make(int32_t mult, int32_t shift) {
  tk_rq r;
  r.mult = mult;
  r.shift = shift;
  r.slow = shift >= 0 || shift < -23 || mult < 0;
  r.right = shift > 0 ? 0 : -shift;
  r.half = r.right > 0 ? (int32_t)1 << (r.right - 1) : 0;
  return r;
}

/* Exactly tk_mbqm(x, mult, shift), cheaper: srdhm(x, m) = (x * m + 2^30) >> 31 for m >= 0, and
 * the rounding shift saturates the nudge, which only changes values that clamp to int8 anyway
 * when 1 <= right <= 23 (other shifts take the reference path, see tk_rq_make). */
static inline int32_t tk_rq_apply(const tk_rq *r, int32_t x) {
  int32_t v;
  if (r->slow) return tk_mbqm(x, r->mult, r->shift);
  v = (int32_t)(((int64_t)x * r->mult + ((int64_t)1 << 30)) >> 31);
  return (__qadd(v, r->half) - (int32_t)((uint32_t)v >> 31)) >> r->right;
}

static inline int8_t tk_clamp_out(int32_t v, int32_t lo, int32_t hi) {
  v = v < lo ? lo : v;
  return (int8_t)(v > hi ? hi : v);
}
#endif

#endif /* TK_DSP_H */
