/* PAD and CONCATENATION, int8. */
#include <string.h>

#include "tinykernels.h"
#include "tk_fixedpoint.h"

void tk_pad_s8(const tk_pad_params *p, const int8_t *in, int8_t *out) {
  int od[TK_MAX_DIMS];
  int i[5];
  int d;
  long o = 0;
  const int8_t *ip = in;
  for (d = 0; d < TK_MAX_DIMS; ++d) od[d] = p->before[d] + p->in_dims[d] + p->after[d];
  for (i[0] = 0; i[0] < od[0]; ++i[0])
    for (i[1] = 0; i[1] < od[1]; ++i[1])
      for (i[2] = 0; i[2] < od[2]; ++i[2])
        for (i[3] = 0; i[3] < od[3]; ++i[3])
          for (i[4] = 0; i[4] < od[4]; ++i[4]) {
            int inside = 1;
            for (d = 0; d < 5; ++d) {
              if (i[d] < p->before[d] || i[d] >= p->before[d] + p->in_dims[d]) inside = 0;
            }
            if (!inside) {
              memset(out + o, (unsigned char)p->pad_value, (size_t)od[5]);
            } else {
              /* Interior rows are visited in input order, so the input is read sequentially. */
              memset(out + o, (unsigned char)p->pad_value, (size_t)p->before[5]);
              memcpy(out + o + p->before[5], ip, (size_t)p->in_dims[5]);
              memset(out + o + p->before[5] + p->in_dims[5], (unsigned char)p->pad_value,
                     (size_t)p->after[5]);
              ip += p->in_dims[5];
            }
            o += od[5];
          }
}

void tk_concat_s8(const tk_concat_params *p, const int8_t *const *ins, int8_t *out) {
  int k, t, j;
  long o = 0;
  for (k = 0; k < p->outer; ++k) {
    for (t = 0; t < p->n_inputs; ++t) {
      const int n = p->copy_size[t];
      const int8_t *src = ins[t] + (long)k * n;
      if (p->requant && p->requant[t]) {
        for (j = 0; j < n; ++j) {
          out[o + j] =
              tk_sat8(tk_mbqm((int32_t)src[j] - p->in_zp[t], p->mult[t], p->shift[t]) + p->out_zp);
        }
      } else {
        memcpy(out + o, src, (size_t)n);
      }
      o += n;
    }
  }
}
