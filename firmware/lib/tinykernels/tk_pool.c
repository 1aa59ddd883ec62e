/* AVERAGE_POOL_2D and MAX_POOL_2D, int8 (window clipped to the input, as TFLM does). */
#include "tinykernels.h"
#include "tk_dsp.h"
#include "tk_fixedpoint.h"

static void pool(const tk_pool_params *p, const int8_t *in, int8_t *out, int is_max) {
  int b, oy, ox, c, y, x;
  for (b = 0; b < p->batches; ++b) {
    for (oy = 0; oy < p->out_h; ++oy) {
      const int y0 = oy * p->stride_h - p->pad_h;
      const int ys = TK_MAX(0, -y0);
      const int ye = TK_MIN(p->k_h, p->in_h - y0);
      for (ox = 0; ox < p->out_w; ++ox) {
        const int x0 = ox * p->stride_w - p->pad_w;
        const int xs = TK_MAX(0, -x0);
        const int xe = TK_MIN(p->k_w, p->in_w - x0);
        for (c = 0; c < p->channels; ++c) {
          int32_t acc = is_max ? -128 : 0;
          int32_t count = 0;
          for (y = ys; y < ye; ++y) {
            for (x = xs; x < xe; ++x) {
              const int32_t v =
                  in[(((long)b * p->in_h + y0 + y) * p->in_w + x0 + x) * p->channels + c];
              if (is_max) {
                acc = TK_MAX(acc, v);
              } else {
                acc += v;
              }
              ++count;
            }
          }
          if (!is_max && count > 0) {
            acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
          }
          acc = TK_MAX(acc, p->act_min);
          acc = TK_MIN(acc, p->act_max);
          out[(((long)b * p->out_h + oy) * p->out_w + ox) * p->channels + c] = (int8_t)acc;
        }
      }
    }
  }
}

void tk_avg_pool_s8_ref(const tk_pool_params *p, const int8_t *in, int8_t *out) {
  pool(p, in, out, 0);
}

void tk_max_pool_s8_ref(const tk_pool_params *p, const int8_t *in, int8_t *out) {
  pool(p, in, out, 1);
}

#if !TK_MVE
void tk_avg_pool_s8(const tk_pool_params *p, const int8_t *in, int8_t *out) {
  tk_avg_pool_s8_ref(p, in, out);
}

void tk_max_pool_s8(const tk_pool_params *p, const int8_t *in, int8_t *out) {
  tk_max_pool_s8_ref(p, in, out);
}
#endif
