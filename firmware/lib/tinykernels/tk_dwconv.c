/* DEPTHWISE_CONV_2D, int8 with per-channel requantization (portable reference). */
#include "tinykernels.h"
#include "tk_dsp.h"
#include "tk_fixedpoint.h"

#if !TK_DSP
void tk_depthwise_conv2d_s8(const tk_conv_params *p, int depth_mult, const int8_t *in,
                            const int8_t *filter, const int32_t *bias, int8_t *out) {
  tk_depthwise_conv2d_s8_ref(p, depth_mult, in, filter, bias, out);
}
#endif

void tk_depthwise_conv2d_s8_ref(const tk_conv_params *p, int depth_mult, const int8_t *in,
                                const int8_t *filter, const int32_t *bias, int8_t *out) {
  int b, oy, ox, ic, m, ky, kx;
  for (b = 0; b < p->batches; ++b) {
    for (oy = 0; oy < p->out_h; ++oy) {
      const int y0 = oy * p->stride_h - p->pad_h;
      for (ox = 0; ox < p->out_w; ++ox) {
        const int x0 = ox * p->stride_w - p->pad_w;
        for (ic = 0; ic < p->in_c; ++ic) {
          for (m = 0; m < depth_mult; ++m) {
            const int oc = m + ic * depth_mult;
            int32_t acc = 0;
            for (ky = 0; ky < p->k_h; ++ky) {
              const int y = y0 + p->dil_h * ky;
              if (y < 0 || y >= p->in_h) continue;
              for (kx = 0; kx < p->k_w; ++kx) {
                const int x = x0 + p->dil_w * kx;
                int32_t iv, fv;
                if (x < 0 || x >= p->in_w) continue;
                iv = in[(((long)b * p->in_h + y) * p->in_w + x) * p->in_c + ic];
                fv = filter[((long)ky * p->k_w + kx) * p->out_c + oc];
                acc += fv * (iv + p->in_offset);
              }
            }
            out[(((long)b * p->out_h + oy) * p->out_w + ox) * p->out_c + oc] =
                tk_conv_out_ref(p, acc, bias, oc);
          }
        }
      }
    }
  }
}
