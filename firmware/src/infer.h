/* Inference backend interface: the app talks to a model only through this. */
#ifndef TP_INFER_H
#define TP_INFER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define INFER_MAX_RANK 6

/* The element types a model input or output may have: X(name, code, bytes per element).
   The code is what the protocol sends (HELLO/TENSOR dtype byte); the values are TFLite's schema
   TensorType codes. This is the firmware's only copy of the table: backends map their own type
   enums onto it explicitly, and pipeline/hil/protocol.py holds the host's copy (a host test
   parses this header and fails when the two disagree). */
#define INFER_DTYPES(X) \
    X(FLOAT32, 0, 4)    \
    X(INT32, 2, 4)      \
    X(UINT8, 3, 1)      \
    X(INT16, 7, 2)      \
    X(INT8, 9, 1)

#define INFER_DTYPE_ENUM_(name, code, size) INFER_DTYPE_##name = code,
typedef enum { INFER_DTYPES(INFER_DTYPE_ENUM_) } infer_dtype_t;
#undef INFER_DTYPE_ENUM_

/* infer_init() results. Backends may return other positive codes for their own failures. */
enum {
    INFER_OK = 0,
    INFER_ERR_SCHEMA = 1,      /* the model's schema version is not the one compiled in */
    INFER_ERR_OPS = 2,         /* an op could not be registered */
    INFER_ERR_ALLOC = 3,       /* tensors do not fit the arena */
    INFER_ERR_IO_COUNT = 4,    /* more inputs or outputs than the backend supports */
    INFER_ERR_STAGING = 5,     /* inputs do not fit the staging buffer */
    INFER_ERR_IO_TYPE = 6      /* an input or output has a type outside INFER_DTYPES */
};

typedef struct {
    uint8_t dtype; /* infer_dtype_t */
    uint8_t rank;
    int32_t dims[INFER_MAX_RANK];
    float scale;
    int32_t zero_point;
    uint32_t bytes;
} infer_tensor_t;

int infer_init(void);                 /* INFER_OK (0) on success */
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
