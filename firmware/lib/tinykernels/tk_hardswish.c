/* HARD_SWISH, int8, in TFLM's 16-bit fixed-point formulation. */
#include "tinykernels.h"
#include "tk_fixedpoint.h"

static int16_t sat16(int64_t v) {
  return (int16_t)(v < INT16_MIN ? INT16_MIN : (v > INT16_MAX ? INT16_MAX : v));
}

/* Wrap to 16 bits like a static_cast<int16_t> does on the targets TFLM runs on. */
static int16_t wrap16(int32_t v) {
  const uint16_t u = (uint16_t)((uint32_t)v & 0xFFFFu);
  return u <= 0x7FFF ? (int16_t)u : (int16_t)((int32_t)u - 65536);
}

static int16_t srdhm16(int16_t a, int16_t b) {
  const int32_t ab = (int32_t)a * (int32_t)b;
  const int32_t nudge = ab >= 0 ? (1 << 14) : (1 - (1 << 14));
  if (a == b && a == INT16_MIN) return INT16_MAX;
  return wrap16((ab + nudge) / (1 << 15));
}

static int16_t sdhm16(int16_t a, int16_t b) {
  if (a == b && a == INT16_MIN) return INT16_MAX;
  return wrap16(((int32_t)a * (int32_t)b) / (1 << 15));
}

static int16_t rdbp16(int16_t x, int exponent) {
  const int16_t mask = wrap16((int32_t)(((int64_t)1 << exponent) - 1));
  const int16_t remainder = (int16_t)(x & mask);
  const int16_t threshold = wrap16((mask >> 1) + (x < 0 ? 1 : 0));
  const int32_t floor_div = x >= 0 ? (x >> exponent) : -1 - ((-1 - (int32_t)x) >> exponent);
  return wrap16(floor_div + (remainder > threshold ? 1 : 0));
}

static int16_t sat_shl16(int16_t v, int amount) {
  return sat16((int64_t)v * ((int64_t)1 << amount));
}

void tk_hard_swish_s8(const tk_hardswish_params *p, const int8_t *in, int8_t *out, int n) {
  int i;
  for (i = 0; i < n; ++i) {
    const int16_t x = wrap16((int32_t)in[i] - p->in_zp);
    const int16_t hires = wrap16((int32_t)x * 128);
    const int16_t pre_out = srdhm16(hires, p->out_mult);
    int16_t reluish = hires;
    int16_t o;
    if (p->reluish_exp > 0) reluish = sat_shl16(reluish, p->reluish_exp - 1);
    reluish = srdhm16(reluish, p->reluish_mult);
    if (p->reluish_exp > 0) reluish = sat_shl16(reluish, 1);
    if (p->reluish_exp < 0) reluish = rdbp16(reluish, -p->reluish_exp);
    /* Map [-3, 3] in Q15 to [0, 1]. */
    reluish = wrap16(((int32_t)reluish + (1 << 15)) >> 1);
    o = rdbp16(sdhm16(reluish, pre_out), -p->out_exp);
    out[i] = tk_sat8((int32_t)wrap16((int32_t)o + p->out_zp));
  }
}
