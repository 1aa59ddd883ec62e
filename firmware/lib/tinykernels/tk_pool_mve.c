/* AVERAGE_POOL_2D and MAX_POOL_2D for cores with Helium (MVE).
 *
 * Channels are the vector lanes, windows clipped to the input as in TFLM. Max: 16 channels per
 * vector, VMAX over the taps. Average: 4 channels per vector summed in int32, then TFLM's
 * rounding division (|sum| + count / 2) / count with the sign of sum, as a multiply-high by
 * ceil(2^32 / count): exact while (|sum| + count / 2) * (ceil(2^32 / count) * count - 2^32)
 * < 2^32, i.e. for every int8 sum when count <= 5000; larger windows take the reference kernel.
 * Output pixels in raster order, each after its whole window was read (memory contract).
 */
#include "tk_mve.h"

#if TK_MVE

#define TK_POOL_MAX_COUNT 5000

static void pool_mve(const tk_pool_params *p, const int8_t *in, int8_t *out, int is_max) {
  const int c_n = p->channels;
  const long row = (long)p->in_w * c_n;
  int b, oy, ox, c, y, x;
  for (b = 0; b < p->batches; ++b) {
    const int8_t *img = in + (long)b * p->in_h * row;
    for (oy = 0; oy < p->out_h; ++oy) {
      const int y0 = oy * p->stride_h - p->pad_h;
      const int ys = TK_MAX(0, -y0), ye = TK_MIN(p->k_h, p->in_h - y0);
      for (ox = 0; ox < p->out_w; ++ox, out += c_n) {
        const int x0 = ox * p->stride_w - p->pad_w;
        const int xs = TK_MAX(0, -x0), xe = TK_MIN(p->k_w, p->in_w - x0);
        if (is_max) {
          for (c = 0; c < c_n; c += 16) {
            const mve_pred16_t pr = vctp8q(c_n - c);
            int8x16_t m = vdupq_n_s8(-128);
            for (y = ys; y < ye; ++y) {
              const int8_t *r = img + (long)(y0 + y) * row + c;
              for (x = xs; x < xe; ++x) m = vmaxq_s8(m, vldrbq_z_s8(r + (long)(x0 + x) * c_n, pr));
            }
            m = vmaxq_s8(m, vdupq_n_s8((int8_t)p->act_min));
            vstrbq_p_s8(out + c, vminq_s8(m, vdupq_n_s8((int8_t)p->act_max)), pr);
          }
        } else {
          const int count = (ye > ys && xe > xs) ? (ye - ys) * (xe - xs) : 0;
          const uint32_t recip = count > 1 ? (uint32_t)(0xFFFFFFFFu / (uint32_t)count) + 1u : 0u;
          for (c = 0; c < c_n; c += 4) {
            const mve_pred16_t pr = vctp32q(c_n - c);
            int32x4_t s = vdupq_n_s32(0), sgn, q;
            for (y = ys; y < ye; ++y) {
              const int8_t *r = img + (long)(y0 + y) * row + c;
              for (x = xs; x < xe; ++x) s = vaddq_s32(s, vldrbq_z_s32(r + (long)(x0 + x) * c_n, pr));
            }
            if (count > 1) {
              const uint32x4_t n = vaddq_n_u32(vreinterpretq_u32_s32(vabsq_s32(s)),
                                               (uint32_t)(count / 2));
              sgn = vshrq_n_s32(s, 31);
              q = vreinterpretq_s32_u32(vmulhq_u32(n, vdupq_n_u32(recip)));
              s = vsubq_s32(veorq_s32(q, sgn), sgn);
            }
            vstrbq_p_s32(out + c, tk_mve_clamp(s, p->act_min, p->act_max), pr);
          }
        }
      }
    }
  }
}

void tk_avg_pool_s8(const tk_pool_params *p, const int8_t *in, int8_t *out) {
  if ((long)p->k_h * p->k_w > TK_POOL_MAX_COUNT) {
    tk_avg_pool_s8_ref(p, in, out);
    return;
  }
  pool_mve(p, in, out, 0);
}

void tk_max_pool_s8(const tk_pool_params *p, const int8_t *in, int8_t *out) {
  pool_mve(p, in, out, 1);
}

#endif
