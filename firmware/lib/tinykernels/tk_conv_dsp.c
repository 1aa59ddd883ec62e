/* CONV_2D and DEPTHWISE_CONV_2D for cores with the DSP extension (Armv7E-M, Armv8-M Main+DSP).
 *
 * Convolution: the input patches of two output pixels are expanded once to int16 pairs (input
 * offset added, padding = 0) and multiplied against int8 filter rows of two output channels,
 * read a word at a time and sign-extended with SXTB16, with SMLAD, two pixels x two channels per
 * inner step. Within each group of four k both sides are in SXTB16 order (0, 2, 1, 3), so the
 * dot product is unchanged. Depthwise: four channels per input word, SXTB16 + SMLABB/SMLATT,
 * input offset folded into the bias, padded taps read the input zero point. Results equal the
 * reference kernels bit for bit.
 */
#include <string.h>

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

/* Store element k of a pixel (or filter row) in the interleaved SXTB16-ordered layout. */
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

static inline int32_t tk_smmulr(int32_t a, int32_t b) {
  int32_t r;
  __asm("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
  return r;
}

/* TFLM's rounding right shift by r1 + 1 >= 1 (half away from zero):
 * floor((v - [v < 0] + 2^r1) / 2^(r1 + 1)) == ((v - [v < 0]) >> r1) + 1) >> 1, no overflow for
 * v > INT32_MIN (the products below never reach it). */
static inline int32_t tk_round_shift(int32_t v, int r1) {
  return (((v - (int32_t)((uint32_t)v >> 31)) >> r1) + 1) >> 1;
}

/* Requantize one accumulator of a channel whose shift is in [-23, -1] and multiplier >= 0.
 * small: |acc| < 2^30, so SMMULR(2 acc, m) = (acc * m + 2^30) >> 31 exactly. */
static inline int8_t rq_out(int32_t acc, int32_t m, int right, int small, int32_t off,
                            int32_t lo, int32_t hi) {
  int32_t v;
  if (small) {
    v = tk_smmulr((int32_t)((uint32_t)acc << 1), m);
  } else {
    v = (int32_t)(((int64_t)acc * m + ((int64_t)1 << 30)) >> 31);
  }
  v = tk_round_shift(v, right - 1) + off;
  v = v < lo ? lo : v;
  return (int8_t)(v > hi ? hi : v);
}

static inline int8_t rq_any(int32_t acc, int32_t m, int32_t shift, int small, int32_t off,
                            int32_t lo, int32_t hi) {
  int32_t v;
  if (shift < 0 && shift >= -23 && m >= 0) return rq_out(acc, m, -shift, small, off, lo, hi);
  v = tk_mbqm(acc, m, shift) + off;
  v = v < lo ? lo : v;
  return (int8_t)(v > hi ? hi : v);
}

/* Both pixels of a pair and every whole pair of output channels whose requantization is fast
 * (rq_out); returns the first channel left for the general loop. */
static inline int pairs_fast_body(const tk_w32 *xs, const int8_t *filter, int k,
                                  const int32_t *bias, const tk_conv_params *p, int8_t *o,
                                  const int small) {
  const int oc_n = p->out_c, k4 = k >> 2, kt = k & 3;
  const int32_t out_off = p->out_offset, lo = p->act_min, hi = p->act_max;
  const int8_t *w = filter;
  int oc;
  for (oc = 0; oc + 1 < oc_n; oc += 2, o += 2) {
    const int8_t *wa = w, *wb = w + k;
    const tk_w32 *x = xs;
    int32_t s_aa = bias ? bias[oc] : 0, s_ab = bias ? bias[oc + 1] : 0;
    int32_t s_ba = s_aa, s_bb = s_ab;
    /* The patch is zero from k to kp, so the last partial word may read on into the next
     * filter row, except in the very last row. */
    const int over = kt && oc + 2 < oc_n;
    int n = k4 + over;
    w += 2 * k;
    if (n > 0) TK_MAC4_LOOP(n, x, wa, wb);
    if (kt && !over) {
      const uint32_t ua = tail_word(wa, kt), ub = tail_word(wb, kt);
      TK_MAC4(ua, ub, x);
    }
    {
      const int32_t ma = p->mult[oc], mb = p->mult[oc + 1];
      const int ra = -p->shift[oc], rb = -p->shift[oc + 1];
      o[0] = rq_out(s_aa, ma, ra, small, out_off, lo, hi);
      o[1] = rq_out(s_ab, mb, rb, small, out_off, lo, hi);
      o[oc_n] = rq_out(s_ba, ma, ra, small, out_off, lo, hi);
      o[oc_n + 1] = rq_out(s_bb, mb, rb, small, out_off, lo, hi);
    }
  }
  return oc;
}

/* Separate functions (own register allocation), one per requantization variant. */
__attribute__((noinline)) static int pairs_fast_small(const tk_w32 *xs, const int8_t *filter,
                                                      int k, const int32_t *bias,
                                                      const tk_conv_params *p, int8_t *o) {
  return pairs_fast_body(xs, filter, k, bias, p, o, 1);
}

__attribute__((noinline)) static int pairs_fast_wide(const tk_w32 *xs, const int8_t *filter,
                                                     int k, const int32_t *bias,
                                                     const tk_conv_params *p, int8_t *o) {
  return pairs_fast_body(xs, filter, k, bias, p, o, 0);
}

/* Short rows (k <= 32, multiple of 4) with small accumulators: plain C, so that the compiler
 * keeps the patch words and output constants in registers (the asm loop's 13 registers force
 * spills around it, which dominate when a row has only a few words). */
__attribute__((noinline)) static int pairs_fast_short(const tk_w32 *xs, const int8_t *filter,
                                                      int k, const int32_t *bias,
                                                      const tk_conv_params *p, int8_t *o) {
  const int oc_n = p->out_c, k4 = k >> 2;
  const int32_t out_off = p->out_offset, lo = p->act_min, hi = p->act_max;
  const int8_t *w = filter;
  int oc, i;
  for (oc = 0; oc + 1 < oc_n; oc += 2, o += 2) {
    const int8_t *wa = w, *wb = w + k;
    const tk_w32 *x = xs;
    int32_t s_aa = bias ? bias[oc] : 0, s_ab = bias ? bias[oc + 1] : 0;
    int32_t s_ba = s_aa, s_bb = s_ab;
    w += 2 * k;
    for (i = 0; i < k4; ++i, x += 4, wa += 4, wb += 4) {
      const uint32_t ua = *(const tk_u32u *)(const void *)wa;
      const uint32_t ub = *(const tk_u32u *)(const void *)wb;
      TK_MAC4(ua, ub, x);
    }
    {
      const int32_t ma = p->mult[oc], mb = p->mult[oc + 1];
      const int ra = -p->shift[oc], rb = -p->shift[oc + 1];
      o[0] = rq_out(s_aa, ma, ra, 1, out_off, lo, hi);
      o[1] = rq_out(s_ab, mb, rb, 1, out_off, lo, hi);
      o[oc_n] = rq_out(s_ba, ma, ra, 1, out_off, lo, hi);
      o[oc_n + 1] = rq_out(s_bb, mb, rb, 1, out_off, lo, hi);
    }
  }
  return oc;
}

/* ---- Four-pixel blocks (small accumulators, right shifts 1..22) ----
 *
 * The patches of four output pixels are expanded to int16 pairs holding 2 * (input + offset),
 * group by group (four k): [p0 lo, p0 hi, p1 lo, p1 hi, ..., p3 hi], lo = SXTB16 order k0/k2,
 * hi = k1/k3. One output channel at a time, a filter word is sign-extended once (two SXTB16)
 * and used by eight SMLAD against two LDM of patch words: 13 instructions per 16 MACs. The
 * accumulators start at 2 * bias, so they hold 2 * acc and SMMULR(2 * acc, m) is TFLM's
 * rounding doubling high multiply (|acc| < 2^30). The rounding right shift then adds
 * 2^(right - 1) + (out_offset << right) (|sum| < 2^31 for right <= 22, added by SMMLAR) and
 * shifts once; its round-half-away-from-zero correction (- [v < 0]) uses the sign of acc,
 * which equals the sign of v except when v = 0, where it does not change the result. */
typedef struct {
  int32_t bias2[4]; /* 2 * bias, four times (one LDM fills the four accumulators) */
  int32_t mult, add, right;
} tk_cq;

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
static inline void exp_word(tk_w32 *d, uint32_t v, uint32_t o2) {
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

typedef uint16_t tk_u16u __attribute__((may_alias, aligned(1)));

/* 3x3 kernel over 3 input channels (k = 27, kp = 28): the three 9-byte rows r0..r2 become seven
 * words straight from unaligned loads that stay inside each row; k = 27 takes the zero point. */
static void im2col_rgb3x3(const int8_t *r0, const int8_t *r1, const int8_t *r2, uint32_t zp,
                          uint32_t o2, tk_w32 *d) {
  const uint32_t w1 = *(const tk_u32u *)(const void *)r1;
  const uint32_t w2 = *(const tk_u32u *)(const void *)r2;
  exp_word(d, *(const tk_u32u *)(const void *)r0, o2);
  exp_word(d + 8, *(const tk_u32u *)(const void *)(r0 + 4), o2);
  exp_word(d + 16, (uint32_t)(uint8_t)r0[8] | (w1 << 8), o2);
  exp_word(d + 24, *(const tk_u32u *)(const void *)(r1 + 3), o2);
  exp_word(d + 32, (uint32_t)*(const tk_u16u *)(const void *)(r1 + 7) | (w2 << 16), o2);
  exp_word(d + 40, *(const tk_u32u *)(const void *)(r2 + 2), o2);
  exp_word(d + 48, (*(const tk_u32u *)(const void *)(r2 + 5) >> 8) | (zp << 24), o2);
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

/* n groups of four k for one filter row against the four pixels: acc_p += row . patch_p. */
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

/* Activation range [-128, 127], k a multiple of 8: all output channels of a full block of four
 * pixels. q: the channel table; pairs = k / 8. Per channel: 28 instructions per 8 k (32 MACs)
 * plus 30 for set-up, requantization and the four stores (output pointers kept on the stack and
 * moved with one LDM/STM). */
void tk_conv_b4_sat(const tk_w32 *xs, const int8_t *filter, const tk_cq *q, int8_t *o, int oc_n,
                    int pairs);

#define TK_B4_RQ(r)                      \
  "smmlar r12, " r ", r4, r5\n\t"        \
  "sub r12, r12, " r ", lsr #31\n\t"     \
  "asr r12, r12, r6\n\t"                 \
  "ssat " r ", #8, r12\n\t"

/* One tk_conv_b4_sat* function; `groups` is the unrolled body of its MAC loop. */
#define TK_B4_SAT_FN(name, groups) \
__asm(".pushsection .text." name ",\"ax\",%progbits\n\t"                                        \
    ".syntax unified\n\t"                                                                       \
    ".thumb\n\t"                                                                                \
    ".align 2\n\t"                                                                              \
    ".global " name "\n\t"                                                                      \
    ".thumb_func\n\t"                                                                           \
    ".type " name ", %function\n"                                                               \
    name ":\n\t"                                                                                \
    "push {r4, r5, r6, r7, r8, r9, r10, r11, lr}\n\t"                                           \
    "sub sp, sp, #32\n\t"                                                                       \
    "ldr r4, [sp, #68]\n\t"                                                                     \
    "str r3, [sp]\n\t"                                                                          \
    "add r3, r3, r4\n\t"                                                                        \
    "str r3, [sp, #4]\n\t"                                                                      \
    "add r3, r3, r4\n\t"                                                                        \
    "str r3, [sp, #8]\n\t"                                                                      \
    "add r3, r3, r4\n\t"                                                                        \
    "str r3, [sp, #12]\n\t"                                                                     \
    "str r0, [sp, #16]\n\t"                                                                     \
    "movs r6, #28\n\t"                                                                          \
    "mla r6, r4, r6, r2\n\t"                                                                    \
    "str r6, [sp, #20]\n\t"                                                                     \
    "ldr r5, [sp, #72]\n\t"                                                                     \
    "str r5, [sp, #24]\n\t"                                                                     \
    "mov r7, r2\n\t"                                                                            \
    "mov r10, r1\n\t"                                                                           \
    "2:\n\t"                                                                                    \
    "ldm r7!, {r0, r1, r2, r3}\n\t"                                                             \
    "ldr r11, [sp, #16]\n\t"                                                                    \
    "ldr lr, [sp, #24]\n\t"                                                                     \
    "4:\n\t"                                                                                    \
    groups                                                                                      \
    "subs lr, lr, #1\n\t"                                                                       \
    "bne 4b\n\t"                                                                                \
    "ldm r7!, {r4, r5, r6}\n\t"                                                                 \
    TK_B4_RQ("r0") TK_B4_RQ("r1") TK_B4_RQ("r2") TK_B4_RQ("r3")                                 \
    "ldm sp, {r8, r9, r11, r12}\n\t"                                                            \
    "strb r0, [r8], #1\n\t"                                                                     \
    "strb r1, [r9], #1\n\t"                                                                     \
    "strb r2, [r11], #1\n\t"                                                                    \
    "strb r3, [r12], #1\n\t"                                                                    \
    "stm sp, {r8, r9, r11, r12}\n\t"                                                            \
    "ldr lr, [sp, #20]\n\t"                                                                     \
    "cmp r7, lr\n\t"                                                                            \
    "bne 2b\n\t"                                                                                \
    "add sp, sp, #32\n\t"                                                                       \
    "pop {r4, r5, r6, r7, r8, r9, r10, r11, pc}\n\t"                                            \
    ".size " name ", . - " name "\n\t"                                                          \
    ".popsection\n")

TK_B4_SAT_FN("tk_conv_b4_sat", TK_B4_GROUP TK_B4_GROUP);

/* The same with four groups per loop (quads = k / 16). */
void tk_conv_b4_sat4(const tk_w32 *xs, const int8_t *filter, const tk_cq *q, int8_t *o,
                     int oc_n, int quads);
TK_B4_SAT_FN("tk_conv_b4_sat4", TK_B4_GROUP TK_B4_GROUP TK_B4_GROUP TK_B4_GROUP);

/* The same with eight groups per loop (octs = k / 32). */
void tk_conv_b4_sat8(const tk_w32 *xs, const int8_t *filter, const tk_cq *q, int8_t *o,
                     int oc_n, int octs);
TK_B4_SAT_FN("tk_conv_b4_sat8", TK_B4_GROUP TK_B4_GROUP TK_B4_GROUP TK_B4_GROUP
             TK_B4_GROUP TK_B4_GROUP TK_B4_GROUP TK_B4_GROUP);

/* The same for any number of groups of four k (k = 4 * groups - wadj, 0 <= wadj <= 3) and n_ch
 * of the oc_n channels: an odd group count enters the unrolled loop at its second half, and
 * each filter row pointer steps back by wadj (the last word of a row reads on into the next
 * row, against zero patch words; the caller runs the last channel separately when wadj > 0). */
void tk_conv_b4_sat_g(const tk_w32 *xs, const int8_t *filter, const tk_cq *q, int8_t *o,
                      int n_ch, int groups, int wadj, int oc_n);

__asm(
    ".pushsection .text.tk_conv_b4_sat_g,\"ax\",%progbits\n\t"
    ".syntax unified\n\t"
    ".thumb\n\t"
    ".align 2\n\t"
    ".global tk_conv_b4_sat_g\n\t"
    ".thumb_func\n\t"
    ".type tk_conv_b4_sat_g, %function\n"
    "tk_conv_b4_sat_g:\n\t"
    "push {r4, r5, r6, r7, r8, r9, r10, r11, lr}\n\t"
    "sub sp, sp, #40\n\t"
    "ldr r4, [sp, #88]\n\t"
    "str r3, [sp]\n\t"
    "add r3, r3, r4\n\t"
    "str r3, [sp, #4]\n\t"
    "add r3, r3, r4\n\t"
    "str r3, [sp, #8]\n\t"
    "add r3, r3, r4\n\t"
    "str r3, [sp, #12]\n\t"
    "str r0, [sp, #16]\n\t"
    "ldr r4, [sp, #76]\n\t"
    "movs r6, #28\n\t"
    "mla r6, r4, r6, r2\n\t"
    "str r6, [sp, #20]\n\t"
    "ldr r5, [sp, #80]\n\t"
    "and r4, r5, #1\n\t"
    "str r4, [sp, #28]\n\t"
    "add r5, r5, #1\n\t"
    "lsr r5, r5, #1\n\t"
    "str r5, [sp, #24]\n\t"
    "ldr r6, [sp, #84]\n\t"
    "str r6, [sp, #32]\n\t"
    "mov r7, r2\n\t"
    "mov r10, r1\n\t"
    "2:\n\t"
    "ldm r7!, {r0, r1, r2, r3}\n\t"
    "ldr r11, [sp, #16]\n\t"
    "ldr lr, [sp, #24]\n\t"
    "ldr r12, [sp, #28]\n\t"
    "cmp r12, #0\n\t"
    "bne 6f\n\t"
    "4:\n\t"
    TK_B4_GROUP
    "6:\n\t"
    TK_B4_GROUP
    "subs lr, lr, #1\n\t"
    "bne 4b\n\t"
    "ldr r12, [sp, #32]\n\t"
    "sub r10, r10, r12\n\t"
    "ldm r7!, {r4, r5, r6}\n\t"
    TK_B4_RQ("r0") TK_B4_RQ("r1") TK_B4_RQ("r2") TK_B4_RQ("r3")
    "ldm sp, {r8, r9, r11, r12}\n\t"
    "strb r0, [r8], #1\n\t"
    "strb r1, [r9], #1\n\t"
    "strb r2, [r11], #1\n\t"
    "strb r3, [r12], #1\n\t"
    "stm sp, {r8, r9, r11, r12}\n\t"
    "ldr lr, [sp, #20]\n\t"
    "cmp r7, lr\n\t"
    "bne 2b\n\t"
    "add sp, sp, #40\n\t"
    "pop {r4, r5, r6, r7, r8, r9, r10, r11, pc}\n\t"
    ".size tk_conv_b4_sat_g, . - tk_conv_b4_sat_g\n\t"
    ".popsection\n");
#undef TK_B4_RQ

static inline int8_t cq_out(int32_t acc2, int32_t m, int32_t add, int32_t right, int sat8,
                            int32_t lo, int32_t hi) {
  int32_t v;
  __asm("smmlar %0, %1, %2, %3" : "=r"(v) : "r"(acc2), "r"(m), "r"(add));
  v = (v - (int32_t)((uint32_t)acc2 >> 31)) >> right;
  if (sat8) return (int8_t)__ssat(v, 8);
  v = v < lo ? lo : v;
  return (int8_t)(v > hi ? hi : v);
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
    {
      const int32_t m = q->mult, add = q->add, right = q->right;
      o[0] = cq_out(s0, m, add, right, sat8, lo, hi);
      if (valid > 1) o[oc_n] = cq_out(s1, m, add, right, sat8, lo, hi);
      if (valid > 2) o[2 * oc_n] = cq_out(s2, m, add, right, sat8, lo, hi);
      if (valid > 3) o[3 * oc_n] = cq_out(s3, m, add, right, sat8, lo, hi);
    }
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
      uint32_t h;
      __asm("sxtb16 %0, %1, ror #8" : "=r"(h) : "r"(u));
      s = __smlad(x[0], (int32_t)__sxtb16(u), s);
      s = __smlad(x[1], (int32_t)h, s);
    }
    if (kt) {
      const uint32_t u = tail_word(w, kt);
      s = __smlad(x[0], (int32_t)__sxtb16(u), s);
      s = __smlad(x[1], (int32_t)__sxtb16(tk_ror8(u)), s);
      w += kt;
    }
    o[oc] = cq_out(s, q->mult, q->add, q->right, sat8, lo, hi);
  }
}

/* Whether the four-pixel path applies; fills the per-channel table if so. */
static int conv_b4_prepare(const tk_conv_params *p, const int32_t *bias, tk_cq *q) {
  int oc;
  if (!p->small_acc || p->scratch_px < 4) return 0;
  for (oc = 0; oc < p->out_c; ++oc) {
    if (p->shift[oc] > -1 || p->shift[oc] < -22 || p->mult[oc] < 0) return 0;
  }
  for (oc = 0; oc < p->out_c; ++oc) {
    const int32_t right = -p->shift[oc];
    q[oc].bias2[0] = q[oc].bias2[1] = q[oc].bias2[2] = q[oc].bias2[3] =
        (int32_t)(2u * (uint32_t)(bias ? bias[oc] : 0));
    q[oc].mult = p->mult[oc];
    q[oc].add = (int32_t)(((uint32_t)1 << (right - 1)) + ((uint32_t)p->out_offset << right));
    q[oc].right = right;
  }
  return 1;
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
        tk_conv_b4_sat8(xs, filter, q, o, oc_n, k >> 5);
      } else if (sat8 && (k & 15) == 0) {
        tk_conv_b4_sat4(xs, filter, q, o, oc_n, k >> 4);
      } else if (sat8 && (k & 7) == 0) {
        tk_conv_b4_sat(xs, filter, q, o, oc_n, k >> 3);
      } else if (sat8) {
        const int last = (k & 3) ? oc_n - 1 : oc_n;
        if (last > 0) tk_conv_b4_sat_g(xs, filter, q, o, last, kp >> 2, kp - k, oc_n);
        if (last < oc_n) {
          block4_one_sat(xs, filter + (long)last * k, k, q + last, oc_n, o + last);
        }
      } else {
        block4_clamp(xs, filter, k, q, oc_n, o, lo, hi);
      }
    }
  }
}

/* Convolution: per pair of output pixels, the two patches are expanded once to int16 pairs
 * (input offset added); then for every pair of output channels the int8 filter rows are read a
 * word at a time, sign-extended with SXTB16 and multiplied with SMLAD, 2 pixels x 2 channels.
 * Scratch: 2 * kp int16 patch values, then kp bytes for channel counts not a multiple of 4. */
void tk_conv2d_s8(const tk_conv_params *p, const int8_t *in, const int8_t *filter,
                  const int32_t *bias, int8_t *out) {
  const int k = p->k_h * p->k_w * p->in_c;
  const int kp = (k + 3) & ~3;
  const int k4 = k >> 2, kt = k & 3;
  const int npx = p->out_h * p->out_w;
  const int oc_n = p->out_c;
  const int small = p->small_acc;
  tk_cq *cq = (tk_cq *)(void *)p->scratch;
  tk_w32 *xs;
  int8_t *tmp;
  const int32_t out_off = p->out_offset, lo = p->act_min, hi = p->act_max;
  int b, px, oc, i, fast = 1;
  if (p->filter_in_c != p->in_c || !p->scratch || p->scratch_px < 4) {
    tk_conv2d_s8_ref(p, in, filter, bias, out);
    return;
  }
  xs = (tk_w32 *)(void *)(cq + oc_n);
  if (conv_b4_prepare(p, bias, cq)) {
    conv_b4(p, in, filter, cq, xs, out);
    return;
  }
  for (oc = 0; oc < oc_n; ++oc) {
    if (p->shift[oc] >= 0 || p->shift[oc] < -23 || p->mult[oc] < 0) fast = 0;
  }
  tmp = (int8_t *)(void *)(xs + kp);
  for (b = 0; b < p->batches; ++b) {
    const int8_t *bin = in + (long)b * p->in_h * p->in_w * p->in_c;
    int8_t *bout = out + (long)b * npx * oc_n;
    for (px = 0; px < npx; px += 2) {
      const int two = px + 1 < npx;
      int8_t *o = bout + (long)px * oc_n;
      im2col(p, bin, px, xs, 0, kp, tmp);
      im2col(p, bin, two ? px + 1 : px, xs, 1, kp, tmp);
      oc = 0;
      if (fast && two) {
        if (small && (k & 3) == 0 && k <= 32) {
          oc = pairs_fast_short(xs, filter, k, bias, p, o);
        } else {
          oc = small ? pairs_fast_small(xs, filter, k, bias, p, o)
                     : pairs_fast_wide(xs, filter, k, bias, p, o);
        }
      }
      for (; oc < oc_n; oc += 2) {
        const int ob = oc + 1 < oc_n ? oc + 1 : oc;
        const int8_t *wa = filter + (long)oc * k;
        const int8_t *wb = filter + (long)ob * k;
        const tk_w32 *x = xs;
        int32_t s_aa = bias ? bias[oc] : 0, s_ab = bias ? bias[ob] : 0;
        int32_t s_ba = s_aa, s_bb = s_ab;
        if (k4 > 0) {
          i = k4;
          TK_MAC4_LOOP(i, x, wa, wb);
        }
        if (kt) {
          const uint32_t ua = tail_word(wa, kt), ub = tail_word(wb, kt);
          TK_MAC4(ua, ub, x);
        }
        if (fast) {
          const int32_t ma = p->mult[oc], mb = p->mult[ob];
          const int ra = -p->shift[oc], rb = -p->shift[ob];
          o[oc] = rq_out(s_aa, ma, ra, small, out_off, lo, hi);
          if (ob != oc) o[ob] = rq_out(s_ab, mb, rb, small, out_off, lo, hi);
          if (two) {
            o[oc_n + oc] = rq_out(s_ba, ma, ra, small, out_off, lo, hi);
            if (ob != oc) o[oc_n + ob] = rq_out(s_bb, mb, rb, small, out_off, lo, hi);
          }
        } else {
          const int32_t ma = p->mult[oc], mb = p->mult[ob];
          const int32_t sa = p->shift[oc], sb = p->shift[ob];
          o[oc] = rq_any(s_aa, ma, sa, small, out_off, lo, hi);
          if (ob != oc) o[ob] = rq_any(s_ab, mb, sb, small, out_off, lo, hi);
          if (two) {
            o[oc_n + oc] = rq_any(s_ba, ma, sa, small, out_off, lo, hi);
            if (ob != oc) o[oc_n + ob] = rq_any(s_bb, mb, sb, small, out_off, lo, hi);
          }
        }
      }
    }
  }
}
#undef TK_MAC4
#undef TK_MAC4_LOOP

#define TK_DW_MAX_TAPS 16

/* Depthwise, depth multiplier 1. Four channels per step: one word of input and one of filter
 * per tap, SXTB16 into (c0, c2) and (c1, c3), then SMLABB/SMLATT into four accumulators. The
 * input offset is folded into the bias. Scratch per channel: folded bias, multiplier, right
 * shift - 1, padding; then a row of zero-point bytes that padded taps read (contributing
 * w * (zp + offset) = 0). */
typedef struct {
  int32_t bias, mult, right1, unused;
} tk_dwc;

static inline uint32_t tk_sxtb16_ror8(uint32_t x) {
  uint32_t r;
  __asm("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
  return r;
}

/* ---- Depthwise, groups of four channels with prepared weights (small accumulators) ----
 *
 * Scratch: per group of four channels one block of 16 + 2 * taps words: 2 * folded bias of the
 * four channels, then per tap the group's weights doubled and sign-extended to int16 in SXTB16
 * order ((c0, c2), (c1, c3)), then per channel multiplier, rounding addend (output offset folded
 * in) and right shift; after the blocks a zero-point row of 3 * c_n bytes that padded taps read.
 * Per tap and group: one input word, two SXTB16, one LDRD of weights and four SMLAxy. The
 * accumulators hold 2 * acc, requantized as in the convolution (SMMULR, one rounding shift,
 * SSAT or clamp). */
#define TK_DW4_WORDS(taps) (16 + 2 * (taps))

__attribute__((always_inline)) static inline void dw4_pixel_body(
    const int8_t *const *ptr, int taps, int c_n, const int32_t *g, int8_t *o, int sat8,
    int32_t lo, int32_t hi) {
  int c, t;
  for (c = 0; c < c_n; c += 4) {
    int32_t a0 = g[0], a1 = g[1], a2 = g[2], a3 = g[3];
    const int32_t *wide = g + 4, *rq;
#pragma GCC unroll 9
    for (t = 0; t < taps; ++t, wide += 2) {
      const uint32_t xv = *(const tk_u32u *)(const void *)(ptr[t] + c);
      const int32_t x02 = (int32_t)__sxtb16(xv), x13 = (int32_t)tk_sxtb16_ror8(xv);
      const int32_t w02 = wide[0], w13 = wide[1];
      a0 = __smlabb(x02, w02, a0);
      a2 = __smlatt(x02, w02, a2);
      a1 = __smlabb(x13, w13, a1);
      a3 = __smlatt(x13, w13, a3);
    }
    rq = wide;
    o[c] = cq_out(a0, rq[0], rq[1], rq[2], sat8, lo, hi);
    o[c + 1] = cq_out(a1, rq[3], rq[4], rq[5], sat8, lo, hi);
    o[c + 2] = cq_out(a2, rq[6], rq[7], rq[8], sat8, lo, hi);
    o[c + 3] = cq_out(a3, rq[9], rq[10], rq[11], sat8, lo, hi);
    g = rq + 12;
  }
}

__attribute__((noinline)) static void dw4_pixel9_sat(const int8_t *const *ptr, int c_n,
                                                     const int32_t *g, int8_t *o) {
  dw4_pixel_body(ptr, 9, c_n, g, o, 1, -128, 127);
}

__attribute__((noinline)) static void dw4_pixel_any(const int8_t *const *ptr, int taps, int c_n,
                                                    const int32_t *g, int8_t *o, int32_t lo,
                                                    int32_t hi) {
  dw4_pixel_body(ptr, taps, c_n, g, o, 0, lo, hi);
}

/* 3x3, dilation 1 along x, activation range [-128, 127]: all channels of npx output pixels of
 * one row. r0..r2: the three input rows at the first window's first column (or a row of zero
 * points); cn4 = c_n - 4; g: the group blocks; groups = c_n / 4; adv: bytes from the end of one
 * window's first column to the next window (stride - 1 pixels). One group per inner loop: 107
 * instructions for 36 MACs. */
typedef struct {
  const int8_t *r0, *r1, *r2;
  int32_t cn4;
  const int32_t *g;
  int8_t *o;
  int32_t groups, npx, adv;
} tk_dw_run;

void tk_dw3x3_sat_run(const tk_dw_run *a);
#define TK_DW_TAP(addr)                  \
  "ldr r12, " addr "\n\t"                \
  "ldrd r10, r11, [r9], #8\n\t"          \
  "sxtb16 lr, r12\n\t"                   \
  "sxtb16 r12, r12, ror #8\n\t"          \
  "smlabb r0, lr, r10, r0\n\t"           \
  "smlatt r2, lr, r10, r2\n\t"           \
  "smlabb r1, r12, r11, r1\n\t"          \
  "smlatt r3, r12, r11, r3\n\t"
#define TK_DW_ROW(r) TK_DW_TAP("[" r "], #4") TK_DW_TAP("[" r ", r7]") TK_DW_TAP("[" r ", r8]")
#define TK_DW_RQ(r)                      \
  "ldm r9!, {r10, r11, r12}\n\t"         \
  "smmlar lr, " r ", r10, r11\n\t"       \
  "sub lr, lr, " r ", lsr #31\n\t"       \
  "asr lr, lr, r12\n\t"                  \
  "ssat " r ", #8, lr\n\t"

__asm(
    ".pushsection .text.tk_dw3x3_sat_run,\"ax\",%progbits\n\t"
    ".syntax unified\n\t"
    ".thumb\n\t"
    ".align 2\n\t"
    ".global tk_dw3x3_sat_run\n\t"
    ".thumb_func\n\t"
    ".type tk_dw3x3_sat_run, %function\n"
    "tk_dw3x3_sat_run:\n\t"
    "push {r4, r5, r6, r7, r8, r9, r10, r11, lr}\n\t"
    "sub sp, sp, #16\n\t"
    "str r0, [sp, #8]\n\t"
    "ldm r0, {r4, r5, r6, r7}\n\t"
    "add r8, r7, r7\n\t"
    "add r8, r8, #4\n\t"
    "ldr r1, [r0, #20]\n\t"
    "str r1, [sp]\n\t"
    "ldr r1, [r0, #28]\n\t"
    "str r1, [sp, #12]\n"
    "5:\n\t"
    "ldr r0, [sp, #8]\n\t"
    "ldr r9, [r0, #16]\n\t"
    "ldr r1, [r0, #24]\n\t"
    "str r1, [sp, #4]\n"
    "1:\n\t"
    "ldm r9!, {r0, r1, r2, r3}\n\t"
    TK_DW_ROW("r4") TK_DW_ROW("r5") TK_DW_ROW("r6")
    TK_DW_RQ("r0") TK_DW_RQ("r1") TK_DW_RQ("r2") TK_DW_RQ("r3")
    "bfi r0, r1, #8, #8\n\t"
    "bfi r0, r2, #16, #8\n\t"
    "bfi r0, r3, #24, #8\n\t"
    "ldr r12, [sp]\n\t"
    "str r0, [r12], #4\n\t"
    "str r12, [sp]\n\t"
    "ldr r12, [sp, #4]\n\t"
    "subs r12, r12, #1\n\t"
    "str r12, [sp, #4]\n\t"
    "bne 1b\n\t"
    "ldr r0, [sp, #8]\n\t"
    "ldr r1, [r0, #32]\n\t"
    "add r4, r4, r1\n\t"
    "add r5, r5, r1\n\t"
    "add r6, r6, r1\n\t"
    "ldr r1, [sp, #12]\n\t"
    "subs r1, r1, #1\n\t"
    "str r1, [sp, #12]\n\t"
    "bne 5b\n\t"
    "add sp, sp, #16\n\t"
    "pop {r4, r5, r6, r7, r8, r9, r10, r11, pc}\n\t"
    ".size tk_dw3x3_sat_run, . - tk_dw3x3_sat_run\n\t"
    ".popsection\n");
#undef TK_DW_TAP
#undef TK_DW_ROW
#undef TK_DW_RQ


/* 3x3 depthwise, dilation 1 along x, range [-128, 127], prepared groups: output rows whose
 * windows lie inside the image vertically run their interior pixels as one asm call, other
 * pixels without a padded column one by one with padded rows reading zrow (3 * c_n zero
 * points); pixels with a padded column take the C loop over tap pointers. Raster order. */
static void dw3x3_sat(const tk_conv_params *p, const int8_t *bin, int8_t *bout,
                      const int32_t *blocks, const int8_t *zrow) {
  const int c_n = p->out_c, sw = p->stride_w;
  const long rowb = (long)p->in_w * c_n;
  int ox_lo = (p->pad_w + sw - 1) / sw, ox_hi = p->in_w - 3 + p->pad_w;
  int oy, ox, ky, kx;
  tk_dw_run a;
  ox_hi = ox_hi < 0 ? -1 : ox_hi / sw;
  if (ox_hi > p->out_w - 1) ox_hi = p->out_w - 1;
  a.cn4 = c_n - 4;
  a.g = blocks;
  a.groups = c_n >> 2;
  for (oy = 0; oy < p->out_h; ++oy) {
    const int y0 = oy * p->stride_h - p->pad_h;
    const int8_t *rp[3];
    int rows_in = 1;
    for (ky = 0; ky < 3; ++ky) {
      const int y = y0 + ky * p->dil_h;
      const int in = y >= 0 && y < p->in_h;
      rp[ky] = in ? bin + (long)y * rowb : NULL;
      rows_in &= in;
    }
    for (ox = 0; ox < p->out_w; ++ox) {
      const int x0 = ox * sw - p->pad_w;
      a.o = bout + ((long)oy * p->out_w + ox) * c_n;
      if (ox >= ox_lo && ox <= ox_hi) {
        a.r0 = rp[0] ? rp[0] + (long)x0 * c_n : zrow;
        a.r1 = rp[1] ? rp[1] + (long)x0 * c_n : zrow;
        a.r2 = rp[2] ? rp[2] + (long)x0 * c_n : zrow;
        a.npx = rows_in ? ox_hi - ox + 1 : 1;
        a.adv = (sw - 1) * c_n;
        tk_dw3x3_sat_run(&a);
        if (rows_in) ox = ox_hi;
        continue;
      }
      {
        const int8_t *ptr[9];
        for (ky = 0; ky < 3; ++ky) {
          for (kx = 0; kx < 3; ++kx) {
            const int x = x0 + kx;
            ptr[ky * 3 + kx] = rp[ky] && x >= 0 && x < p->in_w ? rp[ky] + (long)x * c_n : zrow;
          }
        }
        dw4_pixel9_sat(ptr, c_n, blocks, a.o);
      }
    }
  }
}

/* Fills the group blocks; 0 if the path does not apply. */
static int dw4_prepare(const tk_conv_params *p, const int8_t *filter, const int32_t *bias,
                       int taps, int32_t *blocks) {
  const int c_n = p->out_c;
  int c, t, j;
  if (!p->small_acc || (c_n & 3) ||
      p->scratch_px < 4 * c_n + taps * c_n / 2 + (3 * c_n + 3) / 4) {
    return 0;
  }
  for (c = 0; c < c_n; ++c) {
    if (p->shift[c] > -1 || p->shift[c] < -22 || p->mult[c] < 0) return 0;
  }
  for (c = 0; c < c_n; c += 4) {
    int32_t *g = blocks + (long)(c >> 2) * TK_DW4_WORDS(taps);
    int32_t *rq = g + 4 + 2 * taps;
    uint32_t s02 = 0, s13 = 0; /* per-channel weight sums in int16 lanes (|sum| <= 16 * 128) */
    int32_t sum[4];
    for (t = 0; t < taps; ++t) {
      const uint32_t w = *(const tk_u32u *)(const void *)(filter + (long)t * c_n + c);
      const uint32_t lo = __sxtb16(w), hi = __sxtb16(tk_ror8(w));
      s02 = __sadd16(s02, lo);
      s13 = __sadd16(s13, hi);
      g[4 + 2 * t] = (int32_t)__sadd16(lo, lo);
      g[5 + 2 * t] = (int32_t)__sadd16(hi, hi);
    }
    sum[0] = (int16_t)s02;
    sum[1] = (int16_t)s13;
    sum[2] = (int16_t)(s02 >> 16);
    sum[3] = (int16_t)(s13 >> 16);
    for (j = 0; j < 4; ++j) {
      const int32_t right = -p->shift[c + j];
      g[j] = (int32_t)(2u * ((uint32_t)(bias ? bias[c + j] : 0) +
                             (uint32_t)p->in_offset * (uint32_t)sum[j]));
      rq[3 * j] = p->mult[c + j];
      rq[3 * j + 1] =
          (int32_t)(((uint32_t)1 << (right - 1)) + ((uint32_t)p->out_offset << right));
      rq[3 * j + 2] = right;
    }
  }
  return 1;
}

static inline int8_t dw_rq(int32_t acc, const tk_dwc *q, int small, int32_t off, int32_t lo,
                           int32_t hi) {
  int32_t v;
  if (small) {
    v = tk_smmulr((int32_t)((uint32_t)acc << 1), q->mult);
  } else {
    v = (int32_t)(((int64_t)acc * q->mult + ((int64_t)1 << 30)) >> 31);
  }
  v = tk_round_shift(v, q->right1) + off;
  v = v < lo ? lo : v;
  return (int8_t)(v > hi ? hi : v);
}

/* All channels of one output pixel, given its tap pointers. */
static inline void dw_pixel(const tk_conv_params *p, const int8_t *const *ptr, int taps,
                            const int8_t *filter, const tk_dwc *q, int8_t *o, int small) {
  const int c_n = p->out_c, c4 = c_n & ~3;
  const int32_t off = p->out_offset, lo = p->act_min, hi = p->act_max;
  int c, t;
  for (c = 0; c < c4; c += 4, q += 4) {
    int32_t a0 = q[0].bias, a1 = q[1].bias, a2 = q[2].bias, a3 = q[3].bias;
    const int8_t *f = filter + c;
for (t = 0; t < taps; ++t, f += c_n) {
      const uint32_t xv = *(const tk_u32u *)(const void *)(ptr[t] + c);
      const uint32_t wv = *(const tk_u32u *)(const void *)f;
      const uint32_t x02 = __sxtb16(xv), x13 = tk_sxtb16_ror8(xv);
      const uint32_t w02 = __sxtb16(wv), w13 = tk_sxtb16_ror8(wv);
      a0 = __smlabb((int32_t)x02, (int32_t)w02, a0);
      a2 = __smlatt((int32_t)x02, (int32_t)w02, a2);
      a1 = __smlabb((int32_t)x13, (int32_t)w13, a1);
      a3 = __smlatt((int32_t)x13, (int32_t)w13, a3);
    }
    o[c] = dw_rq(a0, q, small, off, lo, hi);
    o[c + 1] = dw_rq(a1, q + 1, small, off, lo, hi);
    o[c + 2] = dw_rq(a2, q + 2, small, off, lo, hi);
    o[c + 3] = dw_rq(a3, q + 3, small, off, lo, hi);
  }
  for (; c < c_n; ++c, ++q) {
    int32_t acc = q->bias;
    for (t = 0; t < taps; ++t) acc += (int32_t)ptr[t][c] * filter[(long)t * c_n + c];
    o[c] = dw_rq(acc, q, small, off, lo, hi);
  }
}

__attribute__((noinline)) static void dw_pixel_small(const tk_conv_params *p,
                                                     const int8_t *const *ptr, int taps,
                                                     const int8_t *filter, const tk_dwc *q,
                                                     int8_t *o) {
  dw_pixel(p, ptr, taps, filter, q, o, 1);
}

__attribute__((noinline)) static void dw_pixel_wide(const tk_conv_params *p,
                                                    const int8_t *const *ptr, int taps,
                                                    const int8_t *filter, const tk_dwc *q,
                                                    int8_t *o) {
  dw_pixel(p, ptr, taps, filter, q, o, 0);
}

void tk_depthwise_conv2d_s8(const tk_conv_params *p, int depth_mult, const int8_t *in,
                            const int8_t *filter, const int32_t *bias, int8_t *out) {
  const int taps = p->k_h * p->k_w;
  const int c_n = p->out_c;
  tk_dwc *q = (tk_dwc *)(void *)p->scratch;
  int8_t *zrow;
  const int8_t *ptr[TK_DW_MAX_TAPS];
  long offs[TK_DW_MAX_TAPS];
  const int y_span = (p->k_h - 1) * p->dil_h, x_span = (p->k_w - 1) * p->dil_w;
  const int32_t lo = p->act_min, hi = p->act_max;
  const int sat8 = lo == -128 && hi == 127;
  int32_t *blocks;
  const int asm3 = sat8 && p->k_h == 3 && p->k_w == 3 && p->dil_w == 1;
  int b, oy, ox, c, t, ky, kx, fast4;
  if (depth_mult != 1 || !q || taps > TK_DW_MAX_TAPS ||
      p->scratch_px < 4 * c_n + (c_n + 3) / 4) {
    tk_depthwise_conv2d_s8_ref(p, depth_mult, in, filter, bias, out);
    return;
  }
  blocks = (int32_t *)(void *)p->scratch;
  fast4 = dw4_prepare(p, filter, bias, taps, blocks);
  for (c = 0; c < c_n && !fast4; ++c) {
    uint32_t sum = 0;
    if (p->shift[c] >= 0 || p->shift[c] < -23 || p->mult[c] < 0) {
      tk_depthwise_conv2d_s8_ref(p, depth_mult, in, filter, bias, out);
      return;
    }
    for (t = 0; t < taps; ++t) sum += (uint32_t)(int32_t)filter[(long)t * c_n + c];
    q[c].bias = tk_wrap32((uint32_t)(bias ? bias[c] : 0) + (uint32_t)p->in_offset * sum);
    q[c].mult = p->mult[c];
    q[c].right1 = -p->shift[c] - 1;
    q[c].unused = 0;
  }
  zrow = fast4 ? (int8_t *)(void *)(blocks + (c_n >> 2) * TK_DW4_WORDS(taps))
               : (int8_t *)(void *)(q + c_n);
  memset(zrow, (int8_t)(-p->in_offset), (size_t)(fast4 ? 3 * c_n : c_n));
  for (ky = 0, t = 0; ky < p->k_h; ++ky) {
    for (kx = 0; kx < p->k_w; ++kx, ++t) {
      offs[t] = ((long)ky * p->dil_h * p->in_w + (long)kx * p->dil_w) * c_n;
    }
  }
  for (b = 0; b < p->batches; ++b) {
    const int8_t *bin = in + (long)b * p->in_h * p->in_w * c_n;
    if (fast4 && asm3) {
      dw3x3_sat(p, bin, out + (long)b * p->out_h * p->out_w * c_n, blocks, zrow);
      continue;
    }
    for (oy = 0; oy < p->out_h; ++oy) {
      const int y0 = oy * p->stride_h - p->pad_h;
      for (ox = 0; ox < p->out_w; ++ox) {
        const int x0 = ox * p->stride_w - p->pad_w;
        int8_t *o = out + (((long)b * p->out_h + oy) * p->out_w + ox) * c_n;
        if (y0 >= 0 && y0 + y_span < p->in_h && x0 >= 0 && x0 + x_span < p->in_w) {
          const int8_t *base = bin + ((long)y0 * p->in_w + x0) * c_n;
          for (t = 0; t < taps; ++t) ptr[t] = base + offs[t];
        } else {
          for (ky = 0, t = 0; ky < p->k_h; ++ky) {
            const int y = y0 + ky * p->dil_h;
            for (kx = 0; kx < p->k_w; ++kx, ++t) {
              const int x = x0 + kx * p->dil_w;
              ptr[t] = y >= 0 && y < p->in_h && x >= 0 && x < p->in_w
                           ? bin + ((long)y * p->in_w + x) * c_n : zrow;
            }
          }
        }
        if (fast4) {
          if (taps == 9 && sat8) {
            dw4_pixel9_sat(ptr, c_n, blocks, o);
          } else {
            dw4_pixel_any(ptr, taps, c_n, blocks, o, lo, hi);
          }
        } else if (p->small_acc) {
          dw_pixel_small(p, ptr, taps, filter, q, o);
        } else {
          dw_pixel_wide(p, ptr, taps, filter, q, o);
        }
      }
    }
  }
}

#else
typedef int tk_conv_dsp_unused;
#endif
