/* CONV_2D for cores with the DSP extension (Armv7E-M, Armv8-M Main+DSP).
 *
 * Fast path (small accumulators, every channel accepted by tk_rq_ok): two output channels x two
 * output pixels on int16 operands widened into the work space (conv_c2). Otherwise two pixels
 * x two channels against the int8 filter rows, requantized per channel with tk_rq or the
 * reference arithmetic (conv_pairs). Within each group of four k both sides are in SXTB16 order
 * (0, 2, 1, 3), so the dot products are unchanged. Results equal the reference kernel bit for
 * bit.
 */
#include <stddef.h>

#include "tk_dsp.h"

#if TK_DSP && !TK_MVE

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

/* Store element k of a pixel in the interleaved SXTB16-ordered layout of a pixel pair. */
static inline void put16(tk_w32 *base, int which, int k, int32_t v) {
  const int word = 2 * (k >> 2) + (k & 1);
  int16_t *h = (int16_t *)(void *)(base + 2 * word + which);
  h[(k >> 1) & 1] = (int16_t)v;
}

/* The kp bytes of the patch at (y0, x0) for channel counts that are not a multiple of four
 * (3 for the first layer): whole kernel rows copied as one run where they lie inside the image,
 * the zero point outside it and as padding up to kp. */
static void gather_bytes(const tk_conv_params *p, const int8_t *in, int y0, int x0, int kp,
                         int8_t *tmp) {
  const int ic = p->in_c;
  const int8_t zp = (int8_t)(-p->in_offset);
  int ky, kx, k = 0, i;
  if (p->dil_w == 1 && x0 >= 0 && x0 + p->k_w <= p->in_w) {
    const int run = p->k_w * ic;
    for (ky = 0; ky < p->k_h; ++ky, k += run) {
      const int y = y0 + p->dil_h * ky;
      if (y >= 0 && y < p->in_h) {
        const int8_t *ip = in + ((long)y * p->in_w + x0) * ic;
        for (i = 0; i + 4 <= run; i += 4) {
          *(tk_u32u *)(void *)(tmp + k + i) = *(const tk_u32u *)(const void *)(ip + i);
        }
        for (; i < run; ++i) tmp[k + i] = ip[i];
      } else {
        for (i = 0; i < run; ++i) tmp[k + i] = zp;
      }
    }
  } else {
    for (ky = 0; ky < p->k_h; ++ky) {
      const int y = y0 + p->dil_h * ky;
      for (kx = 0; kx < p->k_w; ++kx, k += ic) {
        const int x = x0 + p->dil_w * kx;
        const int inside = y >= 0 && y < p->in_h && x >= 0 && x < p->in_w;
        const int8_t *ip = in + ((long)y * p->in_w + x) * ic;
        for (i = 0; i < ic; ++i) tmp[k + i] = inside ? ip[i] : zp;
      }
    }
  }
  for (; k < kp; ++k) tmp[k] = zp;
}

/* ---- Two pixels x two channels (any requantization) ---- */

/* Patch of output pixel `px` into slot `which` (0/1) of an interleaved pixel pair; `tmp` holds
 * kp bytes for channel counts that are not a multiple of four. */
static void im2col(const tk_conv_params *p, const int8_t *in, int px, tk_w32 *dst, int which,
                   int kp, int8_t *tmp) {
  const int oy = px / p->out_w, ox = px % p->out_w;
  const int y0 = oy * p->stride_h - p->pad_h, x0 = ox * p->stride_w - p->pad_w;
  const int ic = p->in_c;
  const int32_t off2 = (int32_t)(((uint32_t)(p->in_offset & 0xFFFF) << 16) |
                                 (uint32_t)(p->in_offset & 0xFFFF));
  int ky, kx, k = 0, i;
  if (p->k_h == 1 && p->k_w == 1 && (ic & 3) == 0 && y0 >= 0 && x0 >= 0) {
    /* Pointwise: the pixel's channels are the patch. */
    expand4(in + ((long)y0 * p->in_w + x0) * ic, ic >> 2, off2, dst + which, 2);
    return;
  }
  if ((ic & 3) == 0 && p->dil_w == 1 && x0 >= 0 && x0 + p->k_w <= p->in_w) {
    /* Whole kernel rows inside the image: each row is one contiguous run of k_w * ic. */
    const int run = p->k_w * ic;
    for (ky = 0; ky < p->k_h; ++ky, k += run) {
      const int y = y0 + p->dil_h * ky;
      tk_w32 *d = dst + k + which;
      if (y >= 0 && y < p->in_h) {
        expand4(in + ((long)y * p->in_w + x0) * ic, run >> 2, off2, d, 2);
      } else {
        for (i = 0; i < run >> 1; ++i) d[2 * i] = 0;
      }
    }
    return;
  }
  if (ic & 3) {
    gather_bytes(p, in, y0, x0, kp, tmp);
    expand4(tmp, kp >> 2, off2, dst + which, 2);
    return;
  }
  for (ky = 0; ky < p->k_h; ++ky) {
    const int y = y0 + p->dil_h * ky;
    for (kx = 0; kx < p->k_w; ++kx, k += ic) {
      const int x = x0 + p->dil_w * kx;
      tk_w32 *d = dst + 2 * (k >> 1) + which;
      if (y >= 0 && y < p->in_h && x >= 0 && x < p->in_w) {
        expand4(in + ((long)y * p->in_w + x) * ic, ic >> 2, off2, d, 2);
      } else {
        for (i = 0; i < ic >> 1; ++i) d[2 * i] = 0;
      }
    }
  }
  for (; k < kp; ++k) put16(dst, which, k, 0);
}

/* One pair of int8 weight words (four k each) against the int16 patch words of two pixels. */
#define TK_MAC4(wa_, wb_, x_)                                   \
  do {                                                          \
    const int32_t a0_ = (int32_t)__sxtb16(wa_);                 \
    const int32_t a1_ = (int32_t)__sxtb16(tk_ror8(wa_));        \
    const int32_t b0_ = (int32_t)__sxtb16(wb_);                 \
    const int32_t b1_ = (int32_t)__sxtb16(tk_ror8(wb_));        \
    const int32_t xa0_ = (x_)[0], xb0_ = (x_)[1];               \
    const int32_t xa1_ = (x_)[2], xb1_ = (x_)[3];               \
    s_aa = __smlad(xa0_, a0_, s_aa);                            \
    s_ab = __smlad(xa0_, b0_, s_ab);                            \
    s_ba = __smlad(xb0_, a0_, s_ba);                            \
    s_bb = __smlad(xb0_, b0_, s_bb);                            \
    s_aa = __smlad(xa1_, a1_, s_aa);                            \
    s_ab = __smlad(xa1_, b1_, s_ab);                            \
    s_ba = __smlad(xb1_, a1_, s_ba);                            \
    s_bb = __smlad(xb1_, b1_, s_bb);                            \
  } while (0)

/* n >= 1 groups of four k: the same as n TK_MAC4 steps, scheduled by hand so that the 2 x 2
 * block fits the 13 free registers (GCC spills a pointer otherwise): 18 instructions per
 * 16 MACs. x is word aligned (LDRD); weight rows may be unaligned (LDR). */
#define TK_MAC4_LOOP(n_, x_, wa_, wb_)                                                       \
  do {                                                                                       \
    uint32_t ua_, ub_, t_, xa_, xb_;                                                         \
    __asm volatile(                                                                          \
        "1:\n\t"                                                                             \
        "ldr %[ua], [%[wa]], #4\n\t"                                                         \
        "ldr %[ub], [%[wb]], #4\n\t"                                                         \
        "ldrd %[xa], %[xb], [%[x]], #8\n\t"                                                  \
        "sxtb16 %[t], %[ua]\n\t"                                                             \
        "sxtb16 %[ua], %[ua], ror #8\n\t"                                                    \
        "smlad %[saa], %[xa], %[t], %[saa]\n\t"                                              \
        "smlad %[sba], %[xb], %[t], %[sba]\n\t"                                              \
        "sxtb16 %[t], %[ub]\n\t"                                                             \
        "sxtb16 %[ub], %[ub], ror #8\n\t"                                                    \
        "smlad %[sab], %[xa], %[t], %[sab]\n\t"                                              \
        "smlad %[sbb], %[xb], %[t], %[sbb]\n\t"                                              \
        "ldrd %[xa], %[xb], [%[x]], #8\n\t"                                                  \
        "smlad %[saa], %[xa], %[ua], %[saa]\n\t"                                             \
        "smlad %[sba], %[xb], %[ua], %[sba]\n\t"                                             \
        "smlad %[sab], %[xa], %[ub], %[sab]\n\t"                                             \
        "smlad %[sbb], %[xb], %[ub], %[sbb]\n\t"                                             \
        "subs %[n], %[n], #1\n\t"                                                            \
        "bne 1b\n\t"                                                                         \
        : [saa] "+r"(s_aa), [sab] "+r"(s_ab), [sba] "+r"(s_ba), [sbb] "+r"(s_bb),            \
          [x] "+r"(x_), [wa] "+r"(wa_), [wb] "+r"(wb_), [n] "+r"(n_), [ua] "=&r"(ua_),       \
          [ub] "=&r"(ub_), [t] "=&r"(t_), [xa] "=&r"(xa_), [xb] "=&r"(xb_)                   \
        :                                                                                    \
        : "cc", "memory");                                                                   \
  } while (0)

/* The last k & 3 weights of a row as a zero-padded word (never reads past the row). */
static inline uint32_t tail_word(const int8_t *w, int n) {
  uint32_t v = 0;
  int i;
  for (i = 0; i < n; ++i) v |= (uint32_t)(uint8_t)w[i] << (8 * i);
  return v;
}

/* One output of the pair path: tk_rq where the channel allows it (acc doubled here), else the
 * reference arithmetic. */
static inline int8_t pair_out(int32_t acc, int oc, const tk_conv_params *p) {
  const int32_t m = p->mult[oc], shift = p->shift[oc];
  const int32_t v = p->small_acc && tk_rq_ok(m, shift)
                        ? tk_rq((int32_t)((uint32_t)acc << 1), m, tk_rq_add(-shift, p->out_offset),
                                -shift)
                        : tk_mbqm(acc, m, shift) + p->out_offset;
  return tk_act(v, p->act_min, p->act_max);
}

/* Both pixels of a pair (`two` = 0: only the first) and every output channel. */
__attribute__((noinline)) static void pairs_all(const tk_w32 *xs, const int8_t *filter, int k,
                                                const int32_t *bias, const tk_conv_params *p,
                                                int8_t *o, int two) {
  const int oc_n = p->out_c, k4 = k >> 2, kt = k & 3;
  int oc;
  for (oc = 0; oc < oc_n; oc += 2) {
    const int ob = oc + 1 < oc_n ? oc + 1 : oc;
    const int8_t *wa = filter + (long)oc * k, *wb = filter + (long)ob * k;
    const tk_w32 *x = xs;
    int32_t s_aa = bias ? bias[oc] : 0, s_ab = bias ? bias[ob] : 0;
    int32_t s_ba = s_aa, s_bb = s_ab;
    /* The patch is zero from k to kp, so the last partial word may read on into the next
     * filter row, except in the very last rows. */
    const int over = kt && ob + 1 < oc_n;
    int n = k4 + over;
    if (n > 0) TK_MAC4_LOOP(n, x, wa, wb);
    if (kt && !over) {
      const uint32_t ua = tail_word(wa, kt), ub = tail_word(wb, kt);
      TK_MAC4(ua, ub, x);
    }
    o[oc] = pair_out(s_aa, oc, p);
    if (ob != oc) o[ob] = pair_out(s_ab, ob, p);
    if (two) {
      o[oc_n + oc] = pair_out(s_ba, oc, p);
      if (ob != oc) o[oc_n + ob] = pair_out(s_bb, ob, p);
    }
  }
}

static void conv_pairs(const tk_conv_params *p, const int8_t *in, const int8_t *filter,
                       const int32_t *bias, tk_w32 *xs, int8_t *out) {
  const int k = p->k_h * p->k_w * p->in_c;
  const int kp = (k + 3) & ~3;
  const int npx = p->out_h * p->out_w;
  int8_t *tmp = (int8_t *)(void *)(xs + kp);
  int b, px;
  for (b = 0; b < p->batches; ++b) {
    const int8_t *bin = in + (long)b * p->in_h * p->in_w * p->in_c;
    int8_t *bout = out + (long)b * npx * p->out_c;
    for (px = 0; px < npx; px += 2) {
      const int two = px + 1 < npx;
      im2col(p, bin, px, xs, 0, kp, tmp);
      im2col(p, bin, two ? px + 1 : px, xs, 1, kp, tmp);
      pairs_all(xs, filter, k, bias, p, bout + (long)px * p->out_c, two);
    }
  }
}
#undef TK_MAC4
#undef TK_MAC4_LOOP


/* ---- Four-pixel blocks on int8 weights (every channel accepted by tk_rq) ----
 *
 * The patches of four output pixels are expanded to int16 pairs holding 2 * (input + offset),
 * group by group (four k): [p0 lo, p0 hi, p1 lo, p1 hi, ..., p3 hi], lo = SXTB16 order k0/k2,
 * hi = k1/k3. One output channel at a time, a filter word is sign-extended once (two SXTB16)
 * and used by eight SMLAD against two LDM of patch words: 13 instructions per 16 MACs. The
 * accumulators start at 2 * bias, so they hold 2 * acc for tk_rq. */

/* Per output channel, prepared once per call (scratch): 2 * bias four times (one LDM fills the
 * four accumulators of a pixel block), then the tk_rq constants. The asm below loads the four
 * bias words, then mult, add and right with one LDM each. */
typedef struct {
  int32_t bias2[4];
  int32_t mult, add, right;
} tk_cq;

#define TK_CQ_BYTES 28
TK_STATIC_ASSERT(sizeof(tk_cq) == TK_CQ_BYTES, "asm steps through the table in TK_CQ_BYTES");
TK_STATIC_ASSERT(offsetof(tk_cq, bias2) == 0, "asm: ldm {acc0..acc3} at the channel start");
TK_STATIC_ASSERT(offsetof(tk_cq, mult) == 16 && offsetof(tk_cq, add) == 20 &&
                     offsetof(tk_cq, right) == 24,
                 "asm: ldm {mult, add, right} right after the bias words");

/* Fills the table (every channel takes tk_rq). */
static void b4_prepare(const tk_conv_params *p, const int32_t *bias, tk_cq *q) {
  int oc;
  for (oc = 0; oc < p->out_c; ++oc) {
    q[oc].bias2[0] = q[oc].bias2[1] = q[oc].bias2[2] = q[oc].bias2[3] =
        (int32_t)(2u * (uint32_t)(bias ? bias[oc] : 0));
    q[oc].mult = p->mult[oc];
    q[oc].right = -p->shift[oc];
    q[oc].add = tk_rq_add(-p->shift[oc], p->out_offset);
  }
}

/* Words of one pixel of a group in the four-pixel layout: lo at [0], hi at [1], stride 8. */
static void expand4_b4(const int8_t *src, int n4, int32_t off2, tk_w32 *dst) {
  /* 2 * (x + off) = (2 * off + x) + x per halfword: two SXTAB16 per pair of values. */
  const uint32_t o2 = __sadd16((uint32_t)off2, (uint32_t)off2);
  uint32_t w, lo, hi;
  if (n4 <= 0) return;
#define TK_EXP_ONE                              \
  "ldr %[w], [%[s]], #4\n\t"                  \
  "sxtab16 %[lo], %[o], %[w]\n\t"             \
  "sxtab16 %[hi], %[o], %[w], ror #8\n\t"     \
  "sxtab16 %[lo], %[lo], %[w]\n\t"            \
  "sxtab16 %[hi], %[hi], %[w], ror #8\n\t"    \
  "strd %[lo], %[hi], [%[d]], #32\n\t"
  __asm volatile(
      "tst %[n], #1\n\t"
      "beq 2f\n\t"
      TK_EXP_ONE
      "2:\n\t"
      "lsrs %[n], %[n], #1\n\t"
      "beq 3f\n"
      "1:\n\t"
      TK_EXP_ONE
      TK_EXP_ONE
      "subs %[n], %[n], #1\n\t"
      "bne 1b\n"
      "3:\n"
      : [s] "+r"(src), [d] "+r"(dst), [n] "+r"(n4), [w] "=&r"(w), [lo] "=&r"(lo),
        [hi] "=&r"(hi)
      : [o] "r"(o2)
      : "cc", "memory");
#undef TK_EXP_ONE
}

static void zero_b4(tk_w32 *dst, int n4) {
  int i;
  for (i = 0; i < n4; ++i, dst += 8) dst[0] = dst[1] = 0;
}

/* One word of four int8 k as 2 * (x + off) in the four-pixel layout (o2 = 2 * off per lane). */
static inline void exp_word_b4(tk_w32 *d, uint32_t v, uint32_t o2) {
  uint32_t lo, hi;
  __asm("sxtab16 %0, %2, %3\n\t"
        "sxtab16 %1, %2, %3, ror #8\n\t"
        "sxtab16 %0, %0, %3\n\t"
        "sxtab16 %1, %1, %3, ror #8"
        : "=&r"(lo), "=&r"(hi)
        : "r"(o2), "r"(v));
  d[0] = (int32_t)lo;
  d[1] = (int32_t)hi;
}

/* 3x3 kernel over 3 input channels (k = 27, kp = 28): the three 9-byte rows r0..r2 become seven
 * words straight from unaligned loads that stay inside each row; k = 27 takes the zero point. */
static void im2col_rgb3x3(const int8_t *r0, const int8_t *r1, const int8_t *r2, uint32_t zp,
                          uint32_t o2, tk_w32 *d) {
  const uint32_t w1 = *(const tk_u32u *)(const void *)r1;
  const uint32_t w2 = *(const tk_u32u *)(const void *)r2;
  exp_word_b4(d, *(const tk_u32u *)(const void *)r0, o2);
  exp_word_b4(d + 8, *(const tk_u32u *)(const void *)(r0 + 4), o2);
  exp_word_b4(d + 16, (uint32_t)(uint8_t)r0[8] | (w1 << 8), o2);
  exp_word_b4(d + 24, *(const tk_u32u *)(const void *)(r1 + 3), o2);
  exp_word_b4(d + 32, (uint32_t)*(const tk_u16u *)(const void *)(r1 + 7) | (w2 << 16), o2);
  exp_word_b4(d + 40, *(const tk_u32u *)(const void *)(r2 + 2), o2);
  exp_word_b4(d + 48, (*(const tk_u32u *)(const void *)(r2 + 5) >> 8) | (zp << 24), o2);
}

/* Patch of output pixel `px` into the four-pixel layout at dst (= base + 2 * slot). */
static void im2col_b4(const tk_conv_params *p, const int8_t *in, int px, tk_w32 *dst, int kp,
                      int8_t *tmp, int32_t off2) {
  const int oy = px / p->out_w, ox = px % p->out_w;
  const int y0 = oy * p->stride_h - p->pad_h, x0 = ox * p->stride_w - p->pad_w;
  const int ic = p->in_c;
  const int8_t zp = (int8_t)(-p->in_offset);
  int ky, kx, k = 0;
  if ((ic & 3) == 0) {
    if (p->k_h == 1 && p->k_w == 1 && y0 >= 0 && x0 >= 0) {
      expand4_b4(in + ((long)y0 * p->in_w + x0) * ic, ic >> 2, off2, dst);
      return;
    }
    if (p->dil_w == 1 && x0 >= 0 && x0 + p->k_w <= p->in_w) {
      const int run = p->k_w * ic;
      for (ky = 0; ky < p->k_h; ++ky, k += run) {
        const int y = y0 + p->dil_h * ky;
        if (y >= 0 && y < p->in_h) {
          expand4_b4(in + ((long)y * p->in_w + x0) * ic, run >> 2, off2, dst + 2 * k);
        } else {
          zero_b4(dst + 2 * k, run >> 2);
        }
      }
      return;
    }
    for (ky = 0; ky < p->k_h; ++ky) {
      const int y = y0 + p->dil_h * ky;
      for (kx = 0; kx < p->k_w; ++kx, k += ic) {
        const int x = x0 + p->dil_w * kx;
        if (y >= 0 && y < p->in_h && x >= 0 && x < p->in_w) {
          expand4_b4(in + ((long)y * p->in_w + x) * ic, ic >> 2, off2, dst + 2 * k);
        } else {
          zero_b4(dst + 2 * k, ic >> 2);
        }
      }
    }
    return;
  }
  /* Channel counts like 3 (the first layer): gather the patch bytes, pad with the zero point. */
  if (p->dil_w == 1 && x0 >= 0 && x0 + p->k_w <= p->in_w && p->k_h == 3 && p->k_w * ic == 9) {
    const uint32_t zp4 = (uint8_t)zp * 0x01010101u;
    const uint32_t zrow[3] = {zp4, zp4, zp4};
    const int8_t *r[3];
    for (ky = 0; ky < 3; ++ky) {
      const int y = y0 + p->dil_h * ky;
      r[ky] = y >= 0 && y < p->in_h ? in + ((long)y * p->in_w + x0) * ic
                                    : (const int8_t *)(const void *)zrow;
    }
    im2col_rgb3x3(r[0], r[1], r[2], (uint8_t)zp, __sadd16((uint32_t)off2, (uint32_t)off2), dst);
    return;
  }
  gather_bytes(p, in, y0, x0, kp, tmp);
  expand4_b4(tmp, kp >> 2, off2, dst);
}

/* One group of four k of one filter row (r10) against the four pixels' patch words (r11):
 * acc_p (r0..r3) += row . patch_p. */
#define TK_B4_GROUP                                   \
  "ldr r9, [r10], #4\n\t"                             \
  "ldm r11!, {r4, r5, r6, r8}\n\t"                    \
  "sxtb16 r12, r9\n\t"                                \
  "sxtb16 r9, r9, ror #8\n\t"                         \
  "smlad r0, r4, r12, r0\n\t"                         \
  "smlad r0, r5, r9, r0\n\t"                          \
  "smlad r1, r6, r12, r1\n\t"                         \
  "smlad r1, r8, r9, r1\n\t"                          \
  "ldm r11!, {r4, r5, r6, r8}\n\t"                    \
  "smlad r2, r4, r12, r2\n\t"                         \
  "smlad r2, r5, r9, r2\n\t"                          \
  "smlad r3, r6, r12, r3\n\t"                         \
  "smlad r3, r8, r9, r3\n\t"

/* tk_conv_b4_sat*: activation range [-128, 127], a full block of four pixels, the first n_ch
 * of the oc_n output channels (q: the channel table, filter: their rows, o: pixel 0 of the
 * block). Per channel the MAC loop runs `iters` times over an unrolled body of 2, 4 or 8
 * groups; tk_conv_b4_sat_g takes any group count (an odd one enters its two-group body at the
 * second half) and steps each filter row back by wadj bytes (k = 4 * groups - wadj: the last
 * word of a row reads on into the next row, against zero patch words; the caller runs the
 * last channel separately when wadj > 0). Per channel: 13 instructions per group (16 MACs),
 * about 30 for set-up, requantization and the four stores (output pointers kept on the stack
 * and moved with one LDM/STM). */
#define TK_B4_SAT_ARGS                                                                   \
  const tk_w32 *xs, const int8_t *filter, const tk_cq *q, int8_t *o, int n_ch, int iters, \
      int odd, int wadj, int oc_n
void tk_conv_b4_sat(TK_B4_SAT_ARGS);
void tk_conv_b4_sat4(TK_B4_SAT_ARGS);
void tk_conv_b4_sat8(TK_B4_SAT_ARGS);
void tk_conv_b4_sat_g(TK_B4_SAT_ARGS);

/* Stack layout: r4-r11 and lr pushed (36 bytes) below the caller's stack arguments (n_ch ...
 * oc_n, AAPCS: arguments 4.. at the caller's sp), then TK_B4_FRAME bytes of locals: the four
 * output pointers (0..12, one LDM/STM), xs, the end of the channel table. */
#define TK_B4_FRAME 24
#define TK_B4_O 0
#define TK_B4_XS 16
#define TK_B4_END 20
#define TK_B4_ARG(i) (TK_B4_FRAME + 36 + 4 * ((i) - 4))
#define TK_B4_SP(off) "[sp, #" TK_STR(off) "]"

#define TK_B4_RQ(r) TK_RQ_ASM("r12", r, "r4", "r5", "r6") "ssat " r ", #8, r12\n\t"

/* One tk_conv_b4_sat* function: `entry` runs before the MAC loop of each channel, `body` is the
 * unrolled loop body, `after` runs after the loop (r10: filter row pointer). */
#define TK_B4_SAT_FN(name, entry, body, after)                                                 \
  __asm(".pushsection .text." name ",\"ax\",%progbits\n\t"                                    \
        ".syntax unified\n\t"                                                                   \
        ".thumb\n\t"                                                                            \
        ".align 2\n\t"                                                                          \
        ".global " name "\n\t"                                                                  \
        ".thumb_func\n\t"                                                                       \
        ".type " name ", %function\n" name                                                      \
        ":\n\t"                                                                                 \
        "push {r4, r5, r6, r7, r8, r9, r10, r11, lr}\n\t"                                       \
        "sub sp, sp, #" TK_STR(TK_B4_FRAME) "\n\t"                                              \
        "ldr r4, " TK_B4_SP(TK_B4_ARG(8)) "\n\t"                                                \
        "str r3, " TK_B4_SP(TK_B4_O) "\n\t"                                                     \
        "add r3, r3, r4\n\t"                                                                    \
        "str r3, " TK_B4_SP(TK_B4_O + 4) "\n\t"                                                 \
        "add r3, r3, r4\n\t"                                                                    \
        "str r3, " TK_B4_SP(TK_B4_O + 8) "\n\t"                                                 \
        "add r3, r3, r4\n\t"                                                                    \
        "str r3, " TK_B4_SP(TK_B4_O + 12) "\n\t"                                                \
        "str r0, " TK_B4_SP(TK_B4_XS) "\n\t"                                                    \
        "ldr r4, " TK_B4_SP(TK_B4_ARG(4)) "\n\t"                                                \
        "movs r6, #" TK_STR(TK_CQ_BYTES) "\n\t"                                                 \
        "mla r6, r4, r6, r2\n\t"                                                                \
        "str r6, " TK_B4_SP(TK_B4_END) "\n\t"                                                   \
        "mov r7, r2\n\t"                                                                        \
        "mov r10, r1\n\t"                                                                       \
        "2:\n\t"                                                                                \
        "ldm r7!, {r0, r1, r2, r3}\n\t"                                                         \
        "ldr r11, " TK_B4_SP(TK_B4_XS) "\n\t"                                                   \
        "ldr lr, " TK_B4_SP(TK_B4_ARG(5)) "\n\t"                                                \
        entry                                                                                   \
        "4:\n\t"                                                                                \
        body                                                                                    \
        "subs lr, lr, #1\n\t"                                                                   \
        "bne 4b\n\t"                                                                            \
        after                                                                                   \
        "ldm r7!, {r4, r5, r6}\n\t"                                                             \
        TK_B4_RQ("r0") TK_B4_RQ("r1") TK_B4_RQ("r2") TK_B4_RQ("r3")                             \
        "ldm sp, {r8, r9, r11, r12}\n\t"                                                        \
        "strb r0, [r8], #1\n\t"                                                                 \
        "strb r1, [r9], #1\n\t"                                                                 \
        "strb r2, [r11], #1\n\t"                                                                \
        "strb r3, [r12], #1\n\t"                                                                \
        "stm sp, {r8, r9, r11, r12}\n\t"                                                        \
        "ldr lr, " TK_B4_SP(TK_B4_END) "\n\t"                                                   \
        "cmp r7, lr\n\t"                                                                        \
        "bne 2b\n\t"                                                                            \
        "add sp, sp, #" TK_STR(TK_B4_FRAME) "\n\t"                                              \
        "pop {r4, r5, r6, r7, r8, r9, r10, r11, pc}\n\t"                                        \
        ".size " name ", . - " name "\n\t"                                                      \
        ".popsection\n")

TK_B4_SAT_FN("tk_conv_b4_sat", "", TK_B4_GROUP TK_B4_GROUP, "");
TK_B4_SAT_FN("tk_conv_b4_sat4", "", TK_B4_GROUP TK_B4_GROUP TK_B4_GROUP TK_B4_GROUP, "");
TK_B4_SAT_FN("tk_conv_b4_sat8", "",
             TK_B4_GROUP TK_B4_GROUP TK_B4_GROUP TK_B4_GROUP
             TK_B4_GROUP TK_B4_GROUP TK_B4_GROUP TK_B4_GROUP, "");
TK_B4_SAT_FN("tk_conv_b4_sat_g",
             "ldr r12, " TK_B4_SP(TK_B4_ARG(6)) "\n\t"
             "cmp r12, #0\n\t"
             "bne 6f\n\t",
             TK_B4_GROUP "6:\n\t" TK_B4_GROUP,
             "ldr r12, " TK_B4_SP(TK_B4_ARG(7)) "\n\t"
             "sub r10, r10, r12\n\t");
#undef TK_B4_RQ

static inline int8_t b4_out(int32_t acc2, const tk_cq *q, int sat8, int32_t lo, int32_t hi) {
  const int32_t v = tk_rq(acc2, q->mult, q->add, q->right);
  return sat8 ? (int8_t)__ssat(v, 8) : tk_act(v, lo, hi);
}

/* All output channels of one block of four pixels (`valid` of them stored). */
__attribute__((always_inline)) static inline void block4_body(
    const tk_w32 *xs, const int8_t *filter, int k, const tk_cq *q, int n_ch, int oc_n, int8_t *o,
    int valid, int sat8, int32_t lo, int32_t hi) {
  const int kt = k & 3, g_all = (k + 3) >> 2;
  int oc;
  for (oc = 0; oc < n_ch; ++oc, ++q, ++o) {
    const int8_t *wrow = filter + (long)oc * k;
    /* The patch is zero from k to kp, so the last partial word may read on into the next
     * filter row, except in the very last row. */
    const int last_tail = kt && oc + 1 == n_ch;
    int32_t s0, s1, s2, s3;
    {
      register int32_t a0 __asm("r0") = q->bias2[0];
      register int32_t a1 __asm("r1") = a0;
      register int32_t a2 __asm("r2") = a0;
      register int32_t a3 __asm("r3") = a0;
      register const int8_t *w __asm("r10") = wrow;
      register const tk_w32 *x __asm("r11") = xs;
      register int n __asm("lr") = last_tail ? k >> 2 : g_all;
      register uint32_t x0 __asm("r4"), x1 __asm("r5"), x2 __asm("r6"), x3 __asm("r8");
      register uint32_t u __asm("r9"), t __asm("r12");
      __asm volatile(
          "tst %[n], #1\n\t"
          "beq 2f\n\t"
          TK_B4_GROUP
          "2:\n\t"
          "lsrs %[n], %[n], #1\n\t"
          "beq 3f\n\t"
          "1:\n\t"
          TK_B4_GROUP
          TK_B4_GROUP
          "subs %[n], %[n], #1\n\t"
          "bne 1b\n\t"
          "3:\n\t"
          : "+r"(a0), "+r"(a1), "+r"(a2), "+r"(a3), [w] "+r"(w), [x] "+r"(x), [n] "+r"(n),
            "=&r"(x0), "=&r"(x1), "=&r"(x2), "=&r"(x3), "=&r"(u), "=&r"(t)
          :
          : "cc", "memory");
      s0 = a0;
      s1 = a1;
      s2 = a2;
      s3 = a3;
      if (last_tail) {
        const uint32_t wt = tail_word(w, kt);
        const int32_t l = (int32_t)__sxtb16(wt), h = (int32_t)__sxtb16(tk_ror8(wt));
        s0 = __smlad(x[0], l, __smlad(x[1], h, s0));
        s1 = __smlad(x[2], l, __smlad(x[3], h, s1));
        s2 = __smlad(x[4], l, __smlad(x[5], h, s2));
        s3 = __smlad(x[6], l, __smlad(x[7], h, s3));
      }
    }
    o[0] = b4_out(s0, q, sat8, lo, hi);
    if (valid > 1) o[oc_n] = b4_out(s1, q, sat8, lo, hi);
    if (valid > 2) o[2 * oc_n] = b4_out(s2, q, sat8, lo, hi);
    if (valid > 3) o[3 * oc_n] = b4_out(s3, q, sat8, lo, hi);
  }
}
#undef TK_B4_GROUP

/* One channel of a full block with range [-128, 127] (the last row of a k that is not a
 * multiple of 4). */
__attribute__((noinline)) static void block4_one_sat(const tk_w32 *xs, const int8_t *filter,
                                                     int k, const tk_cq *q, int oc_n, int8_t *o) {
  block4_body(xs, filter, k, q, 1, oc_n, o, 4, 1, -128, 127);
}

__attribute__((noinline)) static void block4_clamp(const tk_w32 *xs, const int8_t *filter,
                                                   int k, const tk_cq *q, int oc_n, int8_t *o,
                                                   int32_t lo, int32_t hi) {
  block4_body(xs, filter, k, q, oc_n, oc_n, o, 4, 0, lo, hi);
}

__attribute__((noinline)) static void block4_part(const tk_w32 *xs, const int8_t *filter, int k,
                                                  const tk_cq *q, int oc_n, int8_t *o,
                                                  int valid, int32_t lo, int32_t hi) {
  block4_body(xs, filter, k, q, oc_n, oc_n, o, valid, 0, lo, hi);
}

/* A block holding a single pixel (the last of an odd pixel count): one pixel per channel, 7
 * instructions per 8 MACs instead of the whole four-pixel block. */
__attribute__((noinline)) static void block1(const tk_w32 *xs, const int8_t *filter, int k,
                                             const tk_cq *q, int oc_n, int8_t *o, int32_t lo,
                                             int32_t hi) {
  const int k4 = k >> 2, kt = k & 3;
  const int sat8 = lo == -128 && hi == 127;
  const int8_t *w = filter;
  int oc, g;
  for (oc = 0; oc < oc_n; ++oc, ++q) {
    int32_t s = q->bias2[0];
    const tk_w32 *x = xs;
#pragma GCC unroll 2
    for (g = 0; g < k4; ++g, x += 8, w += 4) {
      const uint32_t u = *(const tk_u32u *)(const void *)w;
      s = __smlad(x[0], (int32_t)__sxtb16(u), s);
      s = __smlad(x[1], (int32_t)tk_sxtb16_ror8(u), s);
    }
    if (kt) {
      const uint32_t u = tail_word(w, kt);
      s = __smlad(x[0], (int32_t)__sxtb16(u), s);
      s = __smlad(x[1], (int32_t)__sxtb16(tk_ror8(u)), s);
      w += kt;
    }
    o[oc] = b4_out(s, q, sat8, lo, hi);
  }
}

static void conv_b4(const tk_conv_params *p, const int8_t *in, const int8_t *filter,
                    const tk_cq *q, tk_w32 *xs, int8_t *out) {
  const int k = p->k_h * p->k_w * p->in_c;
  const int kp = (k + 3) & ~3;
  const int npx = p->out_h * p->out_w;
  const int oc_n = p->out_c;
  const int32_t lo = p->act_min, hi = p->act_max;
  const int sat8 = lo == -128 && hi == 127;
  const int32_t off2 = (int32_t)(((uint32_t)(p->in_offset & 0xFFFF) << 16) |
                                 (uint32_t)(p->in_offset & 0xFFFF));
  int8_t *tmp = (int8_t *)(void *)(xs + 2 * kp);
  const int pw = p->k_h == 1 && p->k_w == 1 && p->stride_h == 1 && p->stride_w == 1 &&
                 p->pad_h == 0 && p->pad_w == 0 && (p->in_c & 3) == 0 && p->in_w == p->out_w &&
                 p->in_h == p->out_h;
  const int rgb = p->in_c == 3 && p->k_h == 3 && p->k_w == 3 && p->dil_w == 1;
  const uint32_t zp8 = (uint8_t)(-p->in_offset), o2 = __sadd16((uint32_t)off2, (uint32_t)off2);
  const uint32_t zr[3] = {zp8 * 0x01010101u, zp8 * 0x01010101u, zp8 * 0x01010101u};
  int b, px, j;
  for (b = 0; b < p->batches; ++b) {
    const int8_t *bin = in + (long)b * p->in_h * p->in_w * p->in_c;
    int8_t *bout = out + (long)b * npx * oc_n;
    for (px = 0; px < npx; px += 4) {
      const int valid = npx - px < 4 ? npx - px : 4;
      int8_t *o = bout + (long)px * oc_n;
      if (rgb && valid == 4 && px % p->out_w + 3 < p->out_w &&
          (px % p->out_w) * p->stride_w - p->pad_w >= 0 &&
          (px % p->out_w + 3) * p->stride_w - p->pad_w + 3 <= p->in_w) {
        /* 3x3 over 3 channels, four pixels of one output row inside along x. */
        const int y0 = px / p->out_w * p->stride_h - p->pad_h;
        const int x0 = (px % p->out_w) * p->stride_w - p->pad_w;
        const int sx = p->stride_w * 3;
        const int8_t *r[3];
        int st[3], ky;
        for (ky = 0; ky < 3; ++ky) {
          const int y = y0 + p->dil_h * ky;
          const int inside = y >= 0 && y < p->in_h;
          r[ky] = inside ? bin + ((long)y * p->in_w + x0) * 3 : (const int8_t *)(const void *)zr;
          st[ky] = inside ? sx : 0;
        }
        for (j = 0; j < 4; ++j) {
          im2col_rgb3x3(r[0] + j * st[0], r[1] + j * st[1], r[2] + j * st[2], zp8, o2, xs + 2 * j);
        }
      } else if (pw && valid == 4) {
        /* Pointwise, stride 1, no padding: the four pixels are consecutive in the input. */
        const int8_t *src = bin + (long)px * p->in_c;
        for (j = 0; j < 4; ++j, src += p->in_c) expand4_b4(src, p->in_c >> 2, off2, xs + 2 * j);
      } else {
        for (j = 0; j < 4; ++j) {
          im2col_b4(p, bin, j < valid ? px + j : px, xs + 2 * j, kp, tmp, off2);
        }
      }
      if (valid == 1) {
        block1(xs, filter, k, q, oc_n, o, lo, hi);
      } else if (valid < 4) {
        block4_part(xs, filter, k, q, oc_n, o, valid, lo, hi);
      } else if (sat8 && (k & 31) == 0) {
        tk_conv_b4_sat8(xs, filter, q, o, oc_n, k >> 5, 0, 0, oc_n);
      } else if (sat8 && (k & 15) == 0) {
        tk_conv_b4_sat4(xs, filter, q, o, oc_n, k >> 4, 0, 0, oc_n);
      } else if (sat8 && (k & 7) == 0) {
        tk_conv_b4_sat(xs, filter, q, o, oc_n, k >> 3, 0, 0, oc_n);
      } else if (sat8) {
        const int last = (k & 3) ? oc_n - 1 : oc_n;
        const int groups = kp >> 2;
        if (last > 0) {
          tk_conv_b4_sat_g(xs, filter, q, o, last, (groups + 1) >> 1, groups & 1, kp - k, oc_n);
        }
        if (last < oc_n) {
          block4_one_sat(xs, filter + (long)last * k, k, q + last, oc_n, o + last);
        }
      } else {
        block4_clamp(xs, filter, k, q, oc_n, o, lo, hi);
      }
    }
  }
}


/* ---- Two channels x two pixels on int16 operands (every channel accepted by tk_rq) ----
 *
 * Both operands are widened into the work space, group by group (four k), in SXTB16 order
 * (lo = k0/k2, hi = k1/k3):
 * - patches of a pixel pair, holding input + offset: [p0 lo, p0 hi, p1 lo, p1 hi];
 * - weights of a channel pair, doubled, as one buffer per pair: the four accumulator start
 *   values (2 * bias of c0, c1, c0, c1), the groups [c0 lo, c0 hi, c1 lo, c1 hi], then the
 *   tk_rq constants (mult, add, right) of c0 and of c1.
 * A group is then two LDM and eight SMLAD (10 instructions per 16 MACs) into the accumulators
 * (p0 c0, p0 c1, p1 c0, p1 c1), which hold 2 * acc for tk_rq. The groups are one unrolled run
 * of TK_C2_GMAX (tk_c2_body) entered TK_C2_GROUP_BYTES * g bytes before its end, so the loop
 * needs no counter register; longer rows rerun the whole body (chunks).
 *
 * The output pixels go in bands of scratch_px: the band's patches are built, then for each
 * channel pair the asm runs all pixel pairs of the band (tk_c2*, one call for all pairs).
 * scratch_mode TK_CONV_C2_ALL: every pair's weights are widened once per call; TK_CONV_C2_PAIR:
 * one buffer, widened for each pair in every band. An odd last pixel runs as a pair with itself
 * (its repeat stored to spare bytes), an odd last channel in C (block_c2). */
#define TK_C2_GMAX 32
#define TK_C2_GROUP_BYTES 40
#define TK_C2_PAIR_WORDS(g) (10 + 4 * (g))

#define TK_C2_GROUP                       \
  "ldmia.w r12!, {r4, r5, r6, r7}\n\t"   \
  "ldmia.w lr!, {r8, r9, r10, r11}\n\t"  \
  "smlad r0, r4, r8, r0\n\t"             \
  "smlad r0, r5, r9, r0\n\t"             \
  "smlad r1, r4, r10, r1\n\t"            \
  "smlad r1, r5, r11, r1\n\t"            \
  "smlad r2, r6, r8, r2\n\t"             \
  "smlad r2, r7, r9, r2\n\t"             \
  "smlad r3, r6, r10, r3\n\t"            \
  "smlad r3, r7, r11, r3\n\t"

/* Frame of the tk_c2* functions: r4-r11 and lr pushed (36 bytes) below the caller's stack
 * arguments (arguments 4.. at the caller's sp), then TK_C2_FRAME bytes of locals. */
#define TK_C2_FRAME 56
#define TK_C2_OUT 0     /* output of (p0, c0) of the current block */
#define TK_C2_OC 4      /* bytes from p0 to p1 (output channels) */
#define TK_C2_END 8     /* end of the band's patch words */
#define TK_C2_RET 12    /* return address of the body (bit 0 set) */
#define TK_C2_W 16      /* weight buffer of the current channel pair */
#define TK_C2_ENTRY 20  /* entry into the body (first chunk) */
#define TK_C2_LEFT 24   /* chunks still to run in this block */
#define TK_C2_CHUNKS 28 /* chunks - 1 */
#define TK_C2_LO 32     /* activation range, each byte (clamp variants) */
#define TK_C2_HI 36
#define TK_C2_XS 40     /* the band's patch words */
#define TK_C2_OBASE 44  /* output of the current pair at the band's first pixel */
#define TK_C2_PAIRS 48  /* channel pairs left */
#define TK_C2_PBYTES 52 /* bytes from one pair's weight buffer to the next */
#define TK_C2_ARG(i) (TK_C2_FRAME + 36 + 4 * ((i) - 4))
#define TK_C2_SP(off) "[sp, #" TK_STR(off) "]"
TK_STATIC_ASSERT(TK_C2_OUT == 0 && TK_C2_OC == 4 && TK_C2_END == 8,
                 "ldm sp, {out, oc, end} after each block");
TK_STATIC_ASSERT(TK_C2_W + 4 == TK_C2_ENTRY && TK_C2_LO + 4 == TK_C2_HI &&
                     TK_C2_PAIRS + 4 == TK_C2_PBYTES,
                 "ldrd/strd pairs of frame slots");

/* The shared body: r12 patch words, lr weight words, r0..r3 accumulators; returns through the
 * address in the caller's frame (TK_C2_RET). Every instruction is 32 bits wide. */
extern const uint8_t tk_c2_body[], tk_c2_body_end[];
__asm(".pushsection .text.tk_c2_body,\"ax\",%progbits\n\t"
      ".syntax unified\n\t"
      ".thumb\n\t"
      ".align 2\n\t"
      ".global tk_c2_body\n\t"
      ".global tk_c2_body_end\n"
      "tk_c2_body:\n\t"
      ".rept " TK_STR(TK_C2_GMAX) "\n\t" TK_C2_GROUP ".endr\n"
      "tk_c2_body_end:\n\t"
      "ldr pc, [sp, #" TK_STR(TK_C2_RET) "]\n\t"
      ".if tk_c2_body_end - tk_c2_body != " TK_STR(TK_C2_GMAX) " * " TK_STR(TK_C2_GROUP_BYTES)
      "\n\t.error \"tk_c2_body: a group is not TK_C2_GROUP_BYTES long\"\n\t.endif\n\t"
      ".size tk_c2_body, . - tk_c2_body\n\t"
      ".popsection\n");

/* tk_c2[c][k](xs, w, out, end, oc, entry, chunks - 1, lo4, hi4, pairs, pair_bytes): the
 * pixel pairs of the band from xs to end, for `pairs` channel pairs whose weight buffers start
 * at w, pair_bytes apart; out: output of the band's first pixel and the first pair's c0. c:
 * clamp to [lo, hi] (each byte of lo4, hi4), else [-128, 127]; k: chunks1 > 0. */
#define TK_C2_ARGS                                                                           \
  const tk_w32 *xs, const tk_w32 *w, int8_t *out, const tk_w32 *end, int oc,                \
      const void *entry, int chunks1, uint32_t lo4, uint32_t hi4, int pairs, int pair_bytes
void tk_c2(TK_C2_ARGS);
void tk_c2c(TK_C2_ARGS);
void tk_c2k(TK_C2_ARGS);
void tk_c2ck(TK_C2_ARGS);

#define TK_C2_RQ(acc, m, add, right) TK_RQ_ASM("r10", acc, m, add, right) \
  "ssat " acc ", #8, r10\n\t"

/* Requantized accumulators to (p0: c0 c1) and (p1: c0 c1) at r10 and r10 + r11. */
#define TK_C2_STORE_SAT                 \
  "bfi r0, r1, #8, #8\n\t"              \
  "strh r0, [r10]\n\t"                  \
  "bfi r2, r3, #8, #8\n\t"              \
  "strh r2, [r10, r11]\n\t"
/* The same clamped to [lo, hi] four bytes at a time (SSUB8 sets GE per byte, SEL picks). */
#define TK_C2_STORE_CLAMP                      \
  "bfi r0, r1, #8, #8\n\t"                     \
  "bfi r2, r3, #8, #8\n\t"                     \
  "pkhbt r0, r0, r2, lsl #16\n\t"              \
  "ldrd r4, r5, " TK_C2_SP(TK_C2_LO) "\n\t"    \
  "ssub8 r1, r0, r4\n\t"                       \
  "sel r0, r0, r4\n\t"                         \
  "ssub8 r1, r5, r0\n\t"                       \
  "sel r0, r0, r5\n\t"                         \
  "strh r0, [r10]\n\t"                         \
  "lsr r0, r0, #16\n\t"                        \
  "strh r0, [r10, r11]\n\t"

/* Chunked variants: each block runs the body chunks1 + 1 times. */
#define TK_C2_CHUNK_START                      \
  "ldr r5, " TK_C2_SP(TK_C2_CHUNKS) "\n\t"     \
  "str r5, " TK_C2_SP(TK_C2_LEFT) "\n\t"
#define TK_C2_CHUNK_AFTER                      \
  "ldr r4, " TK_C2_SP(TK_C2_LEFT) "\n\t"       \
  "subs r4, r4, #1\n\t"                        \
  "bmi 7f\n\t"                                 \
  "str r4, " TK_C2_SP(TK_C2_LEFT) "\n\t"       \
  "b.w tk_c2_body\n"                           \
  "7:\n\t"

#define TK_C2_FN(name, chunk_start, chunk_after, store)                                     \
  __asm(".pushsection .text." name ",\"ax\",%progbits\n\t"                                  \
        ".syntax unified\n\t"                                                                 \
        ".thumb\n\t"                                                                          \
        ".align 2\n\t"                                                                        \
        ".global " name "\n\t"                                                                \
        ".thumb_func\n\t"                                                                     \
        ".type " name ", %function\n" name ":\n\t"                                            \
        "push {r4, r5, r6, r7, r8, r9, r10, r11, lr}\n\t"                                     \
        "sub sp, sp, #" TK_STR(TK_C2_FRAME) "\n\t"                                            \
        "adr r4, 8f\n\t"                                                                      \
        "orr r4, r4, #1\n\t"                                                                  \
        "str r4, " TK_C2_SP(TK_C2_RET) "\n\t"                                                 \
        "ldr r4, " TK_C2_SP(TK_C2_ARG(5)) "\n\t"                                              \
        "strd r1, r4, " TK_C2_SP(TK_C2_W) "\n\t"                                              \
        "ldr r4, " TK_C2_SP(TK_C2_ARG(4)) "\n\t"                                              \
        "strd r2, r4, " TK_C2_SP(TK_C2_OUT) "\n\t"                                            \
        "str r2, " TK_C2_SP(TK_C2_OBASE) "\n\t"                                               \
        "str r3, " TK_C2_SP(TK_C2_END) "\n\t"                                                 \
        "str r0, " TK_C2_SP(TK_C2_XS) "\n\t"                                                  \
        "ldr r4, " TK_C2_SP(TK_C2_ARG(6)) "\n\t"                                              \
        "str r4, " TK_C2_SP(TK_C2_CHUNKS) "\n\t"                                              \
        "ldr r4, " TK_C2_SP(TK_C2_ARG(7)) "\n\t"                                              \
        "ldr r5, " TK_C2_SP(TK_C2_ARG(8)) "\n\t"                                              \
        "strd r4, r5, " TK_C2_SP(TK_C2_LO) "\n\t"                                             \
        "ldr r4, " TK_C2_SP(TK_C2_ARG(9)) "\n\t"                                              \
        "ldr r5, " TK_C2_SP(TK_C2_ARG(10)) "\n\t"                                             \
        "strd r4, r5, " TK_C2_SP(TK_C2_PAIRS) "\n\t"                                          \
        "mov r12, r0\n"                                                                       \
        "1:\n\t"                                                                              \
        "ldrd lr, r4, " TK_C2_SP(TK_C2_W) "\n\t"                                              \
        "ldm lr!, {r0, r1, r2, r3}\n\t"                                                       \
        chunk_start                                                                           \
        "mov pc, r4\n"                                                                        \
        "8:\n\t"                                                                              \
        chunk_after                                                                           \
        "ldm lr!, {r4, r5, r6, r7, r8, r9}\n\t"                                               \
        TK_C2_RQ("r0", "r4", "r5", "r6") TK_C2_RQ("r1", "r7", "r8", "r9")                     \
        TK_C2_RQ("r2", "r4", "r5", "r6") TK_C2_RQ("r3", "r7", "r8", "r9")                     \
        "ldm sp, {r10, r11, lr}\n\t"                                                         \
        store                                                                                 \
        "add r10, r10, r11, lsl #1\n\t"                                                       \
        "str r10, " TK_C2_SP(TK_C2_OUT) "\n\t"                                                \
        "cmp r12, lr\n\t"                                                                     \
        "bne 1b\n\t"                                                                          \
        "ldrd r4, r5, " TK_C2_SP(TK_C2_PAIRS) "\n\t"                                          \
        "subs r4, r4, #1\n\t"                                                                 \
        "beq 9f\n\t"                                                                          \
        "str r4, " TK_C2_SP(TK_C2_PAIRS) "\n\t"                                               \
        "ldr r4, " TK_C2_SP(TK_C2_W) "\n\t"                                                   \
        "add r4, r4, r5\n\t"                                                                  \
        "str r4, " TK_C2_SP(TK_C2_W) "\n\t"                                                   \
        "ldr r10, " TK_C2_SP(TK_C2_OBASE) "\n\t"                                              \
        "add r10, r10, #2\n\t"                                                                \
        "str r10, " TK_C2_SP(TK_C2_OBASE) "\n\t"                                              \
        "str r10, " TK_C2_SP(TK_C2_OUT) "\n\t"                                                \
        "ldr r12, " TK_C2_SP(TK_C2_XS) "\n\t"                                                 \
        "b 1b\n"                                                                              \
        "9:\n\t"                                                                              \
        "add sp, sp, #" TK_STR(TK_C2_FRAME) "\n\t"                                            \
        "pop {r4, r5, r6, r7, r8, r9, r10, r11, pc}\n\t"                                      \
        ".size " name ", . - " name "\n\t"                                                    \
        ".popsection\n")

TK_C2_FN("tk_c2", "", "", TK_C2_STORE_SAT);
TK_C2_FN("tk_c2c", "", "", TK_C2_STORE_CLAMP);
TK_C2_FN("tk_c2k", TK_C2_CHUNK_START, TK_C2_CHUNK_AFTER, TK_C2_STORE_SAT);
TK_C2_FN("tk_c2ck", TK_C2_CHUNK_START, TK_C2_CHUNK_AFTER, TK_C2_STORE_CLAMP);

/* Widened words of one group of four k in a patch: lo at [0], hi at [1], 4 words per group. */
#define TK_C2_XG 4

/* n4 groups of four int8 into the pair layout at dst as x + off (o = off per lane). */
static void expand_c2(const int8_t *src, int n4, uint32_t o, tk_w32 *dst) {
  uint32_t w, lo, hi;
  if (n4 <= 0) return;
#define TK_EXP_ONE                              \
  "ldr %[w], [%[s]], #4\n\t"                  \
  "sxtab16 %[lo], %[o], %[w]\n\t"             \
  "sxtab16 %[hi], %[o], %[w], ror #8\n\t"     \
  "strd %[lo], %[hi], [%[d]], #16\n\t"
  __asm volatile(
      "tst %[n], #1\n\t"
      "beq 2f\n\t"
      TK_EXP_ONE
      "2:\n\t"
      "lsrs %[n], %[n], #1\n\t"
      "beq 3f\n"
      "1:\n\t"
      TK_EXP_ONE
      TK_EXP_ONE
      "subs %[n], %[n], #1\n\t"
      "bne 1b\n"
      "3:\n"
      : [s] "+r"(src), [d] "+r"(dst), [n] "+r"(n4), [w] "=&r"(w), [lo] "=&r"(lo),
        [hi] "=&r"(hi)
      : [o] "r"(o)
      : "cc", "memory");
#undef TK_EXP_ONE
}

/* Both pixels of a pair at once (s0, s1: their n4 >= 1 groups of channels): one STM per
 * group. */
__attribute__((noinline)) static void expand_pair_c2(const int8_t *s0, const int8_t *s1,
                                                     int n4, uint32_t o, tk_w32 *dst) {
  register uint32_t a __asm("r4"), b __asm("r5"), c __asm("r6"), d __asm("r7");
  uint32_t u, v;
  __asm volatile(
      "1:\n\t"
      "ldr %[u], [%[s0]], #4\n\t"
      "ldr %[v], [%[s1]], #4\n\t"
      "sxtab16 %[a], %[o], %[u]\n\t"
      "sxtab16 %[b], %[o], %[u], ror #8\n\t"
      "sxtab16 %[c], %[o], %[v]\n\t"
      "sxtab16 %[d], %[o], %[v], ror #8\n\t"
      "stm %[dst]!, {%[a], %[b], %[c], %[d]}\n\t"
      "subs %[n], %[n], #1\n\t"
      "bne 1b\n"
      : [s0] "+r"(s0), [s1] "+r"(s1), [dst] "+r"(dst), [n] "+r"(n4), [u] "=&r"(u),
        [v] "=&r"(v), [a] "=&r"(a), [b] "=&r"(b), [c] "=&r"(c), [d] "=&r"(d)
      : [o] "r"(o)
      : "cc", "memory");
}

static void zero_c2(tk_w32 *dst, int n4) {
  int i;
  for (i = 0; i < n4; ++i, dst += TK_C2_XG) dst[0] = dst[1] = 0;
}

static inline uint32_t tk_sxtab16_ror8(uint32_t a, uint32_t b) {
  uint32_t r;
  __asm("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(b));
  return r;
}

/* Word g of a 3x3 window over ic = 3 channels (k = 27: seven words) or ic = 1 (k = 9: three
 * words) from its three rows of 3 * ic bytes, with loads that stay inside each row; the k past
 * the window take the zero point (zp4: the zero point in every byte). */
static inline uint32_t win_word(int ic, const int8_t *r0, const int8_t *r1, const int8_t *r2,
                                int g, uint32_t zp4) {
  if (ic == 1) {
    switch (g) {
      case 0:
        return (uint32_t)*(const tk_u16u *)(const void *)r0 | (uint32_t)(uint8_t)r0[2] << 16 |
               (uint32_t)(uint8_t)r1[0] << 24;
      case 1:
        return (uint32_t)*(const tk_u16u *)(const void *)(r1 + 1) |
               (uint32_t)*(const tk_u16u *)(const void *)r2 << 16;
      default: return (uint32_t)(uint8_t)r2[2] | (zp4 & 0xFFFFFF00u);
    }
  }
  switch (g) {
    case 0: return *(const tk_u32u *)(const void *)r0;
    case 1: return *(const tk_u32u *)(const void *)(r0 + 4);
    case 2: return (uint32_t)(uint8_t)r0[8] | (*(const tk_u32u *)(const void *)r1 << 8);
    case 3: return *(const tk_u32u *)(const void *)(r1 + 3);
    case 4:
      return (uint32_t)*(const tk_u16u *)(const void *)(r1 + 7) |
             (*(const tk_u32u *)(const void *)r2 << 16);
    case 5: return *(const tk_u32u *)(const void *)(r2 + 2);
    default: return (*(const tk_u32u *)(const void *)(r2 + 5) >> 8) | (zp4 & 0xFF000000u);
  }
}

/* Patch of one such window into slot `d` of the pair layout. */
__attribute__((always_inline)) static inline void win_patch(int ic, const int8_t *r0,
                                                            const int8_t *r1, const int8_t *r2,
                                                            uint32_t zp4, uint32_t o, tk_w32 *d) {
  const int n = ic == 1 ? 3 : 7;
  int g;
#pragma GCC unroll 7
  for (g = 0; g < n; ++g, d += TK_C2_XG) {
    const uint32_t w = win_word(ic, r0, r1, r2, g, zp4);
    d[0] = (int32_t)__sxtab16(o, w);
    d[1] = (int32_t)tk_sxtab16_ror8(o, w);
  }
}

/* m pixel pairs of windows inside one output row (r0..r2: the first window's rows, s0..s2:
 * bytes from one window to the next in each row, 0 for a row of zero points) into m
 * consecutive pair slots of the layout (xw words each). */
__attribute__((always_inline)) static inline void win_patch2(int ic, const int8_t *r0,
                                                             const int8_t *r1, const int8_t *r2,
                                                             int s0, int s1, int s2,
                                                             uint32_t zp4, uint32_t o,
                                                             tk_w32 *d, int xw, int m) {
  const int n = ic == 1 ? 3 : 7;
  int g;
  for (; m > 0; --m, d += xw, r0 += 2 * s0, r1 += 2 * s1, r2 += 2 * s2) {
    const int8_t *q0 = r0 + s0, *q1 = r1 + s1, *q2 = r2 + s2;
    tk_w32 *e = d;
#pragma GCC unroll 7
    for (g = 0; g < n; ++g, e += TK_C2_XG) {
      const uint32_t wa = win_word(ic, r0, r1, r2, g, zp4);
      const uint32_t wb = win_word(ic, q0, q1, q2, g, zp4);
      e[0] = (int32_t)__sxtab16(o, wa);
      e[1] = (int32_t)tk_sxtab16_ror8(o, wa);
      e[2] = (int32_t)__sxtab16(o, wb);
      e[3] = (int32_t)tk_sxtab16_ror8(o, wb);
    }
  }
}

#define TK_WIN_ARGS1 const int8_t *r0, const int8_t *r1, const int8_t *r2, uint32_t zp4, \
    uint32_t o, tk_w32 *d
#define TK_WIN_ARGS2 const int8_t *r0, const int8_t *r1, const int8_t *r2, int s0, int s1, \
    int s2, uint32_t zp4, uint32_t o, tk_w32 *d, int xw, int m
__attribute__((noinline)) static void win1_patch(TK_WIN_ARGS1) {
  win_patch(1, r0, r1, r2, zp4, o, d);
}
__attribute__((noinline)) static void win3_patch(TK_WIN_ARGS1) {
  win_patch(3, r0, r1, r2, zp4, o, d);
}
__attribute__((noinline)) static void win1_patch2(TK_WIN_ARGS2) {
  win_patch2(1, r0, r1, r2, s0, s1, s2, zp4, o, d, xw, m);
}
__attribute__((noinline)) static void win3_patch2(TK_WIN_ARGS2) {
  win_patch2(3, r0, r1, r2, s0, s1, s2, zp4, o, d, xw, m);
}

/* Patch of the output pixel whose window starts at (y0, x0) into the pair layout at dst
 * (= pair base + 2 * slot). */
static void patch_c2(const tk_conv_params *p, const int8_t *in, int y0, int x0, tk_w32 *dst,
                     int kp, int8_t *tmp, uint32_t o) {
  const int ic = p->in_c;
  int ky, kx, k = 0;
  if ((ic & 3) == 0) {
    if (p->k_h == 1 && p->k_w == 1 && y0 >= 0 && x0 >= 0) {
      expand_c2(in + ((long)y0 * p->in_w + x0) * ic, ic >> 2, o, dst);
      return;
    }
    if (p->dil_w == 1 && x0 >= 0 && x0 + p->k_w <= p->in_w) {
      const int run = p->k_w * ic;
      for (ky = 0; ky < p->k_h; ++ky, k += run) {
        const int y = y0 + p->dil_h * ky;
        if (y >= 0 && y < p->in_h) {
          expand_c2(in + ((long)y * p->in_w + x0) * ic, run >> 2, o, dst + k);
        } else {
          zero_c2(dst + k, run >> 2);
        }
      }
      return;
    }
    for (ky = 0; ky < p->k_h; ++ky) {
      const int y = y0 + p->dil_h * ky;
      for (kx = 0; kx < p->k_w; ++kx, k += ic) {
        const int x = x0 + p->dil_w * kx;
        if (y >= 0 && y < p->in_h && x >= 0 && x < p->in_w) {
          expand_c2(in + ((long)y * p->in_w + x) * ic, ic >> 2, o, dst + k);
        } else {
          zero_c2(dst + k, ic >> 2);
        }
      }
    }
    return;
  }
  gather_bytes(p, in, y0, x0, kp, tmp);
  expand_c2(tmp, kp >> 2, o, dst);
}

/* Patches of 3x3 windows over ic = 1 or 3 channels for pixels px0 .. px0 + n - 1: per output
 * row the three row pointers once, stepped along it; pairs of windows inside along x built
 * together, windows with a padded column by patch_c2. */
static void patches_win(const tk_conv_params *p, const int8_t *in, int px0, int n, tk_w32 *xs,
                        int xw, int kp, int8_t *tmp, uint32_t o) {
  const int ic = p->in_c;
  const uint32_t zp4 = (uint32_t)(uint8_t)(-p->in_offset) * 0x01010101u;
  const uint32_t zrow[3] = {zp4, zp4, zp4};
  const int sw = p->stride_w, step = ic * sw;
  void (*one)(TK_WIN_ARGS1) = ic == 1 ? win1_patch : win3_patch;
  void (*two)(TK_WIN_ARGS2) = ic == 1 ? win1_patch2 : win3_patch2;
  /* Output columns whose windows lie inside along x. */
  const int lo_x = (p->pad_w + sw - 1) / sw, hi_x = p->in_w - 3 + p->pad_w;
  const int hi = hi_x < 0 ? -1 : (hi_x / sw < p->out_w - 1 ? hi_x / sw : p->out_w - 1);
  int oy = px0 / p->out_w, ox = px0 - oy * p->out_w, j = 0, ky;
  while (j < n) {
    const int y0 = oy * p->stride_h - p->pad_h;
    const int end = j + (p->out_w - ox < n - j ? p->out_w - ox : n - j);
    const int8_t *r[3];
    int st[3];
    for (ky = 0; ky < 3; ++ky) {
      const int y = y0 + p->dil_h * ky;
      const int in_y = y >= 0 && y < p->in_h;
      r[ky] = in_y ? in + ((long)y * p->in_w + ox * sw - p->pad_w) * ic
                   : (const int8_t *)(const void *)zrow;
      st[ky] = in_y ? step : 0;
    }
    while (j < end) {
      tk_w32 *d = xs + (long)(j >> 1) * xw + 2 * (j & 1);
      if (!(j & 1) && j + 1 < end && ox >= lo_x && ox + 1 <= hi) {
        /* Pairs of windows inside along x up to the row's end or the padded columns. */
        int m = (end - j) >> 1;
        if (m > (hi - ox + 1) >> 1) m = (hi - ox + 1) >> 1;
        two(r[0], r[1], r[2], st[0], st[1], st[2], zp4, o, d, xw, m);
        for (ky = 0; ky < 3; ++ky) r[ky] += 2 * m * st[ky];
        j += 2 * m;
        ox += 2 * m;
        continue;
      }
      if (ox >= lo_x && ox <= hi) {
        one(r[0], r[1], r[2], zp4, o, d);
      } else {
        patch_c2(p, in, y0, ox * sw - p->pad_w, d, kp, tmp, o);
      }
      for (ky = 0; ky < 3; ++ky) r[ky] += st[ky];
      ++j;
      ++ox;
    }
    ox = 0;
    ++oy;
  }
}

/* Patches of pixels px0 .. px0 + n - 1 into the pair layout (pixel j at xs + (j / 2) * xw +
 * 2 * (j % 2)); an odd n repeats the last pixel in the free slot. */
static void patches_c2(const tk_conv_params *p, const int8_t *in, int px0, int n, tk_w32 *xs,
                       int xw, int kp, int8_t *tmp, uint32_t o) {
  const int ic = p->in_c;
  int j;
  if (p->k_h == 1 && p->k_w == 1 && p->stride_h == 1 && p->stride_w == 1 && p->pad_h == 0 &&
      p->pad_w == 0 && (ic & 3) == 0 && p->in_w == p->out_w) {
    /* Pointwise, stride 1: the pixels are consecutive in the input. */
    const int8_t *src = in + (long)px0 * ic;
    for (j = 0; j + 1 < n; j += 2, src += 2 * ic, xs += xw) {
      expand_pair_c2(src, src + ic, ic >> 2, o, xs);
    }
    if (n & 1) expand_pair_c2(src, src, ic >> 2, o, xs);
    return;
  }
  if ((ic == 1 || ic == 3) && p->k_h == 3 && p->k_w == 3 && p->dil_w == 1) {
    patches_win(p, in, px0, n, xs, xw, kp, tmp, o);
  } else {
    int oy = px0 / p->out_w, ox = px0 - oy * p->out_w;
    for (j = 0; j < n; ++j) {
      patch_c2(p, in, oy * p->stride_h - p->pad_h, ox * p->stride_w - p->pad_w,
               xs + (long)(j >> 1) * xw + 2 * (j & 1), kp, tmp, o);
      if (++ox == p->out_w) ox = 0, ++oy;
    }
  }
  if (n & 1) {
    tk_w32 *d = xs + (long)(n >> 1) * xw;
    for (j = 0; j < xw; j += TK_C2_XG) d[j + 2] = d[j], d[j + 3] = d[j + 1];
  }
}

/* n4 >= 1 groups of two weight rows, doubled and widened into dst: one STM per group. */
__attribute__((noinline)) static void widen_pair_c2(const int8_t *wa, const int8_t *wb,
                                                    int n4, tk_w32 *dst) {
  register uint32_t a __asm("r4"), b __asm("r5"), c __asm("r6"), d __asm("r7");
  uint32_t u, v;
  __asm volatile(
      "1:\n\t"
      "ldr %[u], [%[wa]], #4\n\t"
      "ldr %[v], [%[wb]], #4\n\t"
      "sxtb16 %[a], %[u]\n\t"
      "sxtb16 %[b], %[u], ror #8\n\t"
      "sxtb16 %[c], %[v]\n\t"
      "sxtb16 %[d], %[v], ror #8\n\t"
      "sadd16 %[a], %[a], %[a]\n\t"
      "sadd16 %[b], %[b], %[b]\n\t"
      "sadd16 %[c], %[c], %[c]\n\t"
      "sadd16 %[d], %[d], %[d]\n\t"
      "stm %[dst]!, {%[a], %[b], %[c], %[d]}\n\t"
      "subs %[n], %[n], #1\n\t"
      "bne 1b\n"
      : [wa] "+r"(wa), [wb] "+r"(wb), [dst] "+r"(dst), [n] "+r"(n4), [u] "=&r"(u),
        [v] "=&r"(v), [a] "=&r"(a), [b] "=&r"(b), [c] "=&r"(c), [d] "=&r"(d)
      :
      : "cc", "memory");
}

/* The buffer of channel pair (c0, c1) (c1 = c0 for an odd last channel). */
static void pair_weights(const tk_conv_params *p, const int8_t *filter, const int32_t *bias,
                         int k, int c0, int c1, tk_w32 *d) {
  const int k4 = k >> 2, kt = k & 3;
  const int8_t *wa = filter + (long)c0 * k, *wb = filter + (long)c1 * k;
  int j;
  d[0] = d[2] = (int32_t)(2u * (uint32_t)(bias ? bias[c0] : 0));
  d[1] = d[3] = (int32_t)(2u * (uint32_t)(bias ? bias[c1] : 0));
  d += 4;
  if (k4) widen_pair_c2(wa, wb, k4, d);
  d += 4 * k4;
  if (kt) {
    /* The last k & 3 weights of each row, zero-padded (never read past the row). */
    const uint32_t ua = tail_word(wa + 4 * k4, kt), ub = tail_word(wb + 4 * k4, kt);
    const uint32_t a0 = __sxtb16(ua), a1 = tk_sxtb16_ror8(ua);
    const uint32_t b0 = __sxtb16(ub), b1 = tk_sxtb16_ror8(ub);
    d[0] = (int32_t)__sadd16(a0, a0);
    d[1] = (int32_t)__sadd16(a1, a1);
    d[2] = (int32_t)__sadd16(b0, b0);
    d[3] = (int32_t)__sadd16(b1, b1);
    d += 4;
  }
  for (j = 0; j < 2; ++j) {
    const int c = j ? c1 : c0;
    d[3 * j] = p->mult[c];
    d[3 * j + 1] = tk_rq_add(-p->shift[c], p->out_offset);
    d[3 * j + 2] = -p->shift[c];
  }
}

/* An odd last channel in C: n_px pixels of a pair (its c1 is a copy of c0, not stored). */
__attribute__((noinline)) static void block_c2(const tk_w32 *x, const tk_w32 *w, int groups,
                                               int8_t *o, int oc, int n_px, int32_t lo,
                                               int32_t hi) {
  int32_t a0 = w[0], a2 = w[2];
  const int32_t *rq;
  int g;
  w += 4;
  for (g = 0; g < groups; ++g, x += TK_C2_XG, w += 4) {
    a0 = __smlad(x[0], w[0], __smlad(x[1], w[1], a0));
    a2 = __smlad(x[2], w[0], __smlad(x[3], w[1], a2));
  }
  rq = w;
  o[0] = tk_act(tk_rq(a0, rq[0], rq[1], rq[2]), lo, hi);
  if (n_px > 1) o[oc] = tk_act(tk_rq(a2, rq[0], rq[1], rq[2]), lo, hi);
}

/* scratch_mode values of conv_c2 (conv_b4 is TK_CONV_B4). */
#define TK_CONV_B4 0
#define TK_CONV_C2_PAIR 1
#define TK_CONV_C2_ALL 2

typedef void (*tk_c2_fn)(TK_C2_ARGS);

static void conv_c2(const tk_conv_params *p, const int8_t *in, const int8_t *filter,
                    const int32_t *bias, int8_t *out) {
  const int k = p->k_h * p->k_w * p->in_c;
  const int kp = (k + 3) & ~3, groups = kp >> 2;
  const int npx = p->out_h * p->out_w, oc = p->out_c, pairs = oc >> 1, odd_c = oc & 1;
  const int pw = TK_C2_PAIR_WORDS(groups), xw = groups * TK_C2_XG;
  const int band = p->scratch_px, all_w = p->scratch_mode == TK_CONV_C2_ALL;
  const int32_t lo = p->act_min, hi = p->act_max;
  const int clamp = lo != -128 || hi != 127;
  const int chunks = (groups + TK_C2_GMAX - 1) / TK_C2_GMAX;
  const void *entry = tk_c2_body_end - TK_C2_GROUP_BYTES * (groups - TK_C2_GMAX * (chunks - 1));
  const uint32_t lo4 = (uint8_t)lo * 0x01010101u, hi4 = (uint8_t)hi * 0x01010101u;
  const uint32_t off16 = (uint32_t)p->in_offset & 0xFFFF, o = off16 | (off16 << 16);
  static const tk_c2_fn fns[2][2] = {{tk_c2, tk_c2k}, {tk_c2c, tk_c2ck}};
  const tk_c2_fn run = fns[clamp][chunks > 1];
  tk_w32 *wbuf = (tk_w32 *)(void *)p->scratch;
  tk_w32 *xs = wbuf + (long)pw * (all_w ? pairs + odd_c : 1);
  int8_t *tmp = (int8_t *)(void *)(xs + (long)(band >> 1) * xw);
  int8_t *spare = tmp + kp;
  int b, px, cp, j;
  if (all_w) {
    for (cp = 0; cp < pairs + odd_c; ++cp) {
      pair_weights(p, filter, bias, k, 2 * cp, 2 * cp + 1 < oc ? 2 * cp + 1 : 2 * cp,
                   wbuf + (long)cp * pw);
    }
  }
  for (b = 0; b < p->batches; ++b) {
    const int8_t *bin = in + (long)b * p->in_h * p->in_w * p->in_c;
    int8_t *bout = out + (long)b * npx * oc;
    for (px = 0; px < npx; px += band) {
      const int nb = npx - px < band ? npx - px : band, npp = nb >> 1;
      int8_t *ob = bout + (long)px * oc, *last = ob + (long)(nb - 1) * oc;
      const tk_w32 *xl = xs + (long)npp * xw;
      patches_c2(p, bin, px, nb, xs, xw, kp, tmp, o);
      for (cp = 0; cp < (all_w ? (pairs ? 1 : 0) : pairs); ++cp) {
        const tk_w32 *w = wbuf;
        const int n = all_w ? pairs : 1;
        if (!all_w) pair_weights(p, filter, bias, k, 2 * cp, 2 * cp + 1, wbuf);
        if (npp) run(xs, w, ob + 2 * cp, xl, oc, entry, chunks - 1, lo4, hi4, n, 4 * pw);
        /* The last pixel alone: its repeat's outputs go to the spare bytes (2 per pair). */
        if (nb & 1) {
          run(xl, w, last + 2 * cp, xl + xw, (int)(spare - (last + 2 * cp)), entry, chunks - 1,
              lo4, hi4, n, 4 * pw);
        }
      }
      if (odd_c) {
        const tk_w32 *w = wbuf + (all_w ? (long)pairs * pw : 0);
        if (!all_w) pair_weights(p, filter, bias, k, oc - 1, oc - 1, wbuf);
        for (j = 0; j < nb; j += 2) {
          block_c2(xs + (long)(j >> 1) * xw, w, groups, ob + (long)j * oc + oc - 1, oc,
                   j + 1 < nb ? 2 : 1, lo, hi);
        }
      }
    }
  }
}

/* Scratch (exporter), by scratch_mode: TK_CONV_B4: the conv_b4 channel table (TK_CQ_BYTES per
 * output channel), four int16 patches and kp bytes; TK_CONV_C2_ALL: ceil(out_c / 2) weight
 * buffers, TK_CONV_C2_PAIR: one, then the patch words of scratch_px (even) pixels, kp bytes for
 * channel counts not a multiple of 4 and 2 spare bytes per weight buffer. */
void tk_conv2d_s8(const tk_conv_params *p, const int8_t *in, const int8_t *filter,
                  const int32_t *bias, int8_t *out) {
  int oc, fast = p->small_acc;
  if (p->filter_in_c != p->in_c || !p->scratch || p->scratch_px < 2) {
    tk_conv2d_s8_ref(p, in, filter, bias, out);
    return;
  }
  for (oc = 0; oc < p->out_c && fast; ++oc) fast = tk_rq_ok(p->mult[oc], p->shift[oc]);
  if (fast && p->scratch_mode == TK_CONV_B4) {
    tk_cq *q = (tk_cq *)(void *)p->scratch;
    b4_prepare(p, bias, q);
    conv_b4(p, in, filter, q, (tk_w32 *)(void *)(q + p->out_c), out);
  } else if (fast) {
    conv_c2(p, in, filter, bias, out);
  } else {
    conv_pairs(p, in, filter, bias, (tk_w32 *)(void *)p->scratch, out);
  }
}

#else
typedef int tk_conv_dsp_unused;
#endif
