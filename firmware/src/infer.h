/* Inference backend interface: the app talks to a model only through this. */
#ifndef TP_INFER_H
#define TP_INFER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define INFER_MAX_RANK 6

/* Element types use the TFLite TensorType codes. */
enum { INFER_FLOAT32 = 0, INFER_INT32 = 2, INFER_UINT8 = 3, INFER_INT16 = 7, INFER_INT8 = 9 };

typedef struct {
    uint8_t dtype;
    uint8_t rank;
    int32_t dims[INFER_MAX_RANK];
    float scale;
    int32_t zero_point;
    uint32_t bytes;
} infer_tensor_t;

int infer_init(void);                 /* 0 on success */
/* Copy the staged inputs (infer_input) into the model's input tensors. The model may reuse
   its input memory for activations, so this runs before every infer_run, outside the timing. */
int infer_prepare(void);
int infer_run(void);                  /* 0 on success */
int infer_num_inputs(void);
int infer_num_outputs(void);
uint8_t *infer_input(int i);          /* staging buffer, kept across runs */
const uint8_t *infer_output(int i);
int infer_input_info(int i, infer_tensor_t *t);  /* 0 on success */
int infer_output_info(int i, infer_tensor_t *t);
const char *infer_backend(void);      /* "aot", "tflm" */
/* The TFLM backend names its kernel library too: "tflm-reference" or "tflm+cmsis-nn". */
const char *infer_model_hash(void);   /* 16 hex chars of the .tflite's sha256 */
uint32_t infer_arena_bytes(void);

#ifdef __cplusplus
}
#endif
#endif
