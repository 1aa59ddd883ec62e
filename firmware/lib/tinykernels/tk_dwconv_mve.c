/* DEPTHWISE_CONV_2D (depth multiplier 1) for cores with Helium (MVE): Cortex-M55, Cortex-M85.
 *
 * One channel at a time over an output row, each output one 16-byte load and one VMLADAV: the
 * scratch holds, per channel, the k_h input rows the row's windows read, interleaved column by
 * column (byte col * k_h + slot), so the window of an output pixel is one contiguous run of
 * span_w * k_h bytes. Rows live in a ring (input row y in slot y mod k_h), so each output row
 * copies only the rows it does not share with the previous one; padded rows and columns hold
 * the input zero point. The channel's weights are kept in the lane order of slot 0 and permuted
 * for the row's slot order with one byte gather. Windows of up to 32 bytes (3x3 with dilation
 * up to 3 along x, 5x5, ...) run as one or two vectors; the input offset is folded into the bias
 * as in the convolution (tk_conv_mve.c). All input rows an output row needs are copied before
 * any of its outputs is written, which keeps the memory contract.
 *
 * Work space: 16 + 16 * nvec bytes per channel (weights, folded bias and requantization), k_h
 * permutations of 16 * nvec bytes, channels * k_h * columns bytes of rows, 4 * k_h * stride_w + 32
 * bytes of slack for the loads of the last windows, 16 for alignment (_mve_scratch in
 * pipeline/aot/ops.py). Other depth multipliers take the reference kernel (the exporter turns a
 * depthwise layer over one input channel into a convolution).
 */
#include "tk_mve.h"

#if TK_MVE
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

TK_STATIC_ASSERT(sizeof(tk_dw_job) == 76 && offsetof(tk_dw_job, offs) == 32 &&
                     offsetof(tk_dw_job, step) == 72,
                 "the assembly's field offsets");

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
    q[0] = tk_wrap32(TK_FOLD_BIAS(bias, c, p->in_offset, s));
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
