/* Controls of the fuzzing port. */
#ifndef TP_FAKE_PORT_H
#define TP_FAKE_PORT_H

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>

#include "port.h"

extern jmp_buf fake_reset_jmp;
void fake_port_feed(const uint8_t *data, size_t n);
size_t fake_port_left(void);
void fake_port_tick(uint32_t ms);

#endif
