/* FULLY_CONNECTED, int8, per-tensor or per-channel weights. */
#include "tinykernels.h"
#include "tk_dsp.h"
#include "tk_fixedpoint.h"

#if !TK_MVE
void tk_fully_connected_s8(const tk_fc_params *p, const int8_t *in, const int8_t *filter,
                           const int32_t *bias, int8_t *out) {
  tk_fully_connected_s8_ref(p, in, filter, bias, out);
}
#endif

void tk_fully_connected_s8_ref(const tk_fc_params *p, const int8_t *in, const int8_t *filter,
                               const int32_t *bias, int8_t *out) {
  int b, oc, d;
  for (b = 0; b < p->batches; ++b) {
    const int8_t *ip = in + (long)b * p->accum_depth;
    for (oc = 0; oc < p->out_depth; ++oc) {
      const int8_t *fp = filter + (long)oc * p->accum_depth;
      const int q = p->per_channel ? oc : 0;
      int32_t acc = 0;
      for (d = 0; d < p->accum_depth; ++d) {
        acc += ((int32_t)fp[d] + p->filter_offset) * ((int32_t)ip[d] + p->in_offset);
      }
      if (bias) acc += bias[oc];
      acc = tk_mbqm(acc, p->mult[q], p->shift[q]) + p->out_offset;
      acc = TK_MAX(acc, p->act_min);
      acc = TK_MIN(acc, p->act_max);
      out[(long)b * p->out_depth + oc] = (int8_t)acc;
    }
  }
}
