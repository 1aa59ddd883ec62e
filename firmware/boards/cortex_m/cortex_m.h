/* The few Cortex-M system registers the QEMU ports touch, and a reset-reason cell. */
#ifndef TP_CORTEX_M_H
#define TP_CORTEX_M_H

#include <stdint.h>

#define CM_REG(a) (*(volatile uint32_t *)(a))
#define CM_SCB_CPACR CM_REG(0xE000ED88u)
#define CM_SCB_AIRCR CM_REG(0xE000ED0Cu)
#define CM_SCB_ICSR CM_REG(0xE000ED04u)
#define CM_SYST_CSR CM_REG(0xE000E010u)
#define CM_SYST_RVR CM_REG(0xE000E014u)
#define CM_SYST_CVR CM_REG(0xE000E018u)
#define CM_NVIC_ISER(n) CM_REG(0xE000E100u + 4u * (n))
#define CM_NVIC_ICPR(n) CM_REG(0xE000E280u + 4u * (n))

/* Survives a warm reset: lives in .noinit, guarded by a magic value. */
void cm_set_next_reset_reason(uint8_t reason);
uint8_t cm_take_reset_reason(void); /* PORT_RESET_POWER_ON if nothing was recorded */
void cm_system_reset(void);
void cm_fault_reset(void);
/* Sleep (WFI with interrupts masked, so no handler runs) until IRQ `irq` is pending or
   `ticks` core clocks pass. Under QEMU -icount the virtual clock follows real time while the
   core sleeps, so timeouts measured in virtual time stay sane. */
void cm_sleep_until_irq(unsigned irq, uint32_t ticks);
void cm_nvic_enable(unsigned irq);
void cm_nvic_clear(unsigned irq);

/* Milliseconds since boot from a free-running 32-bit up-counter read as `now`, advancing
   `per_ms` counts per millisecond; call at least once per counter wrap. */
uint32_t cm_millis(uint32_t now, uint32_t per_ms);

#endif
