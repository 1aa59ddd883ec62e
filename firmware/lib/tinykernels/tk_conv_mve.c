/* CONV_2D and DEPTHWISE_CONV_2D for cores with Helium (MVE): Cortex-M55, Cortex-M85.
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

typedef char tk_conv_job_layout[(sizeof(tk_conv_job) == 88 &&
                                 offsetof(tk_conv_job, state) == 32 &&
                                 offsetof(tk_conv_job, act_max) == 84) ? 1 : -1];

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
    /* Wrapping int32 arithmetic, as the reference accumulator. */
    const uint32_t fold = (uint32_t)(bias ? bias[c] : 0) +
                          (uint32_t)p->in_offset * (uint32_t)tk_mve_sum_s8(filter + (long)c * k, k);
    qb[4 + 2 * lane] = qb[5 + 2 * lane] = tk_wrap32(fold);
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

/* ---- depthwise (depth multiplier 1) ----
 *
 * One channel at a time over an output row, each output one 16-byte load and one VMLADAV: the
 * scratch holds, per channel, the k_h input rows the row's windows read, interleaved column by
 * column (byte col * k_h + slot), so the window of an output pixel is one contiguous run of
 * span_w * k_h bytes. Rows live in a ring (input row y in slot y mod k_h), so each output row
 * copies only the rows it does not share with the previous one; padded rows and columns hold
 * the input zero point. The channel's weights are kept in the lane order of slot 0 and permuted
 * for the row's slot order with one byte gather. Windows of up to 32 bytes (3x3 with dilation
 * up to 3 along x, 5x5, ...) run as one or two vectors; the input offset is folded into the bias
 * as in the convolution. All input rows an output row needs are copied before any of its
 * outputs is written, which keeps the memory contract.
 *
 * Work space: 16 + 16 * nvec bytes per channel (weights, folded bias and requantization), k_h
 * permutations of 16 * nvec bytes, channels * k_h * columns bytes of rows, 4 * k_h * stride_w + 32
 * bytes of slack for the loads of the last windows, 16 for alignment.
 *
 * With one input channel and a depth multiplier above 1 (first layers of grayscale models) the
 * op is a convolution with depth_mult output channels: its filter is transposed into scratch and
 * the convolution above runs. Other depth multipliers take the reference kernel. */

#define TK_DW_PAD_ROW (-0x7fffffff)

static int dw_gcd(int a, int b) {
  while (b) {
    const int t = a % b;
    a = b;
    b = t;
  }
  return a;
}

static int dw_mod(int a, int m) { return ((a % m) + m) % m; }

/* Copy input row `row` (NULL: the zero point) into ring slot `slot` of every channel plane:
 * eight channels of a pixel per byte scatter (one plane apart). */
static void dw_fill_slot(int8_t *buf, const int8_t *row, int8_t zp, int c_n, int w_n,
                         int col0, int r, int slot, int plane) {
  const uint16x8_t offs = vmulq_n_u16(vidupq_n_u16(0, 1), (uint16_t)plane);
  int c, x;
  for (c = 0; c < c_n; c += 8) {
    const mve_pred16_t pr = vctp16q(c_n - c);
    int8_t *dst = buf + (long)c * plane + col0 * r + slot;
    if (row == NULL) {
      const uint16x8_t zv = vdupq_n_u16((uint8_t)zp);
      for (x = 0; x < w_n; ++x, dst += r) vstrbq_scatter_offset_p_u16((uint8_t *)dst, offs, zv, pr);
    } else if (c + 8 <= c_n) {
      const uint8_t *src = (const uint8_t *)row + c;
      for (x = 0; x < w_n; ++x, dst += r, src += c_n) {
        vstrbq_scatter_offset_u16((uint8_t *)dst, offs, vldrbq_u16(src));
      }
    } else {
      const uint8_t *src = (const uint8_t *)row + c;
      for (x = 0; x < w_n; ++x, dst += r, src += c_n) {
        vstrbq_scatter_offset_p_u16((uint8_t *)dst, offs, vldrbq_z_u16(src, pr), pr);
      }
    }
  }
}

/* One output row of every channel, for the assembly loop below (fixed field offsets). Per
 * channel a record of 16 * nvec weight bytes (slot-0 lane order) and four words: folded bias,
 * multiplier, negated right shift (all <= -1 here), output offset. */
typedef struct {
  const int8_t *rec;     /*  0: record of channel 0 */
  const int8_t *src;     /*  4: window of pixel 0 in the plane of channel 0 */
  int8_t *dst;           /*  8: output of pixel 0, channel 0 */
  const uint8_t *perm;   /* 12: lane permutation of the row (one byte gather) */
  int32_t nch;           /* 16: channels (counted down) */
  int32_t ngroups;       /* 20: full groups of four output pixels */
  int32_t tail;          /* 24: pixels in a last partial group (0..3) */
  int32_t pad;           /* 28: added to the window pointer after a channel's groups */
  uint32_t offs[4];      /* 32: output byte offsets of four pixels: 0, c, 2c, 3c */
  uint32_t adv[4];       /* 48: 4c */
  int32_t act_min;       /* 64 */
  int32_t act_max;       /* 68 */
  int32_t step;          /* 72: bytes between windows of neighbouring pixels */
} tk_dw_job;

typedef char tk_dw_job_layout[(sizeof(tk_dw_job) == 76 && offsetof(tk_dw_job, offs) == 32 &&
                               offsetof(tk_dw_job, step) == 72) ? 1 : -1];

void tk_mve_dw_n1s3(tk_dw_job *j);
void tk_mve_dw_n1s6(tk_dw_job *j);
void tk_mve_dw_n1(tk_dw_job *j);
void tk_mve_dw_n2(tk_dw_job *j);

/* Per group of four pixels: four windows (one VMLADAV each, two for 32-byte windows) into r0
 * r2 r4 r6, to a vector through the stack, requantized with the channel's scalars (r8 folded
 * bias, r9 multiplier, r10 -right, r11 output offset) and scattered to the four pixels. r1
 * window, r3 output of pixel 0 (q5 offsets, advanced by q4), r5 group counter, r7 job, r12
 * record, lr window step (register-step variants). */
__asm__(
    "  .syntax unified\n"
    "  .macro TK_DW_WIN nvec, step, acc\n"
    "  .if \\nvec == 2\n"
    "  vldrb.u8 q2, [r1]\n"
    "  vmlav.s8 \\acc, q2, q0\n"
    "  vldrb.u8 q2, [r1, #16]\n"
    "  vmlava.s8 \\acc, q2, q1\n"
    "  add r1, lr\n"
    "  .elseif \\step\n"
    "  vldrb.u8 q2, [r1], #\\step\n"
    "  vmlav.s8 \\acc, q2, q0\n"
    "  .else\n"
    "  vldrb.u8 q2, [r1]\n"
    "  add r1, lr\n"
    "  vmlav.s8 \\acc, q2, q0\n"
    "  .endif\n"
    "  .endm\n"
    "  .macro TK_DW_GROUP nvec, step, partial\n"
    "  TK_DW_WIN \\nvec, \\step, r0\n"
    "  TK_DW_WIN \\nvec, \\step, r2\n"
    "  TK_DW_WIN \\nvec, \\step, r4\n"
    "  TK_DW_WIN \\nvec, \\step, r6\n"
    "  stm sp, {r0, r2, r4, r6}\n"
    "  vldrw.u32 q3, [sp]\n"
    "  vadd.i32 q3, q3, r8\n"
    "  vqrdmulh.s32 q3, q3, r9\n"
    "  vshr.s32 q2, q3, #31\n"
    "  vqadd.s32 q3, q3, q2\n"
    "  vrshl.s32 q3, r10\n"
    "  vadd.i32 q3, q3, r11\n"
    "  vmax.s32 q3, q3, q6\n"
    "  vmin.s32 q3, q3, q7\n"
    "  .if \\partial\n"
    "  vctp.32 r5\n"
    "  vpst\n"
    "  vstrbt.32 q3, [r3, q5]\n"
    "  .else\n"
    "  vstrb.32 q3, [r3, q5]\n"
    "  vadd.i32 q5, q5, q4\n"
    "  .endif\n"
    "  .endm\n"
    "  .macro TK_DW name, nvec, step\n"
    "  .section .text.\\name, \"ax\", %progbits\n"
    "  .p2align 2\n"
    "  .global \\name\n"
    "  .type \\name, %function\n"
    "  .thumb_func\n"
    "\\name:\n"
    "  push {r4-r11, lr}\n"
    "  vpush {d8-d15}\n"
    "  sub sp, #16\n"
    "  mov r7, r0\n"
    "  vldrw.u32 q4, [r7, #48]\n"
    "  ldr r0, [r7, #64]\n"
    "  vdup.32 q6, r0\n"
    "  ldr r0, [r7, #68]\n"
    "  vdup.32 q7, r0\n"
    "  ldr lr, [r7, #72]\n"
    "  ldr r12, [r7, #0]\n"
    "  ldr r1, [r7, #4]\n"
    "  ldr r3, [r7, #8]\n"
    "1:\n"
    "  ldr r5, [r7, #12]\n"
    "  vldrb.u8 q2, [r5]\n"
    "  vldrb.u8 q0, [r12, q2]\n"
    "  .if \\nvec == 2\n"
    "  vldrb.u8 q2, [r5, #16]\n"
    "  vldrb.u8 q1, [r12, q2]\n"
    "  .endif\n"
    "  add r12, #16 * \\nvec\n"
    "  ldm r12!, {r8, r9, r10, r11}\n"
    "  vldrw.u32 q5, [r7, #32]\n"
    "  ldr r5, [r7, #20]\n"
    "  cbz r5, 3f\n"
    "2:\n"
    "  TK_DW_GROUP \\nvec, \\step, 0\n"
    "  subs r5, #1\n"
    "  bne 2b\n"
    "3:\n"
    "  ldr r5, [r7, #24]\n"
    "  cbz r5, 4f\n"
    "  TK_DW_GROUP \\nvec, \\step, 1\n"
    "4:\n"
    "  ldr r0, [r7, #28]\n"
    "  add r1, r0\n"
    "  adds r3, #1\n"
    "  ldr r0, [r7, #16]\n"
    "  subs r0, #1\n"
    "  str r0, [r7, #16]\n"
    "  bne 1b\n"
    "  add sp, #16\n"
    "  vpop {d8-d15}\n"
    "  pop {r4-r11, pc}\n"
    "  .size \\name, .-\\name\n"
    "  .endm\n"
    "  TK_DW tk_mve_dw_n1s3, 1, 3\n"
    "  TK_DW tk_mve_dw_n1s6, 1, 6\n"
    "  TK_DW tk_mve_dw_n1, 1, 0\n"
    "  TK_DW tk_mve_dw_n2, 2, 0\n"
    "  .purgem TK_DW\n"
    "  .purgem TK_DW_GROUP\n"
    "  .purgem TK_DW_WIN\n"
    "  .text\n");

/* The same for channels with a left shift or a zero right shift, in C. */
static void dw_row_general(const tk_conv_params *p, const tk_dw_job *j, int nvec) {
  const int vb = 16 * nvec, rec = vb + 16, n = p->out_w;
  const uint32x4_t offs = vldrwq_u32(j->offs);
  const int8_t *src = j->src;
  int c, i, k;
  for (c = 0; c < p->in_c; ++c) {
    const int8_t *r = j->rec + (long)rec * c;
    const int8x16_t w0 = vldrbq_gather_offset_s8(r, vldrbq_u8(j->perm));
    const int8x16_t w1 = nvec > 1 ? vldrbq_gather_offset_s8(r, vldrbq_u8(j->perm + 16)) : w0;
    const int32_t *q = (const int32_t *)(const void *)(r + vb);
    int8_t *dst = j->dst + c;
    for (i = 0; i < n; i += 4) {
      int32_t a[4] __attribute__((aligned(16)));
      int32x4_t v;
      for (k = 0; k < 4; ++k, src += j->step) {
        int32_t sum = vmladavq_s8(vldrbq_s8(src), w0);
        if (nvec > 1) sum = vmladavaq_s8(sum, vldrbq_s8(src + 16), w1);
        a[k] = sum;
      }
      v = vaddq_n_s32(vldrwq_s32(a), q[0]);
      v = vaddq_n_s32(tk_mve_rq1(v, p->mult[c], p->shift[c]), p->out_offset);
      vstrbq_scatter_offset_p_s32(dst, offs, tk_mve_clamp(v, p->act_min, p->act_max),
                                  vctp32q(n - i));
      dst += 4 * p->in_c;
    }
    src += j->pad;
  }
}

void tk_depthwise_conv2d_s8(const tk_conv_params *p, int depth_mult, const int8_t *in,
                            const int8_t *filter, const int32_t *bias, int8_t *out) {
  const int c_n = p->in_c, r = p->k_h, kw = p->k_w, taps = p->k_h * p->k_w;
  const int span_w = (kw - 1) * p->dil_w + 1;
  const int nvec = (span_w * r + 15) / 16;
  const int wp = (p->out_w - 1) * p->stride_w + span_w;
  const int plane = wp * r, vb = 16 * nvec, rec = vb + 16;
  const int8_t zp = (int8_t)(-p->in_offset);
  int8_t *recs, *buf;
  uint8_t *perm;
  int slot_row[16];
  int b, oy, c, t, i, general = 0;
  tk_dw_job job;
  void (*fn)(tk_dw_job *);
  if (c_n == 1 && depth_mult > 1 && p->scratch != NULL) {
    /* One input channel: a convolution of depth_mult filters, rows transposed into scratch. */
    int8_t *rows = (int8_t *)tk_mve_align16(p->scratch);
    tk_conv_params pc = *p;
    for (t = 0; t < taps; ++t) {
      for (c = 0; c < p->out_c; ++c) rows[c * taps + t] = filter[t * p->out_c + c];
    }
    pc.filter_in_c = 1;
    conv_mve(&pc, in, rows, bias, out, rows + ((p->out_c * taps + 15) & ~15));
    return;
  }
  if (depth_mult != 1 || p->scratch == NULL || nvec > 2 || r > 16 ||
      dw_gcd(p->dil_h, r) != 1 || (long)plane * 7 > 65535) {
    tk_depthwise_conv2d_s8_ref(p, depth_mult, in, filter, bias, out);
    return;
  }
  recs = (int8_t *)tk_mve_align16(p->scratch);
  perm = (uint8_t *)(recs + (long)rec * c_n);
  buf = (int8_t *)(perm + vb * r);
  /* Weights of channel c at recs + rec * c, tap (ky, kx) in lane kx * dil_w * r + ky. */
  tk_mve_fill(recs, 0, rec * c_n);
  {
    const uint16x8_t offs = vmulq_n_u16(vidupq_n_u16(0, 1), (uint16_t)rec);
    for (t = 0; t < taps; ++t) {
      int8_t *dst = recs + (t % kw) * p->dil_w * r + t / kw;
      for (c = 0; c < c_n; c += 8, dst += 8 * rec) {
        const mve_pred16_t pr = vctp16q(c_n - c);
        vstrbq_scatter_offset_p_u16((uint8_t *)dst, offs,
                                    vldrbq_z_u16((const uint8_t *)filter + (long)t * c_n + c, pr),
                                    pr);
      }
    }
  }
  for (c = 0; c < c_n; ++c) {
    const int8_t *wc = recs + (long)rec * c;
    int32_t *q = (int32_t *)(void *)(recs + (long)rec * c + vb);
    int32_t s = vaddvq_s8(vldrbq_s8(wc));
    if (nvec > 1) s = vaddvaq_s8(s, vldrbq_s8(wc + 16));
    q[0] = tk_wrap32((uint32_t)(bias ? bias[c] : 0) + (uint32_t)p->in_offset * (uint32_t)s);
    q[1] = p->mult[c];
    q[2] = p->shift[c];
    q[3] = p->out_offset;
    general |= p->shift[c] >= 0;
  }
  /* perm + vb * base: lane col * r + slot takes lane col * r + ky of the weights, where input
   * row base + ky * dil_h sits in slot (base + ky * dil_h) mod r. */
  for (b = 0; b < r; ++b) {
    for (i = 0; i < vb; ++i) {
      const int col = i / r, slot = i % r;
      int ky = 0;
      while (ky < r && dw_mod(b + ky * p->dil_h, r) != slot) ++ky;
      perm[vb * b + i] = (uint8_t)(col < span_w ? col * r + ky : i);
    }
  }
  job.rec = recs;
  job.ngroups = p->out_w / 4;
  job.tail = p->out_w % 4;
  job.step = p->stride_w * r;
  job.pad = plane - 4 * ((p->out_w + 3) / 4) * job.step;
  for (i = 0; i < 4; ++i) {
    job.offs[i] = (uint32_t)(i * c_n);
    job.adv[i] = (uint32_t)(4 * c_n);
  }
  job.act_min = p->act_min;
  job.act_max = p->act_max;
  fn = nvec == 2 ? tk_mve_dw_n2
                 : (job.step == 3 ? tk_mve_dw_n1s3 : (job.step == 6 ? tk_mve_dw_n1s6 : tk_mve_dw_n1));
  for (b = 0; b < p->batches; ++b) {
    const int8_t *img = in + (long)b * p->in_h * p->in_w * c_n;
    tk_mve_fill(buf, zp, c_n * plane + 4 * job.step + 32);
    for (i = 0; i < r; ++i) slot_row[i] = TK_DW_PAD_ROW;
    for (oy = 0; oy < p->out_h; ++oy) {
      const int y0 = oy * p->stride_h - p->pad_h;
      int ky;
      for (ky = 0; ky < r; ++ky) {
        const int y = y0 + ky * p->dil_h;
        const int tag = (y < 0 || y >= p->in_h) ? TK_DW_PAD_ROW : y;
        const int slot = dw_mod(y, r);
        if (slot_row[slot] != tag) {
          const int w_n = TK_MIN(p->in_w, wp - p->pad_w);
          dw_fill_slot(buf, tag == TK_DW_PAD_ROW ? NULL : img + (long)y * p->in_w * c_n, zp, c_n,
                       w_n, p->pad_w, r, slot, plane);
          slot_row[slot] = tag;
        }
      }
      job.src = buf;
      job.dst = out + ((long)b * p->out_h + oy) * p->out_w * c_n;
      job.perm = perm + vb * dw_mod(y0, r);
      job.nch = c_n;
      if (general) {
        dw_row_general(p, &job, nvec);
      } else {
        fn(&job);
      }
    }
  }
}

#endif
