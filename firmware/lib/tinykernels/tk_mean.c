/* MEAN over any set of axes, int8 (integer path of TFLM's QuantizedMeanOrSum). */
#include "tinykernels.h"
#include "tk_fixedpoint.h"

/* Advance a multi-index over dims[lo..hi); returns 0 once it wraps around. */
static int next_index(int *idx, const int *dims, int lo, int hi) {
  int d;
  for (d = hi - 1; d >= lo; --d) {
    if (++idx[d] < dims[d]) return 1;
    idx[d] = 0;
  }
  return 0;
}

static long offset_of(const int *idx, const int *strides, int lo, int hi) {
  long off = 0;
  int d;
  for (d = lo; d < hi; ++d) off += (long)idx[d] * strides[d];
  return off;
}

void tk_mean_s8(const tk_mean_params *p, const int8_t *in, int8_t *out) {
  int idx[TK_MAX_DIMS] = {0, 0, 0, 0, 0, 0};
  long o = 0;
  do {
    const long base = offset_of(idx, p->strides, 0, p->n_outer);
    int32_t sum = 0;
    int32_t r;
    do {
      sum += in[base + offset_of(idx, p->strides, p->n_outer, p->n_dims)];
    } while (next_index(idx, p->dims, p->n_outer, p->n_dims));
    /* The reference subtracts zp * count from the int32 sum before rescaling. */
    sum = tk_wrap32((uint32_t)sum - (uint32_t)p->in_zp * (uint32_t)p->count);
    r = tk_mbqm(sum, p->mult, p->shift) + p->out_zp;
    out[o++] = tk_sat8(r);
  } while (next_index(idx, p->dims, 0, p->n_outer));
}
