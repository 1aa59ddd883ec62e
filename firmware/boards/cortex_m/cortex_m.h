/* The few Cortex-M system registers the QEMU ports touch, and a reset-reason cell. */
#ifndef TP_CORTEX_M_H
#define TP_CORTEX_M_H

#include <stdint.h>

#define CM_REG(a) (*(volatile uint32_t *)(a))
#define CM_SCB_CPACR CM_REG(0xE000ED88u)
#define CM_SCB_AIRCR CM_REG(0xE000ED0Cu)

/* Survives a warm reset: lives in .noinit, guarded by a magic value. */
void cm_set_next_reset_reason(uint8_t reason);
uint8_t cm_take_reset_reason(void); /* PORT_RESET_POWER_ON if nothing was recorded */
void cm_system_reset(void);
void cm_fault_reset(void);

#endif
