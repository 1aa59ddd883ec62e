/* Bare-metal port for the STM32F4 Discovery (STM32F407VG), also run under Renode.
   Link: USART2 on PA2 (TX) / PA3 (RX), AF7, 8N1. Counter: DWT CYCCNT (core cycles); where
   CYCCNT does not run (an emulator without a DWT model), TIM2 counting microseconds.
   Clock: HSE 8 MHz -> PLL -> F_CPU (APB1 F_CPU / 4). Every wait for a hardware flag is bounded:
   if the crystal or the PLL never report ready, the port stays on the 16 MHz HSI and says so
   through port_cpu_hz(), so a board (or an emulator) that models RCC loosely still talks. */
#include <stdint.h>

#include "../../src/port.h"
#include "../cortex_m/cortex_m.h"

#define RCC 0x40023800u
#define RCC_CR CM_REG(RCC + 0x00)
#define RCC_PLLCFGR CM_REG(RCC + 0x04)
#define RCC_CFGR CM_REG(RCC + 0x08)
#define RCC_AHB1ENR CM_REG(RCC + 0x30)
#define RCC_APB1ENR CM_REG(RCC + 0x40)
#define RCC_CSR CM_REG(RCC + 0x74)
#define FLASH_ACR CM_REG(0x40023C00u)

#define GPIOA 0x40020000u
#define GPIOA_MODER CM_REG(GPIOA + 0x00)
#define GPIOA_AFRL CM_REG(GPIOA + 0x20)

#define USART2 0x40004400u
#define USART_SR CM_REG(USART2 + 0x00)
#define USART_DR CM_REG(USART2 + 0x04)
#define USART_BRR CM_REG(USART2 + 0x08)
#define USART_CR1 CM_REG(USART2 + 0x0C)
#define SR_RXNE (1u << 5)
#define SR_TC (1u << 6)
#define SR_TXE (1u << 7)
#define SR_ERRORS 0x0Fu /* PE FE NE ORE: cleared by reading SR then DR */
#define CR1_UE (1u << 13)
#define CR1_TE (1u << 3)
#define CR1_RE (1u << 2)

#define DEMCR CM_REG(0xE000EDFCu)
#define DWT_CTRL CM_REG(0xE0001000u)
#define DWT_CYCCNT CM_REG(0xE0001004u)
#define DWT_LAR CM_REG(0xE0001FB0u)

#define TIM2 0x40000000u
#define TIM2_CR1 CM_REG(TIM2 + 0x00)
#define TIM2_EGR CM_REG(TIM2 + 0x14)
#define TIM2_CNT CM_REG(TIM2 + 0x24)
#define TIM2_PSC CM_REG(TIM2 + 0x28)
#define TIM2_ARR CM_REG(TIM2 + 0x2C)

#define HSI_HZ 16000000u
#define PLL_HZ ((uint32_t)F_CPU) /* the core clock, from the board registry via the build */
/* PLL from the 8 MHz HSE: /M8 = 1 MHz in, xN, /P2 = PLL_HZ; /Q = 48 MHz for USB. */
#define PLL_N (2u * PLL_HZ / 1000000u)
#define PLL_Q (PLL_N / 48u)
#define SPIN_LIMIT 200000u

static uint32_t cpu_hz = HSI_HZ;
static uint32_t apb1_hz = HSI_HZ;
static uint32_t tim_hz = HSI_HZ; /* APB1 timer clock: 2 x APB1 when APB1 is divided */
static int use_dwt;
static uint32_t baud = 115200;
static uint8_t reason;

static int wait_set(volatile uint32_t *reg, uint32_t mask, uint32_t want) {
    for (uint32_t i = 0; i < SPIN_LIMIT; i++) {
        if ((*reg & mask) == want) return 1;
    }
    return 0;
}

static void clock_init(void) {
    RCC_CR |= 1u << 16; /* HSEON */
    if (!wait_set(&RCC_CR, 1u << 17, 1u << 17)) return; /* HSERDY */
    RCC_PLLCFGR = 8u | (PLL_N << 6) | (0u << 16) | (1u << 22) | (PLL_Q << 24); /* src HSE */
    RCC_CR |= 1u << 24; /* PLLON */
    if (!wait_set(&RCC_CR, 1u << 25, 1u << 25)) return; /* PLLRDY */
    FLASH_ACR = 5u | (1u << 8) | (1u << 9) | (1u << 10); /* 5 WS, prefetch, I- and D-cache */
    /* AHB /1, APB1 /4, APB2 /2, then switch SYSCLK to the PLL. */
    RCC_CFGR = (RCC_CFGR & ~0xFCF3u) | (5u << 10) | (4u << 13) | 2u;
    if (!wait_set(&RCC_CFGR, 0xCu, 0x8u)) return; /* SWS = PLL */
    cpu_hz = PLL_HZ;
    apb1_hz = PLL_HZ / 4u;
    tim_hz = 2u * apb1_hz;
}

static void counter_init(void) {
    DEMCR |= 1u << 24; /* TRCENA */
    DWT_LAR = 0xC5ACCE55u;
    DWT_CYCCNT = 0;
    DWT_CTRL |= 1u; /* CYCCNTENA */
    uint32_t before = DWT_CYCCNT;
    for (volatile int i = 0; i < 32; i++) {
    }
    use_dwt = DWT_CYCCNT != before;
    if (use_dwt) return;
    RCC_APB1ENR |= 1u << 0; /* TIM2: 32-bit, free-running at 1 MHz */
    TIM2_CR1 = 0;
    TIM2_PSC = tim_hz / 1000000u - 1u;
    TIM2_ARR = 0xFFFFFFFFu;
    TIM2_EGR = 1u; /* UG: load the prescaler now */
    TIM2_CR1 = 1u; /* CEN */
}

static uint8_t read_reset_reason(void) {
    uint32_t csr = RCC_CSR;
    RCC_CSR = csr | (1u << 24); /* RMVF: clear the flags for next time */
    if (csr & (1u << 25)) return PORT_RESET_BROWNOUT; /* BORRSTF */
    if (csr & (1u << 27)) return PORT_RESET_POWER_ON; /* PORRSTF */
    if (csr & ((1u << 29) | (1u << 30))) return PORT_RESET_WATCHDOG;
    if (csr & (1u << 28)) return PORT_RESET_SOFTWARE; /* SFTRSTF */
    if (csr & (1u << 26)) return PORT_RESET_PIN;
    return PORT_RESET_UNKNOWN;
}

void port_init(void) {
    reason = cm_take_reset_reason();
    uint8_t hw = read_reset_reason();
    if (reason == PORT_RESET_POWER_ON && hw != PORT_RESET_UNKNOWN) reason = hw;
    clock_init();
    RCC_AHB1ENR |= 1u << 0;  /* GPIOA */
    RCC_APB1ENR |= 1u << 17; /* USART2 */
    GPIOA_MODER = (GPIOA_MODER & ~(0xFu << 4)) | (0xAu << 4);      /* PA2, PA3: alternate */
    GPIOA_AFRL = (GPIOA_AFRL & ~(0xFFu << 8)) | (0x77u << 8);      /* AF7 = USART2 */
    USART_CR1 = 0;
    USART_BRR = (apb1_hz + baud / 2u) / baud; /* oversampling by 16: BRR = f / baud */
    USART_CR1 = CR1_UE | CR1_TE | CR1_RE;
    counter_init();
}

uint8_t port_reset_reason(void) { return reason; }

/* USART2's receiver holds one byte and is polled: what arrives while the app sends is lost. */
int port_uart_pipelined(void) { return 0; }

int port_uart_read(void) {
    uint32_t sr = USART_SR;
    if (sr & SR_RXNE) return (int)(USART_DR & 0xFFu);
    if (sr & SR_ERRORS) (void)USART_DR; /* drop the bad byte, clear the error */
    return -1;
}

/* Busy-polls: the link is the only job, and no WFI keeps emulators' UART forwarding simple. */
void port_idle(void) {}

void port_uart_write(const uint8_t *buf, size_t n) {
    while (n--) {
        while (!(USART_SR & SR_TXE)) {
        }
        USART_DR = *buf++;
    }
}

void port_uart_flush(void) {
    for (uint32_t i = 0; i < SPIN_LIMIT && !(USART_SR & SR_TC); i++) {
    }
}

uint32_t port_uart_baud(void) { return baud; }
uint32_t port_uart_max_baud(void) { return apb1_hz / 16u; }

int port_uart_set_baud(uint32_t b) {
    if (b == 0 || b > port_uart_max_baud()) return -1;
    port_uart_flush();
    baud = b;
    USART_CR1 = 0;
    USART_BRR = (apb1_hz + b / 2u) / b;
    USART_CR1 = CR1_UE | CR1_TE | CR1_RE;
    return 0;
}

uint32_t port_counter(void) { return use_dwt ? DWT_CYCCNT : TIM2_CNT; }
uint8_t port_counter_kind(void) { return use_dwt ? PORT_COUNTER_CYCLES : PORT_COUNTER_MICROS; }

uint32_t port_millis(void) { return cm_millis(port_counter(), use_dwt ? cpu_hz / 1000u : 1000u); }

const char *port_board_name(void) { return TP_BOARD_NAME; }
uint32_t port_cpu_hz(void) { return cpu_hz; }

void port_reset(void) {
    cm_set_next_reset_reason(PORT_RESET_SOFTWARE);
    cm_system_reset();
}
