/* CONV_2D and DEPTHWISE_CONV_2D for cores with the DSP extension (Armv7E-M, Armv8-M Main+DSP).
 *
 * Convolution: the input patches of a block of output pixels are expanded once to int16 pairs
 * (input offset added, padding = 0) and multiplied against the int16-expanded filter rows of two
 * output channels at a time with SMLAD, two pixels x two channels per inner step. Within each
 * group of four k the values are kept in SXTB16 order (0, 2, 1, 3) on both sides, so the dot
 * product is unchanged. Depthwise: pairs of taps per SMLAD, input offset folded into the bias,
 * padded taps read the input zero point. Results equal the reference kernels bit for bit.
 */
#include <string.h>

#include "tk_dsp.h"

#if TK_DSP

/* n4 groups of four int8 -> int16 pairs (SXTB16 order) at dst[0], dst[step], ... plus off2. */
static void expand4(const int8_t *src, int n4, int32_t off2, tk_w32 *dst, int step) {
  int i;
  for (i = 0; i < n4; ++i) {
    const uint32_t w = *(const tk_u32u *)src;
    src += 4;
    dst[0] = (int32_t)__sadd16(__sxtb16(w), (uint32_t)off2);
    dst[step] = (int32_t)__sadd16(__sxtb16(tk_ror8(w)), (uint32_t)off2);
    dst += 2 * step;
  }
}

/* Store element k of a pixel (or filter row) in the interleaved SXTB16-ordered layout. */
static inline void put16(tk_w32 *base, int which, int k, int32_t v) {
  const int word = 2 * (k >> 2) + (k & 1);
  int16_t *h = (int16_t *)(void *)(base + 2 * word + which);
  h[(k >> 1) & 1] = (int16_t)v;
}

/* Patch of output pixel `px` into slot `which` (0/1) of an interleaved pixel pair; `tmp` holds
 * kp bytes for channel counts that are not a multiple of four. */
static void im2col(const tk_conv_params *p, const int8_t *in, int px, tk_w32 *dst, int which,
                   int kp, int8_t *tmp) {
  const int oy = px / p->out_w, ox = px % p->out_w;
  const int y0 = oy * p->stride_h - p->pad_h, x0 = ox * p->stride_w - p->pad_w;
  const int ic = p->in_c;
  const int32_t off2 = (int32_t)(((uint32_t)(p->in_offset & 0xFFFF) << 16) |
                                 (uint32_t)(p->in_offset & 0xFFFF));
  const int8_t zp = (int8_t)(-p->in_offset);
  int ky, kx, k = 0, i;
  for (ky = 0; ky < p->k_h; ++ky) {
    const int y = y0 + p->dil_h * ky;
    for (kx = 0; kx < p->k_w; ++kx, k += ic) {
      const int x = x0 + p->dil_w * kx;
      const int inside = y >= 0 && y < p->in_h && x >= 0 && x < p->in_w;
      const int8_t *ip = in + ((long)y * p->in_w + x) * ic;
      if ((ic & 3) == 0) {
        tk_w32 *d = dst + 2 * (k >> 1) + which;
        if (inside) {
          expand4(ip, ic >> 2, off2, d, 2);
        } else {
          for (i = 0; i < ic >> 1; ++i) d[2 * i] = 0;
        }
      } else if (inside) {
        for (i = 0; i < ic; ++i) tmp[k + i] = ip[i];
      } else {
        for (i = 0; i < ic; ++i) tmp[k + i] = zp;
      }
    }
  }
  if (ic & 3) {
    for (; k < kp; ++k) tmp[k] = zp;
    expand4(tmp, kp >> 2, off2, dst + which, 2);
    return;
  }
  for (; k < kp; ++k) put16(dst, which, k, 0);
}

/* Filter rows of output channels a and b, interleaved like a pixel pair. */
static void expand_filter(const int8_t *fa, const int8_t *fb, int k, int kp, tk_w32 *dst) {
  int i;
  if ((k & 3) == 0) {
    expand4(fa, k >> 2, 0, dst, 2);
    expand4(fb, k >> 2, 0, dst + 1, 2);
    return;
  }
  for (i = 0; i < kp; ++i) {
    put16(dst, 0, i, i < k ? fa[i] : 0);
    put16(dst, 1, i, i < k ? fb[i] : 0);
  }
}

void tk_conv2d_s8(const tk_conv_params *p, const int8_t *in, const int8_t *filter,
                  const int32_t *bias, int8_t *out) {
  const int k = p->k_h * p->k_w * p->in_c;
  const int kp = (k + 3) & ~3;
  const int npx = p->out_h * p->out_w;
  const int blk = p->scratch_px;
  const int oc_n = p->out_c;
  tk_w32 *xs = (tk_w32 *)p->scratch;
  const int32_t out_off = p->out_offset, lo = p->act_min, hi = p->act_max;
  tk_w32 *ws;
  int8_t *tmp;
  int b, p0, oc, j, i;
  if (p->filter_in_c != p->in_c || !p->scratch || blk < 2 || (blk & 1)) {
    tk_conv2d_s8_ref(p, in, filter, bias, out);
    return;
  }
  ws = xs + (long)blk * (kp >> 1);
  tmp = (int8_t *)(void *)(ws + kp);
  for (b = 0; b < p->batches; ++b) {
    const int8_t *bin = in + (long)b * p->in_h * p->in_w * p->in_c;
    int8_t *bout = out + (long)b * npx * oc_n;
    for (p0 = 0; p0 < npx; p0 += blk) {
      const int np = TK_MIN(blk, npx - p0);
      const int pairs = (np + 1) >> 1;
      for (j = 0; j < pairs; ++j) {
        const int pa = p0 + 2 * j;
        im2col(p, bin, pa, xs + (long)j * kp, 0, kp, tmp);
        im2col(p, bin, pa + 1 < p0 + np ? pa + 1 : pa, xs + (long)j * kp, 1, kp,
               tmp);
      }
      for (oc = 0; oc < oc_n; oc += 2) {
        const int ob = oc + 1 < oc_n ? oc + 1 : oc;
        const tk_rq ra = tk_rq_make(p->mult[oc], p->shift[oc]);
        const tk_rq rb = tk_rq_make(p->mult[ob], p->shift[ob]);
        const int32_t ba = bias ? bias[oc] : 0, bb = bias ? bias[ob] : 0;
        expand_filter(filter + (long)oc * k, filter + (long)ob * k, k, kp, ws);
        for (j = 0; j < pairs; ++j) {
          const tk_w32 *x = xs + (long)j * kp;
          const tk_w32 *w = ws;
          int32_t s_aa = ba, s_ab = bb, s_ba = ba, s_bb = bb;
          const int pa = p0 + 2 * j;
          int8_t *o;
          for (i = kp >> 2; i > 0; --i) {
            const int32_t xa0 = x[0], xb0 = x[1], xa1 = x[2], xb1 = x[3];
            const int32_t wa0 = w[0], wb0 = w[1], wa1 = w[2], wb1 = w[3];
            x += 4;
            w += 4;
            s_aa = __smlad(xa0, wa0, s_aa);
            s_ab = __smlad(xa0, wb0, s_ab);
            s_ba = __smlad(xb0, wa0, s_ba);
            s_bb = __smlad(xb0, wb0, s_bb);
            s_aa = __smlad(xa1, wa1, s_aa);
            s_ab = __smlad(xa1, wb1, s_ab);
            s_ba = __smlad(xb1, wa1, s_ba);
            s_bb = __smlad(xb1, wb1, s_bb);
          }
          o = bout + (long)pa * oc_n + oc;
          o[0] = tk_clamp_out(tk_rq_apply(&ra, s_aa) + out_off, lo, hi);
          if (ob != oc) o[1] = tk_clamp_out(tk_rq_apply(&rb, s_ab) + out_off, lo, hi);
          if (pa + 1 < p0 + np) {
            o += oc_n;
            o[0] = tk_clamp_out(tk_rq_apply(&ra, s_ba) + out_off, lo, hi);
            if (ob != oc) o[1] = tk_clamp_out(tk_rq_apply(&rb, s_bb) + out_off, lo, hi);
          }
        }
      }
    }
  }
}

#define TK_DW_MAX_TAPS 16

static inline int32_t tk_pk16(int32_t lo, int32_t hi) {
  return (int32_t)((uint32_t)(uint16_t)lo | ((uint32_t)hi << 16));
}

/* Depthwise, depth multiplier 1. Scratch per channel: tap pairs, folded bias, requantization
 * multiplier / nudge / shift; then one row of zero-point bytes that padded taps read. */
void tk_depthwise_conv2d_s8(const tk_conv_params *p, int depth_mult, const int8_t *in,
                            const int8_t *filter, const int32_t *bias, int8_t *out) {
  const int taps = p->k_h * p->k_w;
  const int np = (taps + 1) >> 1;
  const int c_n = p->out_c;
  const int per = np + 4;
  const int32_t out_off = p->out_offset, lo = p->act_min, hi = p->act_max;
  tk_w32 *ws = (tk_w32 *)p->scratch;
  const int8_t *zrow;
  const int8_t *ptr[TK_DW_MAX_TAPS + 1];
  int b, oy, ox, c, t, ky, kx;
  if (depth_mult != 1 || !ws || taps > TK_DW_MAX_TAPS ||
      p->scratch_px < c_n * per + (c_n + 3) / 4) {
    tk_depthwise_conv2d_s8_ref(p, depth_mult, in, filter, bias, out);
    return;
  }
  for (c = 0; c < c_n; ++c) {
    uint32_t sum = 0;
    const tk_rq r = tk_rq_make(p->mult[c], p->shift[c]);
    tk_w32 *w = ws + c * per;
    if (r.slow) {
      tk_depthwise_conv2d_s8_ref(p, depth_mult, in, filter, bias, out);
      return;
    }
    for (t = 0; t < np; ++t) {
      const int32_t w0 = filter[(long)(2 * t) * c_n + c];
      const int32_t w1 = 2 * t + 1 < taps ? filter[(long)(2 * t + 1) * c_n + c] : 0;
      w[t] = tk_pk16(w0, w1);
      sum += (uint32_t)(w0 + w1);
    }
    w[np] = tk_wrap32((uint32_t)(bias ? bias[c] : 0) + (uint32_t)p->in_offset * sum);
    w[np + 1] = r.mult;
    w[np + 2] = r.half;
    w[np + 3] = r.right;
  }
  zrow = (const int8_t *)(ws + c_n * per);
  memset((void *)(ws + c_n * per), (int8_t)(-p->in_offset), (size_t)c_n);
  for (b = 0; b < p->batches; ++b) {
    const int8_t *bin = in + (long)b * p->in_h * p->in_w * c_n;
    for (oy = 0; oy < p->out_h; ++oy) {
      const int y0 = oy * p->stride_h - p->pad_h;
      for (ox = 0; ox < p->out_w; ++ox) {
        const int x0 = ox * p->stride_w - p->pad_w;
        int8_t *o = out + (((long)b * p->out_h + oy) * p->out_w + ox) * c_n;
        const tk_w32 *w = ws;
        for (ky = 0, t = 0; ky < p->k_h; ++ky) {
          const int y = y0 + ky * p->dil_h;
          for (kx = 0; kx < p->k_w; ++kx, ++t) {
            const int x = x0 + kx * p->dil_w;
            ptr[t] = y >= 0 && y < p->in_h && x >= 0 && x < p->in_w
                         ? bin + ((long)y * p->in_w + x) * c_n : zrow;
          }
        }
        ptr[taps] = zrow;
        if (taps == 9) {
          const int8_t *a0 = ptr[0], *a1 = ptr[1], *a2 = ptr[2], *a3 = ptr[3], *a4 = ptr[4];
          const int8_t *a5 = ptr[5], *a6 = ptr[6], *a7 = ptr[7], *a8 = ptr[8];
          for (c = 0; c < c_n; ++c, w += 9) {
            int32_t acc = w[5], v;
            acc = __smlad(tk_pk16(a0[c], a1[c]), w[0], acc);
            acc = __smlad(tk_pk16(a2[c], a3[c]), w[1], acc);
            acc = __smlad(tk_pk16(a4[c], a5[c]), w[2], acc);
            acc = __smlad(tk_pk16(a6[c], a7[c]), w[3], acc);
            acc = __smlabb(a8[c], w[4], acc);
            v = (int32_t)(((int64_t)acc * w[6] + ((int64_t)1 << 30)) >> 31);
            v = ((__qadd(v, w[7]) - (int32_t)((uint32_t)v >> 31)) >> w[8]) + out_off;
            v = v < lo ? lo : v;
            o[c] = (int8_t)(v > hi ? hi : v);
          }
        } else {
          for (c = 0; c < c_n; ++c, w += per) {
            int32_t acc = w[np], v;
            for (t = 0; t < np; ++t) acc = __smlad(tk_pk16(ptr[2 * t][c], ptr[2 * t + 1][c]),
                                                   w[t], acc);
            v = (int32_t)(((int64_t)acc * w[np + 1] + ((int64_t)1 << 30)) >> 31);
            v = ((__qadd(v, w[np + 2]) - (int32_t)((uint32_t)v >> 31)) >> w[np + 3]) + out_off;
            v = v < lo ? lo : v;
            o[c] = (int8_t)(v > hi ? hi : v);
          }
        }
      }
    }
  }
}

#else
typedef int tk_conv_dsp_unused;
#endif
