/* Hand-written stand-in for an AOT export: one int8 dense layer, 8 inputs -> 4 outputs.
   Implements the same interface as `tinypipe export` (pipeline.aot.export_aot). */
#ifndef TP_MODEL_H
#define TP_MODEL_H

#include <stddef.h>

#define TP_MODEL_HASH "7e57000000000000"
#define TP_ARENA_BYTES 32
#define TP_NUM_INPUTS 1
#define TP_NUM_OUTPUTS 1

/* Element types (TFLite TensorType codes), as the exporter writes them. */
#define TP_TYPE_FLOAT32 0
#define TP_TYPE_INT32 2
#define TP_TYPE_UINT8 3
#define TP_TYPE_INT16 7
#define TP_TYPE_INT8 9

#define TP_INPUT0_RANK 2
#define TP_INPUT0_SHAPE {1, 8}
#define TP_INPUT0_TYPE TP_TYPE_INT8
#define TP_INPUT0_SCALE 0.5f
#define TP_INPUT0_ZERO_POINT (-3)
#define TP_INPUT0_BYTES 8

#define TP_OUTPUT0_RANK 2
#define TP_OUTPUT0_SHAPE {1, 4}
#define TP_OUTPUT0_TYPE TP_TYPE_INT8
#define TP_OUTPUT0_SCALE 0.25f
#define TP_OUTPUT0_ZERO_POINT 5
#define TP_OUTPUT0_BYTES 4

int tp_init(void);
int tp_invoke(void);
int tp_num_inputs(void);
int tp_num_outputs(void);
void *tp_input(int i);
const void *tp_output(int i);
size_t tp_input_bytes(int i);
size_t tp_output_bytes(int i);

#endif
