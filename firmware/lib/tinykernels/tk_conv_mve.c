/* CONV_2D for cores with Helium (MVE): Cortex-M55, Cortex-M85.
 *
 * Convolution as a matrix product of patches and filter rows. The input offset is folded into
 * the bias (bias + in_offset * sum of the filter row, per call), so the patches hold raw int8
 * values and padded taps the input zero point, whose product with (x + offset) is 0 as in the
 * reference. Pixels go in pairs: the patches of up to four pairs are copied into scratch, each
 * pair interleaved in 16-byte chunks (chunk j of pixel s at 32 j + 16 s), then one call of an
 * assembly loop runs, per pair, every block of four output channels: per chunk two patch loads,
 * four filter loads and eight VMLADAVA (128 MACs in 14 instructions), accumulators starting at
 * the folded bias. A last partial chunk loads the filter rows under a VCTP predicate (zeros past
 * the row), so patch bytes past the patch never count. Requantization is vectorized over the
 * four channels of a pixel (tk_mve.h) and stores four bytes per pixel (fewer in a last partial
 * block). All patches of a call are read before any of its outputs is written, which keeps the
 * planner's memory contract (README).
 *
 * Work space (scratch): 96 bytes per block of four output channels (folded bias twice per
 * channel, multiplier, negated right shift, left shift, filter row offsets, channel count), the
 * patches interleaved (TK_CONV_PAIRS pairs) and two linear ones with 16 bytes of slack; see
 * _mve_scratch in pipeline/aot/ops.py. Grouped convolutions and a missing scratch take the
 * reference kernel.
 */
#include <string.h>

#include "tk_mve.h"

#if TK_MVE

/* One call of the assembly loop: npairs pairs of output pixels, nblocks blocks of four output
 * channels each. Field offsets are fixed: the assembly reads them. */
typedef struct {
  const int8_t *x;       /*  0: interleaved patches of the current pair */
  int32_t nfull;         /*  4: full 16-byte chunks per filter row */
  int32_t rem;           /*  8: bytes in the last, partial chunk (0: none) */
  int32_t xstep;         /* 12: bytes between the patches of two pairs */
  int32_t npairs;        /* 16: pairs to run (counted down) */
  int32_t nblocks;       /* 20: blocks of four output channels */
  int32_t bcount;        /* 24: blocks left in the current pair */
  int32_t out_offset;    /* 28 */
  uint32_t state[4];     /* 32: filter row 0, block record, output of pixel 0, of pixel 1 */
  uint32_t step[4];      /* 48: added to state after each block */
  uint32_t adj[4];       /* 64: added to state after each pair */
  int32_t act_min;       /* 80 */
  int32_t act_max;       /* 84 */
} tk_conv_job;

TK_STATIC_ASSERT(sizeof(tk_conv_job) == 88 && offsetof(tk_conv_job, state) == 32 &&
                     offsetof(tk_conv_job, act_max) == 84,
                 "the assembly's field offsets");

/* Per block of four channels: byte offsets of filter rows 1..3 from row 0 and the channels to
 * store, folded bias twice (pixel 0, pixel 1), multipliers, negated right shifts, left shifts. */
#define TK_CONV_QWORDS 24
#define TK_CONV_PAIRS 4 /* pairs per call at most (fewer for long patches, as in ops.py) */

void tk_mve_conv2_t0g0(tk_conv_job *j);
void tk_mve_conv2_t1g0(tk_conv_job *j);
void tk_mve_conv2_t0g1(tk_conv_job *j);
void tk_mve_conv2_t1g1(tk_conv_job *j);

/* The loop, for every combination of "partial last chunk" (tail) and "left shifts or a zero
 * right shift somewhere" (general; otherwise the rounding fix-up needs no mask).
 * Accumulators: pixel 0 in r0 r4 r8 r12, pixel 1 in r2 r6 r10 lr (VMLADAVA needs even
 * registers); patch pointer r1, filter rows r3 r5 r7 r9, chunk counter r11. They reach the
 * vector registers through the stack (STM, then VLD20/VLD21 de-interleave the two pixels).
 * q4 = state, q5 = step, q6/q7 = activation range; the job pointer lives at [sp, #32]. */
__asm__(
    "  .syntax unified\n"
    "  .macro TK_CONV2 name, tail, general\n"
    "  .section .text.\\name, \"ax\", %progbits\n"
    "  .p2align 2\n"
    "  .global \\name\n"
    "  .type \\name, %function\n"
    "  .thumb_func\n"
    "\\name:\n"
    "  push {r4-r11, lr}\n"
    "  vpush {d8-d15}\n"
    "  sub sp, #40\n"
    "  str r0, [sp, #32]\n"
    "  vldrw.u32 q4, [r0, #32]\n"
    "  vldrw.u32 q5, [r0, #48]\n"
    "  ldr r1, [r0, #80]\n"
    "  vdup.32 q6, r1\n"
    "  ldr r1, [r0, #84]\n"
    "  vdup.32 q7, r1\n"
    "1:\n"
    "  ldr r6, [r0, #36]\n"
    "  ldr r3, [r0, #32]\n"
    "  ldm r0, {r1, r11, r12}\n"
    "  ldm r6, {r5, r7, r9}\n"
    "  add r5, r3\n"
    "  add r7, r3\n"
    "  add r9, r3\n"
    "  .if \\tail\n"
    "  vctp.8 r12\n"
    "  .endif\n"
    "  ldrd r0, r2, [r6, #16]\n"
    "  ldrd r8, r10, [r6, #32]\n"
    "  ldrd r12, lr, [r6, #40]\n"
    "  ldrd r4, r6, [r6, #24]\n"
    "  cmp r11, #0\n"
    "  beq 3f\n"
    "2:\n"
    "  vldrb.u8 q0, [r1], #16\n"
    "  vldrb.u8 q1, [r1], #16\n"
    "  vldrb.u8 q2, [r3], #16\n"
    "  vmlava.s8 r0, q0, q2\n"
    "  vmlava.s8 r2, q1, q2\n"
    "  vldrb.u8 q3, [r5], #16\n"
    "  vmlava.s8 r4, q0, q3\n"
    "  vmlava.s8 r6, q1, q3\n"
    "  vldrb.u8 q2, [r7], #16\n"
    "  vmlava.s8 r8, q0, q2\n"
    "  vmlava.s8 r10, q1, q2\n"
    "  vldrb.u8 q3, [r9], #16\n"
    "  vmlava.s8 r12, q0, q3\n"
    "  vmlava.s8 lr, q1, q3\n"
    "  subs r11, #1\n"
    "  bne 2b\n"
    "3:\n"
    "  .if \\tail\n"
    "  vpstt\n"
    "  vldrbt.u8 q2, [r3]\n"
    "  vldrbt.u8 q3, [r5]\n"
    "  vldrb.u8 q0, [r1]\n"
    "  vldrb.u8 q1, [r1, #16]\n"
    "  vmlava.s8 r0, q0, q2\n"
    "  vmlava.s8 r2, q1, q2\n"
    "  vmlava.s8 r4, q0, q3\n"
    "  vmlava.s8 r6, q1, q3\n"
    "  vpstt\n"
    "  vldrbt.u8 q2, [r7]\n"
    "  vldrbt.u8 q3, [r9]\n"
    "  vmlava.s8 r8, q0, q2\n"
    "  vmlava.s8 r10, q1, q2\n"
    "  vmlava.s8 r12, q0, q3\n"
    "  vmlava.s8 lr, q1, q3\n"
    "  .endif\n"
    "  stm sp, {r0, r2, r4, r6, r8, r10, r12, lr}\n"
    "  vld20.32 {q0, q1}, [sp]\n"
    "  vld21.32 {q0, q1}, [sp]\n"
    "  ldr r0, [sp, #32]\n"
    "  ldr r2, [r0, #36]\n"
    "  .if \\general\n"
    "  vldrw.u32 q2, [r2, #80]\n"
    "  vshl.s32 q0, q0, q2\n"
    "  vshl.s32 q1, q1, q2\n"
    "  .endif\n"
    "  vldrw.u32 q2, [r2, #48]\n"
    "  vqrdmulh.s32 q0, q0, q2\n"
    "  vqrdmulh.s32 q1, q1, q2\n"
    "  vldrw.u32 q2, [r2, #64]\n"
    "  .if \\general\n"
    "  vand q3, q0, q2\n"
    "  vshr.s32 q3, q3, #31\n"
    "  vqadd.s32 q0, q0, q3\n"
    "  vand q3, q1, q2\n"
    "  vshr.s32 q3, q3, #31\n"
    "  vqadd.s32 q1, q1, q3\n"
    "  .else\n"
    "  vshr.s32 q3, q0, #31\n"
    "  vqadd.s32 q0, q0, q3\n"
    "  vshr.s32 q3, q1, #31\n"
    "  vqadd.s32 q1, q1, q3\n"
    "  .endif\n"
    "  vrshl.s32 q0, q0, q2\n"
    "  vrshl.s32 q1, q1, q2\n"
    "  ldr r1, [r0, #28]\n"
    "  vadd.i32 q0, q0, r1\n"
    "  vadd.i32 q1, q1, r1\n"
    "  vmax.s32 q0, q0, q6\n"
    "  vmax.s32 q1, q1, q6\n"
    "  vmin.s32 q0, q0, q7\n"
    "  vmin.s32 q1, q1, q7\n"
    "  ldrd r6, r4, [r0, #40]\n"
    "  ldr r1, [r2, #12]\n"
    "  vctp.32 r1\n"
    "  vpstt\n"
    "  vstrbt.32 q0, [r6]\n"
    "  vstrbt.32 q1, [r4]\n"
    "  vadd.i32 q4, q4, q5\n"
    "  vstrw.32 q4, [r0, #32]\n"
    "  ldr r1, [r0, #24]\n"
    "  subs r1, #1\n"
    "  str r1, [r0, #24]\n"
    "  bne 1b\n"
    "  vldrw.u32 q0, [r0, #64]\n"
    "  vadd.i32 q4, q4, q0\n"
    "  vstrw.32 q4, [r0, #32]\n"
    "  ldr r1, [r0]\n"
    "  ldr r2, [r0, #12]\n"
    "  add r1, r2\n"
    "  str r1, [r0]\n"
    "  ldr r1, [r0, #20]\n"
    "  str r1, [r0, #24]\n"
    "  ldr r1, [r0, #16]\n"
    "  subs r1, #1\n"
    "  str r1, [r0, #16]\n"
    "  bne 1b\n"
    "  add sp, #40\n"
    "  vpop {d8-d15}\n"
    "  pop {r4-r11, pc}\n"
    "  .size \\name, .-\\name\n"
    "  .endm\n"
    "  TK_CONV2 tk_mve_conv2_t0g0, 0, 0\n"
    "  TK_CONV2 tk_mve_conv2_t1g0, 1, 0\n"
    "  TK_CONV2 tk_mve_conv2_t0g1, 0, 1\n"
    "  TK_CONV2 tk_mve_conv2_t1g1, 1, 1\n"
    "  .purgem TK_CONV2\n"
    "  .text\n");

/* What the patch copies of one call need, computed once. */
typedef struct {
  const int8_t *img;     /* current batch image */
  long row_bytes;
  int in_h, in_w, ic, k_h, k_w, dil_h, dil_w, stride_h, stride_w, pad_h, pad_w, out_w;
  int k, run, nchunks;
  int8_t zp;
} tk_patch;

/* The patch of the window at (y0, x0), linear (k bytes, a 16-byte store may run past it) at tmp.
 * Fields are copied to locals first: the int8 stores could alias *g and force reloads. */
__attribute__((noinline)) static void gather_window(const tk_patch *g, int y0, int x0,
                                                    int8_t *tmp) {
  const int8_t *const img = g->img;
  const long row_bytes = g->row_bytes;
  const int in_h = g->in_h, in_w = g->in_w, ic = g->ic, k_h = g->k_h, k_w = g->k_w;
  const int dil_h = g->dil_h, dil_w = g->dil_w, run = g->run;
  const int8_t zp = g->zp;
  int ky, kx, y = y0;
  if (dil_w == 1 && x0 >= 0 && x0 + k_w <= in_w) {
    /* Every kernel row is one run of the input. */
    const int8_t *src = img + (long)x0 * ic;
    if (run <= 16) {
      const mve_pred16_t pr = vctp8q(run);
      const int8x16_t zv = vdupq_n_s8(zp);
      for (ky = 0; ky < k_h; ++ky, tmp += run, y += dil_h) {
        vstrbq_s8(tmp, (unsigned)y < (unsigned)in_h ? vldrbq_z_s8(src + y * row_bytes, pr) : zv);
      }
      return;
    }
    for (ky = 0; ky < k_h; ++ky, tmp += run, y += dil_h) {
      if ((unsigned)y < (unsigned)in_h) {
        tk_mve_copy(tmp, src + y * row_bytes, run);
      } else {
        tk_mve_fill(tmp, zp, run);
      }
    }
    return;
  }
  for (ky = 0; ky < k_h; ++ky, y += dil_h) {
    for (kx = 0; kx < k_w; ++kx, tmp += ic) {
      const int xx = x0 + dil_w * kx;
      if ((unsigned)y < (unsigned)in_h && (unsigned)xx < (unsigned)in_w) {
        tk_mve_copy(tmp, img + y * row_bytes + (long)xx * ic, ic);
      } else {
        tk_mve_fill(tmp, zp, ic);
      }
    }
  }
}

/* Chunks of a patch into slot d of an interleaved pair (chunk j at d + 32 j); the last chunk
 * stops at the end of the patch. */
static inline void put_chunks(int8_t *d, const int8_t *src, int k, int nchunks) {
  int j;
  for (j = 0; j + 1 < nchunks; ++j) vstrbq_s8(d + 32 * j, vldrbq_s8(src + 16 * j));
  vstrbq_s8(d + 32 * j, vldrbq_z_s8(src + 16 * j, vctp8q(k - 16 * j)));
}

/* Window inside the image, kernel rows of run bytes (a multiple of 16, so every row starts a
 * chunk): copied straight into the chunks of slot d. */
static inline void window_rows16(int8_t *d, const int8_t *src, int k_h, long row_step,
                                 int run) {
  int ky, j;
  for (ky = 0; ky < k_h; ++ky, src += row_step) {
    for (j = 0; j < run; j += 16, d += 32) vstrbq_s8(d, vldrbq_s8(src + j));
  }
}

/* Pixels i0 .. i0 + n - 1 of the call, neighbours along one output row whose windows lie inside
 * the image, kernel rows of at most 16 bytes: each row is one predicated load, stored linearly
 * at tmp (a store may run 16 bytes past its row), then chunked into the pixel's slot. With a
 * single chunk the rows go straight into the slot: the bytes a store writes past it belong to
 * the next slot (filled afterwards) or to the slack behind the patches. */
__attribute__((noinline)) static void short_rows(int8_t *x, int i0, int n, const int8_t *src,
                                                 int src_step, int k_h, long row_step, int run,
                                                 int8_t *tmp, int k, int nch) {
  const mve_pred16_t pr = vctp8q(run);
  int i, ky, j;
  if (k_h == 3 && nch <= 2) {
    /* 3 x 3 windows of small channel counts (first layers), unrolled. */
    const mve_pred16_t pr2 = vctp8q(k - 16);
    for (i = i0; i < i0 + n; ++i, src += src_step) {
      int8_t *d = x + 32 * nch * (i >> 1) + 16 * (i & 1);
      int8_t *t = nch == 1 ? d : tmp;
      const int8x16_t r0 = vldrbq_z_s8(src, pr), r1 = vldrbq_z_s8(src + row_step, pr);
      const int8x16_t r2 = vldrbq_z_s8(src + 2 * row_step, pr);
      vstrbq_s8(t, r0);
      vstrbq_s8(t + run, r1);
      vstrbq_s8(t + 2 * run, r2);
      if (nch == 2) {
        vstrbq_s8(d, vldrbq_s8(tmp));
        vstrbq_s8(d + 32, vldrbq_z_s8(tmp + 16, pr2));
      }
    }
    return;
  }
  for (i = i0; i < i0 + n; ++i, src += src_step) {
    int8_t *d = x + 32 * nch * (i >> 1) + 16 * (i & 1);
    int8_t *t = nch == 1 ? d : tmp;
    const int8_t *r = src;
    for (ky = 0; ky < k_h; ++ky, r += row_step) vstrbq_s8(t + ky * run, vldrbq_z_s8(r, pr));
    if (nch > 1) {
      for (j = 0; j + 1 < nch; ++j) vstrbq_s8(d + 32 * j, vldrbq_s8(tmp + 16 * j));
      vstrbq_s8(d + 32 * j, vldrbq_z_s8(tmp + 16 * j, vctp8q(k - 16 * j)));
    }
  }
}

/* The patches of n consecutive output pixels from (oy, ox) on, interleaved by pairs at x (a
 * lone last pixel fills both slots of its pair). A separate function with scalar copies of the
 * geometry keeps register pressure and aliasing reloads off these loops. */
__attribute__((noinline)) static void fill_patches(const tk_patch *g, int oy, int ox, int n,
                                                   int8_t *x, int8_t *tmp) {
  const int k = g->k, nch = g->nchunks, out_w = g->out_w, in_w = g->in_w, in_h = g->in_h;
  const int sh = g->stride_h, sw = g->stride_w, ph = g->pad_h, pw = g->pad_w;
  const int k_h = g->k_h, ic = g->ic, run = g->run;
  const int span_h = (k_h - 1) * g->dil_h + 1, span_w = (g->k_w - 1) * g->dil_w + 1;
  const long row_bytes = g->row_bytes, row_step = g->dil_h * row_bytes;
  const int8_t *const img = g->img;
  const int rows16 = g->dil_w == 1 && run % 16 == 0, few = g->dil_w == 1 && run <= 16;
  int i, j;
  if (g->k_h == 1 && g->k_w == 1 && ph == 0 && pw == 0 && sh == 1 && sw == 1) {
    /* Pointwise: the patches are consecutive input pixels. */
    const int8_t *src = img + ((long)oy * in_w + ox) * k;
    if (nch == 1) {
      const mve_pred16_t pr = vctp8q(k);
      for (i = 0; i < n; ++i, src += k) vstrbq_s8(x + 16 * i, vldrbq_z_s8(src, pr));
    } else {
      for (i = 0; i < n; ++i, src += k) {
        put_chunks(x + 32 * nch * (i >> 1) + 16 * (i & 1), src, k, nch);
      }
    }
  } else {
    for (i = 0; i < n; ++i) {
      int8_t *d = x + 32 * nch * (i >> 1) + 16 * (i & 1);
      const int y0 = oy * sh - ph, x0 = ox * sw - pw;
      if (y0 >= 0 && y0 + span_h <= in_h && x0 >= 0 && x0 + span_w <= in_w && rows16) {
        window_rows16(d, img + y0 * row_bytes + (long)x0 * ic, k_h, row_step, run);
      } else if (y0 >= 0 && y0 + span_h <= in_h && x0 >= 0 && x0 + span_w <= in_w && few) {
        /* This pixel and its neighbours along the row whose windows are inside too. */
        int m = (in_w - span_w - x0) / sw + 1;
        m = TK_MIN(m, TK_MIN(out_w - ox, n - i));
        short_rows(x, i, m, img + y0 * row_bytes + (long)x0 * ic, sw * ic, k_h, row_step, run,
                   tmp, k, nch);
        i += m - 1;
        ox += m - 1;
      } else {
        gather_window(g, y0, x0, tmp);
        put_chunks(d, tmp, k, nch);
      }
      if (++ox == out_w) {
        ox = 0;
        ++oy;
      }
    }
  }
  if (n & 1) {
    int8_t *d = x + 32 * nch * (n >> 1);
    for (j = 0; j < nch; ++j) vstrbq_s8(d + 32 * j + 16, vldrbq_s8(d + 32 * j));
  }
}

/* Pairs per assembly call: up to TK_CONV_PAIRS while their patches fit in 1 KiB. */
static int conv_pairs(int nchunks) {
  const int n = 1024 / (32 * nchunks);
  return n < 1 ? 1 : (n > TK_CONV_PAIRS ? TK_CONV_PAIRS : n);
}

/* The convolution on groups of one (filter_in_c == in_c); filter rows of k bytes. */
static void conv_mve(const tk_conv_params *p, const int8_t *in, const int8_t *filter,
                     const int32_t *bias, int8_t *out, void *scratch) {
  const int k = p->k_h * p->k_w * p->filter_in_c;
  const int oc = p->out_c, nb = (oc + 3) / 4;
  const int nchunks = (k + 15) / 16, ppc = conv_pairs(nchunks);
  const int npx = p->out_h * p->out_w;
  int32_t *q = (int32_t *)tk_mve_align16(scratch);
  int8_t *x = (int8_t *)(q + TK_CONV_QWORDS * nb);
  int8_t *tmp = x + 32 * nchunks * ppc; /* one linear patch and 16 bytes of slack */
  tk_patch g;
  tk_conv_job job;
  int c, b, px, i, general = 0;
  void (*fn)(tk_conv_job *);
  memset(q + TK_CONV_QWORDS * (nb - 1), 0, TK_CONV_QWORDS * sizeof(int32_t));
  for (c = 0; c < oc; ++c) {
    int32_t *qb = q + TK_CONV_QWORDS * (c / 4);
    const int lane = c % 4;
    const int32_t s = p->shift[c];
    qb[4 + 2 * lane] = qb[5 + 2 * lane] =
        tk_fold_bias(bias, c, p->in_offset, tk_mve_sum_s8(filter + (long)c * k, k));
    qb[12 + lane] = p->mult[c];
    qb[16 + lane] = s > 0 ? 0 : s;
    qb[20 + lane] = s > 0 ? s : 0;
    general |= s >= 0;
  }
  for (i = 0; i < nb; ++i) {
    /* Rows past the last channel repeat it; their results are not stored. */
    const int last = oc - 4 * i < 4 ? oc - 4 * i : 4;
    int32_t *qb = q + TK_CONV_QWORDS * i;
    qb[0] = (last > 1 ? 1 : 0) * k;
    qb[1] = (last > 2 ? 2 : last - 1) * k;
    qb[2] = (last > 3 ? 3 : last - 1) * k;
    qb[3] = last;
  }
  g.row_bytes = (long)p->in_w * p->in_c;
  g.in_h = p->in_h;
  g.in_w = p->in_w;
  g.ic = p->in_c;
  g.k_h = p->k_h;
  g.k_w = p->k_w;
  g.dil_h = p->dil_h;
  g.dil_w = p->dil_w;
  g.stride_h = p->stride_h;
  g.stride_w = p->stride_w;
  g.pad_h = p->pad_h;
  g.pad_w = p->pad_w;
  g.out_w = p->out_w;
  g.k = k;
  g.run = p->k_w * p->in_c;
  g.nchunks = nchunks;
  g.zp = (int8_t)(-p->in_offset);
  job.nfull = k / 16;
  job.rem = k % 16;
  job.xstep = 32 * nchunks;
  job.nblocks = nb;
  job.out_offset = p->out_offset;
  job.act_min = p->act_min;
  job.act_max = p->act_max;
  job.step[0] = (uint32_t)(4 * k);
  job.step[1] = TK_CONV_QWORDS * sizeof(int32_t);
  job.step[2] = job.step[3] = 4;
  job.adj[0] = (uint32_t)(-(4 * k) * nb);
  job.adj[1] = (uint32_t)(-(int32_t)(TK_CONV_QWORDS * sizeof(int32_t)) * nb);
  job.adj[2] = job.adj[3] = (uint32_t)(2 * oc - 4 * nb);
  fn = job.rem ? (general ? tk_mve_conv2_t1g1 : tk_mve_conv2_t1g0)
               : (general ? tk_mve_conv2_t0g1 : tk_mve_conv2_t0g0);
  for (b = 0; b < p->batches; ++b) {
    int8_t *ob = out + (long)b * npx * oc;
    g.img = in + (long)b * p->in_h * g.row_bytes;
    for (px = 0; px < npx; px += 2 * ppc) {
      /* A lone last pixel runs in both slots of its pair and stores to the same place. */
      const int n = npx - px < 2 * ppc ? npx - px : 2 * ppc;
      fill_patches(&g, px / p->out_w, px % p->out_w, n, x, tmp);
      job.x = x;
      job.state[0] = (uint32_t)(uintptr_t)filter;
      job.state[1] = (uint32_t)(uintptr_t)q;
      job.state[2] = (uint32_t)(uintptr_t)(ob + (long)px * oc);
      job.state[3] = job.state[2] + (uint32_t)oc;
      job.npairs = n / 2;
      job.bcount = nb;
      if (n >= 2) fn(&job);
      if (n % 2) {
        job.x = x + 32 * nchunks * (n / 2);
        job.state[0] = (uint32_t)(uintptr_t)filter;
        job.state[1] = (uint32_t)(uintptr_t)q;
        job.state[2] = job.state[3] = (uint32_t)(uintptr_t)(ob + (long)(px + n - 1) * oc);
        job.npairs = 1;
        job.bcount = nb;
        fn(&job);
      }
    }
  }
}

void tk_conv2d_s8(const tk_conv_params *p, const int8_t *in, const int8_t *filter,
                  const int32_t *bias, int8_t *out) {
  if (p->filter_in_c != p->in_c || p->scratch == NULL) {
    tk_conv2d_s8_ref(p, in, filter, bias, out);
    return;
  }
  conv_mve(p, in, filter, bias, out, p->scratch);
}

#endif
