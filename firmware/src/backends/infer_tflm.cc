/* Inference backend over the TFLite Micro interpreter (files from `export_tflm`).

   The model folder holds model_data.cc/.h (g_model_data), op_resolver.h (ModelOpResolver and
   RegisterModelOps) and model_settings.h (kTensorArenaSize, TINYPIPE_MODEL_HASH). TFLM itself
   comes from the tree in $TFLM_DIR (see firmware/boards/tinypipe_build.py and docs/tflm.md). */
#include <stdint.h>
#include <string.h>

#include <new>

#include "../infer.h"
#include "model_data.h"
#include "model_settings.h"
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include "op_resolver.h"
#pragma GCC diagnostic pop
#pragma GCC diagnostic push  // TFLM headers are not -Wextra clean
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"
#pragma GCC diagnostic pop

namespace {

constexpr size_t type_bytes(TfLiteType t) {
    return t == kTfLiteFloat32 || t == kTfLiteInt32 ? 4 : t == kTfLiteInt16 ? 2 : 1;
}

/* Inputs are staged outside the arena: the memory planner may overlay the input tensors with
   later activations, so every run gets a fresh copy (see infer.h). Room for input 0, rounded
   up to the 16-byte slots infer_init hands out, by default; models with more inputs set
   TINYPIPE_STAGE_BYTES. */
#ifndef TINYPIPE_STAGE_BYTES
#define TINYPIPE_STAGE_BYTES ((kInputElements * type_bytes(TINYPIPE_INPUT_TYPE) + 15u) & ~15u)
#endif
constexpr int kMaxIo = 4;

/* kTensorArenaSize is measured with the reference kernels; optimised kernels (CMSIS-NN) ask
   for scratch buffers on top, so their builds reserve TINYPIPE_ARENA_EXTRA more. */
#ifndef TINYPIPE_ARENA_EXTRA
#define TINYPIPE_ARENA_EXTRA 0
#endif

alignas(16) uint8_t arena[kTensorArenaSize + TINYPIPE_ARENA_EXTRA];
alignas(16) uint8_t stage[TINYPIPE_STAGE_BYTES];
alignas(ModelOpResolver) uint8_t resolver_mem[sizeof(ModelOpResolver)];
alignas(tflite::MicroInterpreter) uint8_t interp_mem[sizeof(tflite::MicroInterpreter)];

tflite::MicroInterpreter *interp = nullptr;
uint8_t *stages[kMaxIo];
int n_in, n_out;

int fill(const TfLiteTensor *x, infer_tensor_t *t) {
    if (x == nullptr) return -1;
    memset(t, 0, sizeof(*t));
    t->dtype = (uint8_t)x->type;
    int rank = x->dims ? x->dims->size : 0;
    t->rank = (uint8_t)(rank > INFER_MAX_RANK ? INFER_MAX_RANK : rank);
    for (int d = 0; d < t->rank; d++) t->dims[d] = x->dims->data[d];
    t->scale = x->params.scale;
    t->zero_point = x->params.zero_point;
    t->bytes = (uint32_t)x->bytes;
    return 0;
}

}  // namespace

extern "C" {

int infer_init(void) {
    if (interp != nullptr) return 0;
    const tflite::Model *model = tflite::GetModel(g_model_data);
    if (model->version() != TFLITE_SCHEMA_VERSION) return 1;
    auto *resolver = new (resolver_mem) ModelOpResolver();
    if (RegisterModelOps(*resolver) != kTfLiteOk) return 2;
    auto *it = new (interp_mem) tflite::MicroInterpreter(model, *resolver, arena, sizeof(arena));
    if (it->AllocateTensors() != kTfLiteOk) return 3;  /* usually: arena too small */
    int ni = (int)it->inputs_size(), no = (int)it->outputs_size();
    if (ni > kMaxIo || no > kMaxIo) return 4;
    size_t used = 0;
    for (int i = 0; i < ni; i++) {
        size_t bytes = (it->input(i)->bytes + 15u) & ~(size_t)15u;
        if (used + bytes > sizeof(stage)) return 5;  /* raise TINYPIPE_STAGE_BYTES */
        stages[i] = stage + used;
        used += bytes;
    }
    n_in = ni;
    n_out = no;
    interp = it;
    return 0;
}

int infer_prepare(void) {
    if (interp == nullptr) return -1;
    for (int i = 0; i < n_in; i++) {
        TfLiteTensor *x = interp->input(i);
        memcpy(x->data.raw, stages[i], x->bytes);
    }
    return 0;
}

int infer_run(void) {
    if (interp == nullptr) return -1;
    return interp->Invoke() == kTfLiteOk ? 0 : 1;
}

int infer_num_inputs(void) { return n_in; }
int infer_num_outputs(void) { return n_out; }
uint8_t *infer_input(int i) { return i >= 0 && i < n_in ? stages[i] : nullptr; }

const uint8_t *infer_output(int i) {
    if (i < 0 || i >= n_out) return nullptr;
    return reinterpret_cast<const uint8_t *>(interp->output(i)->data.raw);
}

int infer_input_info(int i, infer_tensor_t *t) {
    if (i < 0 || i >= n_in) return -1;
    return fill(interp->input(i), t);
}

int infer_output_info(int i, infer_tensor_t *t) {
    if (i < 0 || i >= n_out) return -1;
    return fill(interp->output(i), t);
}

/* "tflm" plus the kernel library, so HELLO tells which kernels produced the numbers. */
const char *infer_backend(void) {
#if defined(TINYPIPE_TFLM_LIB_NAME)  // TFLM from a board library, named by the build script
    return TINYPIPE_TFLM_LIB_NAME;
#elif defined(CMSIS_NN)
    return "tflm+cmsis-nn";
#else
    return "tflm-reference";
#endif
}

const char *infer_model_hash(void) { return TINYPIPE_MODEL_HASH; }

/* Bytes of the arena the interpreter actually uses (the reservation before init). */
uint32_t infer_arena_bytes(void) {
    return interp ? (uint32_t)interp->arena_used_bytes() : (uint32_t)kTensorArenaSize;
}

}  // extern "C"
