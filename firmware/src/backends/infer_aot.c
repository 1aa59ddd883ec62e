/* Inference backend over an AOT-compiled model (tp_* API from `tinypipe export`). */
#include <string.h>

#include "../infer.h"
#include "tp_model.h"

#ifndef TP_MAX_IO
#define TP_MAX_IO 4
#endif

typedef struct {
    int tp_type; /* the exporter's TP_TYPE_* code */
    uint8_t rank;
    int32_t dims[INFER_MAX_RANK];
    float scale;
    int32_t zero_point;
} io_meta_t;

#define META(P, N)                                                                       \
    {P##N##_TYPE, P##N##_RANK, P##N##_SHAPE, P##N##_SCALE, P##N##_ZERO_POINT}

static const io_meta_t in_meta[] = {
    META(TP_INPUT, 0),
#if defined(TP_INPUT1_RANK)
    META(TP_INPUT, 1),
#endif
#if defined(TP_INPUT2_RANK)
    META(TP_INPUT, 2),
#endif
#if defined(TP_INPUT3_RANK)
    META(TP_INPUT, 3),
#endif
};

static const io_meta_t out_meta[] = {
    META(TP_OUTPUT, 0),
#if defined(TP_OUTPUT1_RANK)
    META(TP_OUTPUT, 1),
#endif
#if defined(TP_OUTPUT2_RANK)
    META(TP_OUTPUT, 2),
#endif
#if defined(TP_OUTPUT3_RANK)
    META(TP_OUTPUT, 3),
#endif
};

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* Inputs are staged here: the arena planner may overlay the model's input tensors with later
   activations, so a second run on the same input needs a fresh copy. */
#define STAGE_BYTES(P, N) (P##N##_BYTES)
static uint8_t stage0[STAGE_BYTES(TP_INPUT, 0)];
#if defined(TP_INPUT1_RANK)
static uint8_t stage1[STAGE_BYTES(TP_INPUT, 1)];
#endif
#if defined(TP_INPUT2_RANK)
static uint8_t stage2[STAGE_BYTES(TP_INPUT, 2)];
#endif
#if defined(TP_INPUT3_RANK)
static uint8_t stage3[STAGE_BYTES(TP_INPUT, 3)];
#endif
static uint8_t *const stages[] = {
    stage0,
#if defined(TP_INPUT1_RANK)
    stage1,
#endif
#if defined(TP_INPUT2_RANK)
    stage2,
#endif
#if defined(TP_INPUT3_RANK)
    stage3,
#endif
};

/* The exporter's TP_TYPE_* codes are its own public API; map each one explicitly. */
static int protocol_dtype(int tp_type) {
    switch (tp_type) {
        case TP_TYPE_FLOAT32: return INFER_DTYPE_FLOAT32;
        case TP_TYPE_INT32: return INFER_DTYPE_INT32;
        case TP_TYPE_UINT8: return INFER_DTYPE_UINT8;
        case TP_TYPE_INT16: return INFER_DTYPE_INT16;
        case TP_TYPE_INT8: return INFER_DTYPE_INT8;
        default: return -1;
    }
}

int infer_init(void) {
    for (int i = 0; i < COUNT(in_meta); i++)
        if (protocol_dtype(in_meta[i].tp_type) < 0) return INFER_ERR_IO_TYPE;
    for (int i = 0; i < COUNT(out_meta); i++)
        if (protocol_dtype(out_meta[i].tp_type) < 0) return INFER_ERR_IO_TYPE;
    return tp_init();
}

/* A float input the model quantizes as it is written (TP_INPUTn_QUANTIZED) has no float
   buffer in the arena: it goes through tp_input_write. */
#if defined(TP_INPUT0_QUANTIZED) || defined(TP_INPUT1_QUANTIZED) || \
    defined(TP_INPUT2_QUANTIZED) || defined(TP_INPUT3_QUANTIZED)
int infer_prepare(void) {
    for (int i = 0; i < infer_num_inputs(); i++)
        if (tp_input_write(i, 0, stages[i], tp_input_bytes(i)) != 0) return -1;
    return 0;
}
#else
int infer_prepare(void) {
    for (int i = 0; i < infer_num_inputs(); i++)
        memcpy(tp_input(i), stages[i], tp_input_bytes(i));
    return 0;
}
#endif

int infer_run(void) { return tp_invoke(); }
int infer_num_inputs(void) { return tp_num_inputs() < COUNT(in_meta) ? tp_num_inputs() : COUNT(in_meta); }
int infer_num_outputs(void) {
    return tp_num_outputs() < COUNT(out_meta) ? tp_num_outputs() : COUNT(out_meta);
}
uint8_t *infer_input(int i) { return i >= 0 && i < infer_num_inputs() ? stages[i] : NULL; }
const uint8_t *infer_output(int i) { return (const uint8_t *)tp_output(i); }

static int fill(const io_meta_t *m, uint32_t bytes, infer_tensor_t *t) {
    int dtype = protocol_dtype(m->tp_type);
    if (dtype < 0) return -1;
    memset(t, 0, sizeof(*t));
    t->dtype = (uint8_t)dtype;
    t->rank = m->rank > INFER_MAX_RANK ? INFER_MAX_RANK : m->rank;
    memcpy(t->dims, m->dims, sizeof(int32_t) * t->rank);
    t->scale = m->scale;
    t->zero_point = m->zero_point;
    t->bytes = bytes;
    return 0;
}

int infer_input_info(int i, infer_tensor_t *t) {
    if (i < 0 || i >= infer_num_inputs()) return -1;
    return fill(&in_meta[i], (uint32_t)tp_input_bytes(i), t);
}

int infer_output_info(int i, infer_tensor_t *t) {
    if (i < 0 || i >= infer_num_outputs()) return -1;
    return fill(&out_meta[i], (uint32_t)tp_output_bytes(i), t);
}

const char *infer_backend(void) { return "aot"; }
const char *infer_model_hash(void) { return TP_MODEL_HASH; }
uint32_t infer_arena_bytes(void) { return (uint32_t)TP_ARENA_BYTES; }
