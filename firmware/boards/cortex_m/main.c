/* Bare-metal entry point for the QEMU boards. A `tinypipe init` project has its own main() in
   src/ (it defines TP_USER_MAIN). */
#include "../../src/app.h"

#ifndef TP_USER_MAIN
int main(void) {
    app_setup();
    for (;;) app_loop();
}
#endif
