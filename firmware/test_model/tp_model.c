/* A fixed int8 dense layer with requantization, enough to exercise the HIL path. */
#include "tp_model.h"

#include <stdint.h>

static int8_t in0[TP_INPUT0_BYTES];
static int8_t out0[TP_OUTPUT0_BYTES];

static const int8_t weights[4][8] = {
    {1, -2, 3, -4, 5, -6, 7, -8},
    {-1, 1, -1, 1, -1, 1, -1, 1},
    {2, 2, 2, 2, -2, -2, -2, -2},
    {0, 1, 0, 1, 0, 1, 0, 1},
};
static const int32_t bias[4] = {10, -20, 30, 0};

int tp_init(void) { return 0; }

int tp_invoke(void) {
    for (int j = 0; j < 4; j++) {
        int32_t acc = bias[j];
        for (int i = 0; i < 8; i++) acc += (in0[i] - TP_INPUT0_ZERO_POINT) * weights[j][i];
        acc = ((acc * 3) >> 3) + TP_OUTPUT0_ZERO_POINT; /* real multiplier 0.375 */
        out0[j] = (int8_t)(acc < -128 ? -128 : acc > 127 ? 127 : acc);
    }
    return 0;
}

int tp_num_inputs(void) { return 1; }
int tp_num_outputs(void) { return 1; }
void *tp_input(int i) { return i == 0 ? in0 : NULL; }
const void *tp_output(int i) { return i == 0 ? out0 : NULL; }
size_t tp_input_bytes(int i) { return i == 0 ? sizeof in0 : 0; }
size_t tp_output_bytes(int i) { return i == 0 ? sizeof out0 : 0; }
