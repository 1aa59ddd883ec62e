/* QUANTIZE (float32 -> int8; int8 -> int8, uint8, int16; uint8, int16 -> int8) and DEQUANTIZE
   (int8 -> float32): what a model with float, uint8 or int16 inputs and outputs has at its ends. */
#include <math.h>

#include "tinykernels.h"
#include "tk_fixedpoint.h"

void tk_quantize_f32_s8(const float *in, int8_t *out, int n, float scale, int32_t zp) {
  int i;
  for (i = 0; i < n; ++i) {
    /* Divide (not multiply by a reciprocal) and round half away from zero, like TFLM. */
    const float q = roundf(in[i] / scale);
    int32_t v;
    if (q != q) {
      v = -1000; /* NaN: TFLM's float->int conversion yields INT32_MIN on common targets */
    } else if (q >= 1000.0f) {
      v = 1000;
    } else if (q <= -1000.0f) {
      v = -1000;
    } else {
      v = (int32_t)q;
    }
    out[i] = tk_sat8(v + zp);
  }
}

/* TFLM's Requantize: out = clamp(mbqm(in - in_zp) + out_zp) to the output type's range. */
static int32_t requant(int32_t x, int32_t in_zp, int32_t out_zp, int32_t mult, int shift) {
  return tk_mbqm(x - in_zp, mult, shift) + out_zp;
}

void tk_requantize_s8(const int8_t *in, int8_t *out, int n, int32_t in_zp, int32_t out_zp,
                      int32_t mult, int shift) {
  int i;
  for (i = 0; i < n; ++i) out[i] = tk_sat8(requant(in[i], in_zp, out_zp, mult, shift));
}

void tk_requantize_u8_s8(const uint8_t *in, int8_t *out, int n, int32_t in_zp, int32_t out_zp,
                         int32_t mult, int shift) {
  int i;
  for (i = 0; i < n; ++i) out[i] = tk_sat8(requant(in[i], in_zp, out_zp, mult, shift));
}

void tk_requantize_s8_u8(const int8_t *in, uint8_t *out, int n, int32_t in_zp, int32_t out_zp,
                         int32_t mult, int shift) {
  int i;
  for (i = 0; i < n; ++i) {
    const int32_t v = requant(in[i], in_zp, out_zp, mult, shift);
    out[i] = (uint8_t)TK_MIN(255, TK_MAX(0, v));
  }
}

void tk_requantize_s16_s8(const int16_t *in, int8_t *out, int n, int32_t in_zp, int32_t out_zp,
                          int32_t mult, int shift) {
  int i;
  for (i = 0; i < n; ++i) out[i] = tk_sat8(requant(in[i], in_zp, out_zp, mult, shift));
}

void tk_requantize_s8_s16(const int8_t *in, int16_t *out, int n, int32_t in_zp, int32_t out_zp,
                          int32_t mult, int shift) {
  int i;
  for (i = 0; i < n; ++i) {
    const int32_t v = requant(in[i], in_zp, out_zp, mult, shift);
    out[i] = (int16_t)TK_MIN(32767, TK_MAX(-32768, v));
  }
}

void tk_dequantize_s8_f32(const int8_t *in, float *out, int n, double scale, int32_t zp) {
  int i;
  for (i = 0; i < n; ++i) out[i] = (float)(scale * (double)((int32_t)in[i] - zp));
}
