/* Warm-reset bookkeeping and SYSRESETREQ for the QEMU Cortex-M ports. */
#include "cortex_m.h"

#include "../../src/port.h"

#define RESET_MAGIC 0x7197E5E7u

__attribute__((section(".noinit"))) static volatile uint32_t reset_cell[2];

void cm_set_next_reset_reason(uint8_t reason) {
    reset_cell[0] = RESET_MAGIC;
    reset_cell[1] = reason;
}

uint8_t cm_take_reset_reason(void) {
    uint8_t r = reset_cell[0] == RESET_MAGIC ? (uint8_t)reset_cell[1] : PORT_RESET_POWER_ON;
    reset_cell[0] = 0;
    return r;
}

void cm_system_reset(void) {
    __asm volatile("dsb");
    CM_SCB_AIRCR = (0x5FAu << 16) | (1u << 2); /* VECTKEY | SYSRESETREQ */
    __asm volatile("dsb");
    for (;;) {
    }
}

/* Weak: a test harness linked with this port may end the run instead of resetting. */
__attribute__((weak)) void cm_fault_reset(void) {
    cm_set_next_reset_reason(PORT_RESET_FAULT);
    cm_system_reset();
}

void cm_sleep_until_irq(unsigned irq, uint32_t ticks) {
    CM_SYST_CSR = 0;
    CM_SYST_RVR = ticks - 1u;
    CM_SYST_CVR = 0;
    CM_SYST_CSR = 7u; /* enable, exception request, core clock */
    __asm volatile("wfi");
    CM_SYST_CSR = 0;
    CM_SCB_ICSR = 1u << 25; /* PENDSTCLR */
    cm_nvic_clear(irq);
}

void cm_nvic_enable(unsigned irq) { CM_NVIC_ISER(irq / 32u) = 1u << (irq % 32u); }

void cm_nvic_clear(unsigned irq) { CM_NVIC_ICPR(irq / 32u) = 1u << (irq % 32u); }

uint32_t cm_millis(uint32_t now, uint32_t per_ms) {
    static uint32_t last;
    static uint64_t total; /* counts since boot, immune to the 32-bit wrap */
    total += (uint32_t)(now - last);
    last = now;
    return (uint32_t)(total / per_ms);
}
