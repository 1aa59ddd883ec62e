/* Bare-metal entry point for the QEMU boards. */
#include "../../src/app.h"

int main(void) {
    app_setup();
    for (;;) app_loop();
}
