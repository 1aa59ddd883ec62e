/* QEMU benchmark / test harness: reads in.bin through semihosting, runs the model on every
 * sample, writes the outputs to out.bin and the port's counter (instructions under QEMU
 * -icount) to ticks.bin. Linked with the firmware's own start-up code, linker script and board
 * port, so it reads exactly the counter the HIL firmware reports.
 *
 * in.bin: uint32 sample count, then the inputs of every sample back to back.
 * ticks.bin: per sample one uint64 total; with TP_PROFILE also one uint64 per op.
 */
#include <stdint.h>
#include <string.h>

#include "../src/port.h"
#include "tp_model.h"

static int semi(int op, void *arg) {
  register int r0 __asm("r0") = op;
  register void *r1 __asm("r1") = arg;
  __asm volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

static void tb_exit(int code) {
  /* SYS_EXIT: ADP_Stopped_ApplicationExit (0x20026) ends QEMU with status 0, else 1. */
  semi(0x18, (void *)(uintptr_t)(code == 0 ? 0x20026u : 0x20023u));
  for (;;) {
  }
}

static int sopen(const char *name, int mode) {
  uint32_t a[3];
  a[0] = (uint32_t)(uintptr_t)name;
  a[1] = (uint32_t)mode; /* 1 = "rb", 5 = "wb" */
  a[2] = (uint32_t)strlen(name);
  return semi(0x01, a);
}

static int sio(int op, int fd, const void *buf, uint32_t n) {
  uint32_t a[3];
  a[0] = (uint32_t)fd;
  a[1] = (uint32_t)(uintptr_t)buf;
  a[2] = n;
  return semi(op, a); /* bytes NOT transferred */
}

static void say(const char *s) { semi(0x04, (void *)s); }

/* A fault ends the run with status 1 instead of the firmware's reset-and-retry. */
void cm_fault_reset(void) {
  say("tb: fault\n");
  tb_exit(99);
}

#ifdef TP_PROFILE
static uint32_t prof_t[TP_NUM_OPS + 1];
static int prof_n;
void tp_profile_hook(int op_index) {
  (void)op_index;
  if (prof_n <= TP_NUM_OPS) prof_t[prof_n++] = port_counter();
}
#endif

static int run(void) {
  uint32_t n = 0, s;
  int i, fi, fo, ft;
  port_init();
  if (tp_init() != 0) return 3;
  fi = sopen("in.bin", 1);
  fo = sopen("out.bin", 5);
  ft = sopen("ticks.bin", 5);
  if (fi < 0 || fo < 0 || ft < 0) {
    say("tb: cannot open in.bin/out.bin/ticks.bin\n");
    return 4;
  }
  if (sio(0x06, fi, &n, 4) != 0) return 5;
  for (s = 0; s < n; ++s) {
    uint32_t t0;
    uint64_t t1;
    for (i = 0; i < tp_num_inputs(); ++i) {
      /* Through tp_input_write: a float input may be quantized as it is written. */
      static uint8_t chunk[512];
      uint32_t off = 0, m;
      while (off < (uint32_t)tp_input_bytes(i)) {
        m = (uint32_t)tp_input_bytes(i) - off;
        m = m < sizeof chunk ? m : (uint32_t)sizeof chunk;
        if (sio(0x06, fi, chunk, m) != 0 || tp_input_write(i, off, chunk, m) != 0) {
          say("tb: short read\n");
          return 6;
        }
        off += m;
      }
    }
#ifdef TP_PROFILE
    prof_n = 0;
#endif
    t0 = port_counter();
    if (tp_invoke() != 0) return 7;
    t1 = (uint32_t)(port_counter() - t0);
    for (i = 0; i < tp_num_outputs(); ++i) {
      if (sio(0x05, fo, tp_output(i), (uint32_t)tp_output_bytes(i)) != 0) return 8;
    }
    if (sio(0x05, ft, &t1, 8) != 0) return 8;
#ifdef TP_PROFILE
    for (i = 0; i <= TP_NUM_OPS; ++i) {
      uint64_t d = i < prof_n ? (uint32_t)(prof_t[i] - t0) : 0;
      if (sio(0x05, ft, &d, 8) != 0) return 8;
    }
#endif
  }
  semi(0x02, &fi);
  return 0;
}

int main(void) {
  tb_exit(run());
  return 0;
}
