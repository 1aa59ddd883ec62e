/* DEPTHWISE_CONV_2D (depth multiplier 1) for cores with the DSP extension.
 *
 * Four channels per input word: SXTB16 into (c0, c2) and (c1, c3), then SMLABB/SMLATT into four
 * accumulators; padded taps read a row of input zero points (w * (zp + offset) = 0), and the
 * input offset is folded into the bias. Results equal the reference kernel bit for bit.
 */
#include <stddef.h>
#include <string.h>

#include "tk_dsp.h"

#if TK_DSP && !TK_MVE

#define TK_DW_MAX_TAPS 16
#define TK_DW_ROWS 1 /* scratch_mode of dw_rows */

/* ---- Groups of four channels with prepared weights (every channel accepted by tk_rq) ----
 *
 * Scratch: per group of four channels one block of TK_DW4_WORDS(taps) words: 2 * folded bias of
 * the four channels, then per tap the group's weights doubled and sign-extended to int16 in
 * SXTB16 order ((c0, c2), (c1, c3)), then per channel the tk_rq constants (mult, add, right);
 * after the blocks a zero-point row of 3 * c_n bytes that padded taps read. Per tap and group:
 * one input word, two SXTB16, one LDRD of weights and four SMLAxy. The accumulators hold
 * 2 * acc for tk_rq. */
#define TK_DW4_BIAS 0
#define TK_DW4_W 4
#define TK_DW4_RQ(taps) (TK_DW4_W + 2 * (taps))
#define TK_DW4_WORDS(taps) (TK_DW4_RQ(taps) + 12)

/* The block of a 3x3 group as the asm below reads it: one LDM of the four biases, nine LDRD of
 * weight pairs, four LDM of (mult, add, right). */
typedef struct {
  int32_t bias2[4];
  int32_t w[9][2];
  struct {
    int32_t mult, add, right;
  } rq[4];
} tk_dw4_block9;
TK_STATIC_ASSERT(sizeof(tk_dw4_block9) == 4 * TK_DW4_WORDS(9), "3x3 group block size");
TK_STATIC_ASSERT(offsetof(tk_dw4_block9, bias2) == 4 * TK_DW4_BIAS, "block: bias words first");
TK_STATIC_ASSERT(offsetof(tk_dw4_block9, w) == 4 * TK_DW4_W, "block: weights after the bias");
TK_STATIC_ASSERT(offsetof(tk_dw4_block9, rq) == 4 * TK_DW4_RQ(9), "block: tk_rq constants last");
TK_STATIC_ASSERT(offsetof(tk_dw4_block9, rq[1]) == 4 * TK_DW4_RQ(9) + 12 &&
                     offsetof(tk_dw4_block9, rq[0].add) == 4 * TK_DW4_RQ(9) + 4 &&
                     offsetof(tk_dw4_block9, rq[0].right) == 4 * TK_DW4_RQ(9) + 8,
                 "block: ldm {mult, add, right} per channel");

static inline int8_t dw_out(int32_t acc2, const int32_t *rq, int sat8, int32_t lo, int32_t hi) {
  const int32_t v = tk_rq(acc2, rq[0], rq[1], rq[2]);
  return sat8 ? (int8_t)__ssat(v, 8) : tk_act(v, lo, hi);
}

__attribute__((always_inline)) static inline void dw4_pixel_body(
    const int8_t *const *ptr, int taps, int c_n, const int32_t *g, int8_t *o, int sat8,
    int32_t lo, int32_t hi) {
  int c, t;
  for (c = 0; c < c_n; c += 4) {
    int32_t a0 = g[0], a1 = g[1], a2 = g[2], a3 = g[3];
    const int32_t *wide = g + TK_DW4_W, *rq;
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
    o[c] = dw_out(a0, rq, sat8, lo, hi);
    o[c + 1] = dw_out(a1, rq + 3, sat8, lo, hi);
    o[c + 2] = dw_out(a2, rq + 6, sat8, lo, hi);
    o[c + 3] = dw_out(a3, rq + 9, sat8, lo, hi);
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

/* Offsets the asm reads (ldm of r0..cn4, then single loads). */
#define TK_DWR_G 16
#define TK_DWR_O 20
#define TK_DWR_GROUPS 24
#define TK_DWR_NPX 28
#define TK_DWR_ADV 32
TK_STATIC_ASSERT(offsetof(tk_dw_run, r0) == 0 && offsetof(tk_dw_run, r1) == 4 &&
                     offsetof(tk_dw_run, r2) == 8 && offsetof(tk_dw_run, cn4) == 12,
                 "asm: ldm {r0, r1, r2, cn4} at the start");
TK_STATIC_ASSERT(offsetof(tk_dw_run, g) == TK_DWR_G, "asm: g");
TK_STATIC_ASSERT(offsetof(tk_dw_run, o) == TK_DWR_O, "asm: o");
TK_STATIC_ASSERT(offsetof(tk_dw_run, groups) == TK_DWR_GROUPS, "asm: groups");
TK_STATIC_ASSERT(offsetof(tk_dw_run, npx) == TK_DWR_NPX, "asm: npx");
TK_STATIC_ASSERT(offsetof(tk_dw_run, adv) == TK_DWR_ADV, "asm: adv");

/* Locals on the stack: output pointer, groups left, the argument, pixels left. */
#define TK_DWS_FRAME 16
#define TK_DWS_O 0
#define TK_DWS_GROUPS 4
#define TK_DWS_ARG 8
#define TK_DWS_NPX 12
#define TK_DW_AT(base, off) "[" base ", #" TK_STR(off) "]"

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
#define TK_DW_RQ(r) "ldm r9!, {r10, r11, r12}\n\t" TK_RQ_ASM("lr", r, "r10", "r11", "r12") \
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
    "sub sp, sp, #" TK_STR(TK_DWS_FRAME) "\n\t"
    "str r0, " TK_DW_AT("sp", TK_DWS_ARG) "\n\t"
    "ldm r0, {r4, r5, r6, r7}\n\t"
    "add r8, r7, r7\n\t"
    "add r8, r8, #4\n\t"
    "ldr r1, " TK_DW_AT("r0", TK_DWR_O) "\n\t"
    "str r1, " TK_DW_AT("sp", TK_DWS_O) "\n\t"
    "ldr r1, " TK_DW_AT("r0", TK_DWR_NPX) "\n\t"
    "str r1, " TK_DW_AT("sp", TK_DWS_NPX) "\n"
    "5:\n\t"
    "ldr r0, " TK_DW_AT("sp", TK_DWS_ARG) "\n\t"
    "ldr r9, " TK_DW_AT("r0", TK_DWR_G) "\n\t"
    "ldr r1, " TK_DW_AT("r0", TK_DWR_GROUPS) "\n\t"
    "str r1, " TK_DW_AT("sp", TK_DWS_GROUPS) "\n"
    "1:\n\t"
    "ldm r9!, {r0, r1, r2, r3}\n\t"
    TK_DW_ROW("r4") TK_DW_ROW("r5") TK_DW_ROW("r6")
    TK_DW_RQ("r0") TK_DW_RQ("r1") TK_DW_RQ("r2") TK_DW_RQ("r3")
    "bfi r0, r1, #8, #8\n\t"
    "bfi r0, r2, #16, #8\n\t"
    "bfi r0, r3, #24, #8\n\t"
    "ldr r12, " TK_DW_AT("sp", TK_DWS_O) "\n\t"
    "str r0, [r12], #4\n\t"
    "str r12, " TK_DW_AT("sp", TK_DWS_O) "\n\t"
    "ldr r12, " TK_DW_AT("sp", TK_DWS_GROUPS) "\n\t"
    "subs r12, r12, #1\n\t"
    "str r12, " TK_DW_AT("sp", TK_DWS_GROUPS) "\n\t"
    "bne 1b\n\t"
    "ldr r0, " TK_DW_AT("sp", TK_DWS_ARG) "\n\t"
    "ldr r1, " TK_DW_AT("r0", TK_DWR_ADV) "\n\t"
    "add r4, r4, r1\n\t"
    "add r5, r5, r1\n\t"
    "add r6, r6, r1\n\t"
    "ldr r1, " TK_DW_AT("sp", TK_DWS_NPX) "\n\t"
    "subs r1, r1, #1\n\t"
    "str r1, " TK_DW_AT("sp", TK_DWS_NPX) "\n\t"
    "bne 5b\n\t"
    "add sp, sp, #" TK_STR(TK_DWS_FRAME) "\n\t"
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
    if (!tk_rq_ok(p->mult[c], p->shift[c])) return 0;
  }
  for (c = 0; c < c_n; c += 4) {
    int32_t *g = blocks + (long)(c >> 2) * TK_DW4_WORDS(taps);
    int32_t *rq = g + TK_DW4_RQ(taps);
    uint32_t s02 = 0, s13 = 0; /* per-channel weight sums in int16 lanes (|sum| <= 16 * 128) */
    int32_t sum[4];
    for (t = 0; t < taps; ++t) {
      const uint32_t w = *(const tk_u32u *)(const void *)(filter + (long)t * c_n + c);
      const uint32_t lo = __sxtb16(w), hi = __sxtb16(tk_ror8(w));
      s02 = __sadd16(s02, lo);
      s13 = __sadd16(s13, hi);
      g[TK_DW4_W + 2 * t] = (int32_t)__sadd16(lo, lo);
      g[TK_DW4_W + 2 * t + 1] = (int32_t)__sadd16(hi, hi);
    }
    sum[0] = (int16_t)s02;
    sum[1] = (int16_t)s13;
    sum[2] = (int16_t)(s02 >> 16);
    sum[3] = (int16_t)(s13 >> 16);
    for (j = 0; j < 4; ++j) {
      const int32_t right = -p->shift[c + j];
      g[TK_DW4_BIAS + j] = (int32_t)(2u * TK_FOLD_BIAS(bias, c + j, p->in_offset, sum[j]));
      rq[3 * j] = p->mult[c + j];
      rq[3 * j + 1] = tk_rq_add(right, p->out_offset);
      rq[3 * j + 2] = right;
    }
  }
  return 1;
}

/* ---- Any channel count and quantization: per-channel table ----
 *
 * Scratch per channel: folded bias, multiplier, tk_rq addend (0: the channel needs tk_mbqm),
 * shift; then a row of zero-point bytes that padded taps read. */
typedef struct {
  int32_t bias, mult, add, shift;
} tk_dwc;

static inline int8_t dwc_out(int32_t acc, const tk_dwc *q, const tk_conv_params *p) {
  const int32_t v = q->add ? tk_rq((int32_t)((uint32_t)acc << 1), q->mult, q->add, -q->shift)
                           : tk_mbqm(acc, q->mult, q->shift) + p->out_offset;
  return tk_act(v, p->act_min, p->act_max);
}

/* All channels of one output pixel, given its tap pointers. */
__attribute__((noinline)) static void dw_pixel(const tk_conv_params *p, const int8_t *const *ptr,
                                               int taps, const int8_t *filter, const tk_dwc *q,
                                               int8_t *o) {
  const int c_n = p->out_c, c4 = c_n & ~3;
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
    o[c] = dwc_out(a0, q, p);
    o[c + 1] = dwc_out(a1, q + 1, p);
    o[c + 2] = dwc_out(a2, q + 2, p);
    o[c + 3] = dwc_out(a3, q + 3, p);
  }
  for (; c < c_n; ++c, ++q) {
    int32_t acc = q->bias;
    for (t = 0; t < taps; ++t) acc += (int32_t)ptr[t][c] * filter[(long)t * c_n + c];
    o[c] = dwc_out(acc, q, p);
  }
}

/* ---- 3x3, stride 1 along x: rows of int16 pair words (scratch_mode TK_DW_ROWS) ----
 *
 * Every input row that a window needs is widened once into a ring of three rows (the slot of
 * row y is y mod 3) of pair words: per pair position q and channel c the word (x[2q] + off,
 * x[2q + 1] + off), padded columns 0, so one word holds two taps of a window row. Per channel
 * the table holds 2 * bias twice, the doubled weight pairs A_k = (w_k0, w_k1) and B_k = (w_k1,
 * w_k2) of each window row k, and the tk_rq constants. Outputs 2j and 2j + 1 of a channel then
 * take per window row the words P_j, P_j+1 and four multiplies: o0 += SMLAD(P_j, A) +
 * SMLABT(P_j+1, B), o1 += SMLATB(P_j, A) + SMLAD(P_j+1, B). One asm call per output row runs
 * all pairs of outputs, channels inner (34 instructions per two outputs with requantization
 * and stores). The ring holds copies, so the input is only read while widening the rows of the
 * output row about to be written. Activation range [-128, 127] only (SSAT). (At stride 2 the
 * widening of four input values per output costs what the pairs save; those layers keep the
 * per-pixel kernel.) */
#define TK_DWH_TW 11 /* table words per channel */

typedef struct {
  const tk_w32 *p0, *p1, *p2; /* the three window rows at the first pair, channel 0 */
  const int32_t *t;           /* channel table */
  int8_t *o;                  /* output of the first pixel, channel 0 */
  int32_t c_n;                /* channels */
  int32_t o1;                 /* bytes from the first to the second output of a pair */
  int32_t pairs;              /* output pairs */
} tk_dwh_row;
#define TK_DWH_CN 20
#define TK_DWH_O1 24
#define TK_DWH_PAIRS 28
TK_STATIC_ASSERT(offsetof(tk_dwh_row, p0) == 0 && offsetof(tk_dwh_row, p1) == 4 &&
                     offsetof(tk_dwh_row, p2) == 8 && offsetof(tk_dwh_row, t) == 12 &&
                     offsetof(tk_dwh_row, o) == 16,
                 "asm: ldm {p0, p1, p2, t, o} at the start");
TK_STATIC_ASSERT(offsetof(tk_dwh_row, c_n) == TK_DWH_CN, "asm: c_n");
TK_STATIC_ASSERT(offsetof(tk_dwh_row, o1) == TK_DWH_O1, "asm: o1");
TK_STATIC_ASSERT(offsetof(tk_dwh_row, pairs) == TK_DWH_PAIRS, "asm: pairs");

/* The table row of a channel as the asm reads it: one LDM of (2b, 2b, A0, B0), two LDRD of
 * (A_k, B_k), one LDM of the tk_rq constants. */
typedef struct {
  int32_t bias2[2];
  int32_t ab[3][2];
  int32_t mult, add, right;
} tk_dwh_ch;
TK_STATIC_ASSERT(sizeof(tk_dwh_ch) == 4 * TK_DWH_TW && offsetof(tk_dwh_ch, ab) == 8 &&
                     offsetof(tk_dwh_ch, mult) == 32 && offsetof(tk_dwh_ch, add) == 36 &&
                     offsetof(tk_dwh_ch, right) == 40,
                 "table row layout read by the asm");

/* Locals: table start, pairs left, c_n. */
#define TK_DWH_FRAME 16
#define TK_DWH_T0 0
#define TK_DWH_LEFT 4
#define TK_DWH_C 8
#define TK_DWH_SP(off) "[sp, #" TK_STR(off) "]"

/* One window row (pr) for both outputs: r0, r1 accumulators; r2, r3: A, B; r4, r5: words;
 * r12 = 4 * c_n - 4 reaches P_j+1 after the post-increment. */
#define TK_DWH_MAC(pr)                   \
  "ldr r4, [" pr "], #4\n\t"             \
  "ldr r5, [" pr ", r12]\n\t"            \
  "smlad r0, r4, r2, r0\n\t"             \
  "smlabt r0, r5, r3, r0\n\t"            \
  "smlatb r1, r4, r2, r1\n\t"            \
  "smlad r1, r5, r3, r1\n\t"
#define TK_DWH_RQ(r) TK_RQ_ASM("r5", r, "r2", "r3", "r4") "ssat " r ", #8, r5\n\t"

/* All output pairs of a row (a->pairs), channels inner: r6..r8 window rows, r9 table, r10
 * output, r11 = a->o1, lr counts the channels. */
void tk_dwh1(const tk_dwh_row *a);
__asm(".pushsection .text.tk_dwh1,\"ax\",%progbits\n\t"
      ".syntax unified\n\t"
      ".thumb\n\t"
      ".align 2\n\t"
      ".global tk_dwh1\n\t"
      ".thumb_func\n\t"
      ".type tk_dwh1, %function\n"
      "tk_dwh1:\n\t"
      "push {r4, r5, r6, r7, r8, r9, r10, r11, lr}\n\t"
      "sub sp, sp, #" TK_STR(TK_DWH_FRAME) "\n\t"
      "ldm r0, {r6, r7, r8, r9, r10}\n\t"
      "ldr r11, [r0, #" TK_STR(TK_DWH_O1) "]\n\t"
      "ldr r12, [r0, #" TK_STR(TK_DWH_CN) "]\n\t"
      "ldr r1, [r0, #" TK_STR(TK_DWH_PAIRS) "]\n\t"
      "str r9, " TK_DWH_SP(TK_DWH_T0) "\n\t"
      "str r1, " TK_DWH_SP(TK_DWH_LEFT) "\n\t"
      "str r12, " TK_DWH_SP(TK_DWH_C) "\n\t"
      "mov lr, r12\n\t"
      "lsl r12, r12, #2\n\t"
      "sub r12, r12, #4\n"
      "1:\n\t"
      "ldm r9!, {r0, r1, r2, r3}\n\t"
      TK_DWH_MAC("r6")
      "ldrd r2, r3, [r9], #8\n\t"
      TK_DWH_MAC("r7")
      "ldrd r2, r3, [r9], #8\n\t"
      TK_DWH_MAC("r8")
      "ldm r9!, {r2, r3, r4}\n\t"
      TK_DWH_RQ("r0") TK_DWH_RQ("r1")
      "strb r1, [r10, r11]\n\t"
      "strb r0, [r10], #1\n\t"
      "subs lr, lr, #1\n\t"
      "bne 1b\n\t"
      /* Next pair: the rows moved on by one pair position, the output by one pixel. */
      "ldr r9, " TK_DWH_SP(TK_DWH_T0) "\n\t"
      "ldr lr, " TK_DWH_SP(TK_DWH_C) "\n\t"
      "add r10, r10, lr\n\t"
      "ldr r0, " TK_DWH_SP(TK_DWH_LEFT) "\n\t"
      "subs r0, r0, #1\n\t"
      "str r0, " TK_DWH_SP(TK_DWH_LEFT) "\n\t"
      "bne 1b\n\t"
      "add sp, sp, #" TK_STR(TK_DWH_FRAME) "\n\t"
      "pop {r4, r5, r6, r7, r8, r9, r10, r11, pc}\n\t"
      ".size tk_dwh1, . - tk_dwh1\n\t"
      ".popsection\n");
#undef TK_DWH_MAC
#undef TK_DWH_RQ

/* The four channels' pair words of input pixels u (first) and v (second): STM order c0..c3. */
__attribute__((noinline)) static void dwh_widen4(const int8_t *s0, const int8_t *s1, int n4,
                                                 uint32_t o, tk_w32 *dst) {
  register uint32_t a __asm("r4"), b __asm("r5"), c __asm("r6"), d __asm("r7");
  uint32_t u, v;
  __asm volatile(
      "1:\n\t"
      "ldr %[u], [%[s0]], #4\n\t"
      "ldr %[v], [%[s1]], #4\n\t"
      "sxtab16 %[c], %[o], %[u]\n\t"          /* (c0, c2) of the first pixel */
      "sxtab16 %[d], %[o], %[u], ror #8\n\t"  /* (c1, c3) */
      "sxtab16 %[u], %[o], %[v]\n\t"
      "sxtab16 %[v], %[o], %[v], ror #8\n\t"
      "pkhbt %[a], %[c], %[u], lsl #16\n\t"   /* (c0, c0') */
      "pkhbt %[b], %[d], %[v], lsl #16\n\t"   /* (c1, c1') */
      "pkhtb %[c], %[u], %[c], asr #16\n\t"   /* (c2, c2') */
      "pkhtb %[d], %[v], %[d], asr #16\n\t"   /* (c3, c3') */
      "stm %[dst]!, {%[a], %[b], %[c], %[d]}\n\t"
      "subs %[n], %[n], #1\n\t"
      "bne 1b\n"
      : [s0] "+r"(s0), [s1] "+r"(s1), [dst] "+r"(dst), [n] "+r"(n4), [u] "=&r"(u),
        [v] "=&r"(v), [a] "=&r"(a), [b] "=&r"(b), [c] "=&r"(c), [d] "=&r"(d)
      : [o] "r"(o)
      : "cc", "memory");
}

/* Input row `row` widened into npos pair positions of c_n words; padded columns read zpr (c_n
 * zero-point bytes, which widen to 0). */
static void dwh_row(const int8_t *row, int in_w, int pad, int npos, int c_n, const int8_t *zpr,
                    uint32_t o, tk_w32 *dst) {
  int q;
  for (q = 0; q < npos; ++q, dst += c_n) {
    const int x0 = 2 * q - pad, x1 = x0 + 1;
    dwh_widen4(x0 >= 0 && x0 < in_w ? row + (long)x0 * c_n : zpr,
               x1 >= 0 && x1 < in_w ? row + (long)x1 * c_n : zpr, c_n >> 2, o, dst);
  }
}

/* Pair positions of a widened row: the output pairs and one more. */
static inline int dwh_npos(int out_w) { return ((out_w + 1) >> 1) + 1; }

/* Words of work space: the table, three ring rows and a zero row, c_n bytes of zero points and
 * c_n spare bytes. */
static inline long dwh_words(const tk_conv_params *p) {
  const int c_n = p->out_c;
  return (long)TK_DWH_TW * c_n + 4L * dwh_npos(p->out_w) * c_n + c_n / 2;
}

/* Fills the table; 0 if the path does not apply. */
static int dwh_prepare(const tk_conv_params *p, const int8_t *filter, const int32_t *bias,
                       tk_dwh_ch *t) {
  const int c_n = p->out_c;
  int c, k;
  if (!p->small_acc || (c_n & 3) || p->k_h != 3 || p->k_w != 3 || p->dil_h != 1 ||
      p->dil_w != 1 || p->stride_w != 1 || p->act_min != -128 || p->act_max != 127 ||
      p->scratch_px < dwh_words(p)) {
    return 0;
  }
  for (c = 0; c < c_n; ++c) {
    if (!tk_rq_ok(p->mult[c], p->shift[c])) return 0;
  }
  for (c = 0; c < c_n; ++c, ++t) {
    const int32_t b2 = (int32_t)(2u * (uint32_t)(bias ? bias[c] : 0));
    t->bias2[0] = t->bias2[1] = b2;
    for (k = 0; k < 3; ++k) {
      const uint32_t w0 = (uint32_t)(2 * filter[(3 * k) * c_n + c]) & 0xFFFFu;
      const uint32_t w1 = (uint32_t)(2 * filter[(3 * k + 1) * c_n + c]) & 0xFFFFu;
      const uint32_t w2 = (uint32_t)(2 * filter[(3 * k + 2) * c_n + c]) & 0xFFFFu;
      t->ab[k][0] = (int32_t)(w0 | (w1 << 16));
      t->ab[k][1] = (int32_t)(w1 | (w2 << 16));
    }
    t->mult = p->mult[c];
    t->add = tk_rq_add(-p->shift[c], p->out_offset);
    t->right = -p->shift[c];
  }
  return 1;
}

static void dw_rows(const tk_conv_params *p, const int8_t *in, int8_t *out, tk_dwh_ch *table) {
  const int c_n = p->out_c, npos = dwh_npos(p->out_w);
  const long rw = (long)npos * c_n;
  const uint32_t off16 = (uint32_t)p->in_offset & 0xFFFF, o = off16 | (off16 << 16);
  tk_w32 *ring = (tk_w32 *)(void *)(table + c_n), *zero = ring + 3 * rw;
  int8_t *zpr = (int8_t *)(void *)(zero + rw), *spare = zpr + c_n;
  const int full = p->out_w >> 1;
  int b, oy, ky, held[3];
  memset(zero, 0, (size_t)rw * 4);
  memset(zpr, (int8_t)(-p->in_offset), (size_t)c_n);
  for (b = 0; b < p->batches; ++b) {
    const int8_t *bin = in + (long)b * p->in_h * p->in_w * c_n;
    held[0] = held[1] = held[2] = -1;
    for (oy = 0; oy < p->out_h; ++oy) {
      const tk_w32 *r[3];
      tk_dwh_row a;
      for (ky = 0; ky < 3; ++ky) {
        const int y = oy * p->stride_h - p->pad_h + ky;
        tk_w32 *slot = ring + (y % 3) * rw;
        if (y < 0 || y >= p->in_h) {
          r[ky] = zero;
          continue;
        }
        if (held[y % 3] != y) {
          dwh_row(bin + (long)y * p->in_w * c_n, p->in_w, p->pad_w, npos, c_n, zpr, o, slot);
          held[y % 3] = y;
        }
        r[ky] = slot;
      }
      a.t = &table->bias2[0];
      a.c_n = c_n;
      a.o = out + ((long)b * p->out_h + oy) * p->out_w * c_n;
      if (full) {
        a.p0 = r[0];
        a.p1 = r[1];
        a.p2 = r[2];
        a.o1 = c_n;
        a.pairs = full;
        tk_dwh1(&a);
      }
      if (p->out_w & 1) {
        /* The last output alone; the second of its pair goes to the spare bytes. */
        a.p0 = r[0] + (long)full * c_n;
        a.p1 = r[1] + (long)full * c_n;
        a.p2 = r[2] + (long)full * c_n;
        a.o += (long)(p->out_w - 1) * c_n;
        a.o1 = (int32_t)(spare - a.o);
        a.pairs = 1;
        tk_dwh1(&a);
      }
    }
  }
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
  if (depth_mult == 1 && q && p->scratch_mode == TK_DW_ROWS &&
      dwh_prepare(p, filter, bias, (tk_dwh_ch *)(void *)p->scratch)) {
    dw_rows(p, in, out, (tk_dwh_ch *)(void *)p->scratch);
    return;
  }
  if (depth_mult != 1 || !q || taps > TK_DW_MAX_TAPS ||
      p->scratch_px < 4 * c_n + (c_n + 3) / 4) {
    tk_depthwise_conv2d_s8_ref(p, depth_mult, in, filter, bias, out);
    return;
  }
  blocks = (int32_t *)(void *)p->scratch;
  fast4 = dw4_prepare(p, filter, bias, taps, blocks);
  for (c = 0; c < c_n && !fast4; ++c) {
    uint32_t sum = 0;
    for (t = 0; t < taps; ++t) sum += (uint32_t)(int32_t)filter[(long)t * c_n + c];
    q[c].bias = tk_wrap32(TK_FOLD_BIAS(bias, c, p->in_offset, sum));
    q[c].mult = p->mult[c];
    q[c].shift = p->shift[c];
    q[c].add = p->small_acc && tk_rq_ok(p->mult[c], p->shift[c])
                   ? tk_rq_add(-p->shift[c], p->out_offset) : 0;
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
        if (!fast4) {
          dw_pixel(p, ptr, taps, filter, q, o);
        } else if (taps == 9 && sat8) {
          dw4_pixel9_sat(ptr, c_n, blocks, o);
        } else {
          dw4_pixel_any(ptr, taps, c_n, blocks, o, lo, hi);
        }
      }
    }
  }
}

#else
typedef int tk_dwconv_dsp_unused;
#endif
