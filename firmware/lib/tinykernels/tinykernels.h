/* tinykernels: portable int8 kernels with TensorFlow Lite Micro reference semantics.
 *
 * C99, no malloc, no global state. Every requantization multiplier and shift is precomputed by
 * the exporter, so the kernels only do integer work (QUANTIZE/DEQUANTIZE use float by nature).
 * Shapes are NHWC; "batches" is the leading dimension.
 */
#ifndef TINYKERNELS_H
#define TINYKERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TK_MAX_DIMS 6

/* ---- convolution (tk_conv.c) and depthwise convolution (tk_dwconv.c) ---- */
typedef struct {
  int batches, in_h, in_w, in_c;  /* in_c: channels of the input tensor */
  int out_h, out_w, out_c;
  int k_h, k_w, filter_in_c;      /* filter is [out_c][k_h][k_w][filter_in_c]; groups = in_c/filter_in_c */
  int stride_h, stride_w, dil_h, dil_w, pad_h, pad_w;
  int32_t in_offset, out_offset, act_min, act_max;
  const int32_t *mult, *shift;    /* one per output channel */
  int32_t *scratch;               /* optional work buffer (DSP and MVE kernels), NULL if none */
  int scratch_px;                 /* DSP conv: pixels per band; DSP depthwise: its words */
  int small_acc;                  /* 1 if |bias| + 255 * sum|w| < 2^30 for every channel */
  int scratch_mode;               /* DSP: how the work space is used (tk_*conv_dsp.c) */
} tk_conv_params;

void tk_conv2d_s8(const tk_conv_params *p, const int8_t *in, const int8_t *filter,
                  const int32_t *bias, int8_t *out);

/* Depthwise: filter is [1][k_h][k_w][out_c], out_c = in_c * depth_mult (filter_in_c unused). */
void tk_depthwise_conv2d_s8(const tk_conv_params *p, int depth_mult, const int8_t *in,
                            const int8_t *filter, const int32_t *bias, int8_t *out);

/* ---- fully connected (tk_fc.c) ---- */
typedef struct {
  int batches, accum_depth, out_depth;
  int32_t in_offset, filter_offset, out_offset, act_min, act_max;
  int per_channel;                /* mult/shift have out_depth entries, else one */
  const int32_t *mult, *shift;
} tk_fc_params;

void tk_fully_connected_s8(const tk_fc_params *p, const int8_t *in, const int8_t *filter,
                           const int32_t *bias, int8_t *out);

/* ---- elementwise binary ops with optional broadcast (tk_elementwise.c) ---- */
typedef struct {
  int dims[TK_MAX_DIMS];          /* output shape, left-padded with 1 */
  int stride1[TK_MAX_DIMS];       /* element strides of input 1; 0 where broadcast */
  int stride2[TK_MAX_DIMS];
  int32_t in1_offset, in2_offset, out_offset, act_min, act_max;
  int left_shift;                 /* ADD only */
  int32_t in1_mult, in2_mult, out_mult;
  int in1_shift, in2_shift, out_shift;
  /* ADD, optional (DSP kernel): 2 * rescaled input for every int8 value, indexed by the value's
   * byte (uint8); lut[i] = 2 * mbqm((int8)i + in_offset << left_shift, in_mult, in_shift). */
  const int32_t *lut1, *lut2;
} tk_binary_params;

void tk_add_s8(const tk_binary_params *p, const int8_t *in1, const int8_t *in2, int8_t *out);
void tk_mul_s8(const tk_binary_params *p, const int8_t *in1, const int8_t *in2, int8_t *out);

/* ---- pooling (tk_pool.c) ---- */
typedef struct {
  int batches, in_h, in_w, channels, out_h, out_w;
  int k_h, k_w, stride_h, stride_w, pad_h, pad_w;
  int32_t act_min, act_max;
} tk_pool_params;

void tk_avg_pool_s8(const tk_pool_params *p, const int8_t *in, int8_t *out);
void tk_max_pool_s8(const tk_pool_params *p, const int8_t *in, int8_t *out);

/* ---- reductions (tk_mean.c) ---- */
typedef struct {
  int n_outer;                    /* leading entries of dims/strides are kept axes */
  int dims[TK_MAX_DIMS];          /* kept axes first, then reduced axes */
  int strides[TK_MAX_DIMS];       /* input element strides, same order */
  int n_dims;
  int32_t count;                  /* elements reduced into each output */
  int32_t in_zp, out_zp, mult;
  int shift;
} tk_mean_params;

void tk_mean_s8(const tk_mean_params *p, const int8_t *in, int8_t *out);

/* ---- data movement (tk_shape.c) ---- */
typedef struct {
  int in_dims[TK_MAX_DIMS];       /* left-padded with 1 */
  int before[TK_MAX_DIMS], after[TK_MAX_DIMS];
  int8_t pad_value;
} tk_pad_params;

void tk_pad_s8(const tk_pad_params *p, const int8_t *in, int8_t *out);

typedef struct {
  int n_inputs, outer;
  const int *copy_size;           /* per input: elements per outer step */
  const int32_t *in_zp, *mult, *shift; /* NULL when no input needs requantizing */
  const uint8_t *requant;         /* per input: 1 if it is requantized */
  int32_t out_zp;
} tk_concat_params;

void tk_concat_s8(const tk_concat_params *p, const int8_t *const *ins, int8_t *out);

/* ---- activations (tk_activation.c) ---- */
void tk_relu_s8(const int8_t *in, int8_t *out, int n, int32_t in_zp, int32_t out_zp,
                int32_t mult, int shift, int32_t act_min, int32_t act_max);
void tk_clamp_s8(const int8_t *in, int8_t *out, int n, int8_t lower, int8_t upper);

/* ---- softmax (tk_softmax.c) ---- */
void tk_softmax_s8(const int8_t *in, int8_t *out, int rows, int depth, int32_t mult,
                   int left_shift, int32_t diff_min);

/* ---- logistic (tk_logistic.c) ---- */
void tk_logistic_s8(const int8_t *in, int8_t *out, int n, int32_t in_zp, int32_t radius,
                    int32_t mult, int left_shift);

/* ---- hard swish (tk_hardswish.c) ---- */
typedef struct {
  int32_t in_zp, out_zp;
  int16_t out_mult, reluish_mult;
  int out_exp, reluish_exp;
} tk_hardswish_params;

void tk_hard_swish_s8(const tk_hardswish_params *p, const int8_t *in, int8_t *out, int n);

/* ---- (de)quantization (tk_quantize.c) ---- */
void tk_quantize_f32_s8(const float *in, int8_t *out, int n, float scale, int32_t zp);
void tk_requantize_s8(const int8_t *in, int8_t *out, int n, int32_t in_zp, int32_t out_zp,
                      int32_t mult, int shift);
/* Model inputs and outputs of other integer types: uint8/int16 <-> int8. */
void tk_requantize_u8_s8(const uint8_t *in, int8_t *out, int n, int32_t in_zp, int32_t out_zp,
                         int32_t mult, int shift);
void tk_requantize_s8_u8(const int8_t *in, uint8_t *out, int n, int32_t in_zp, int32_t out_zp,
                         int32_t mult, int shift);
void tk_requantize_s16_s8(const int16_t *in, int8_t *out, int n, int32_t in_zp, int32_t out_zp,
                          int32_t mult, int shift);
void tk_requantize_s8_s16(const int8_t *in, int16_t *out, int n, int32_t in_zp, int32_t out_zp,
                          int32_t mult, int shift);
void tk_dequantize_s8_f32(const int8_t *in, float *out, int n, double scale, int32_t zp);

#ifdef __cplusplus
}
#endif

#endif /* TINYKERNELS_H */
