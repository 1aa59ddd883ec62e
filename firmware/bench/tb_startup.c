/* Bare-metal start-up for the QEMU benchmark harness: vectors, .data/.bss, FPU, SysTick count. */
#include <stdint.h>

extern uint32_t __data_load, __data_start, __data_end, __bss_start, __bss_end, __stack_top;
extern int main(void);
void tb_exit(int code);

volatile uint32_t tb_systick_wraps;

#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)

void tb_reset(void);
void tb_fault(void);
void tb_systick(void);

void tb_reset(void) {
  uint32_t *src = &__data_load, *dst = &__data_start;
  while (dst < &__data_end) *dst++ = *src++;
  for (dst = &__bss_start; dst < &__bss_end;) *dst++ = 0;
#if defined(__ARM_FP)
  SCB_CPACR |= (0xFu << 20);
  __asm volatile("dsb\n isb");
#endif
  SYST_RVR = 0xFFFFFFu;
  SYST_CVR = 0;
  SYST_CSR = 7u; /* core clock, interrupt on wrap, enabled */
  tb_exit(main());
}

void tb_fault(void) { tb_exit(99); }

void tb_systick(void) { ++tb_systick_wraps; }

/* Timer ticks since reset (SysTick at the core clock, wraps counted by the interrupt). */
uint64_t tb_ticks(void) {
  uint32_t w, v;
  do {
    w = tb_systick_wraps;
    v = SYST_CVR;
  } while (w != tb_systick_wraps);
  return ((uint64_t)w << 24) + (0xFFFFFFu - v);
}

__attribute__((section(".vectors"), used)) static void (*const tb_vectors[16])(void) = {
    (void (*)(void))(&__stack_top), tb_reset, tb_fault, tb_fault, tb_fault, tb_fault, tb_fault,
    0, 0, 0, 0, tb_fault, tb_fault, 0, tb_fault, tb_systick,
};
