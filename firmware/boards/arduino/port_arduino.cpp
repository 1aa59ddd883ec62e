// Port for Arduino-framework boards (esp32dev, esp32-s3-devkitc-1, nucleo_f746zg, nano33ble,
// pico): Serial for the link, a cycle counter where the core has one, micros() otherwise.
// Built by the real-board envs in platformio.ini (they need the PlatformIO registry once).
#include <Arduino.h>

#include "../../src/app.h"
#include "../../src/port.h"

#if defined(ARDUINO_ARCH_ESP32)
#include <esp_system.h>
#endif

#ifndef TP_BOARD_NAME
#define TP_BOARD_NAME "arduino"
#endif
#ifndef TP_DEFAULT_BAUD
#define TP_DEFAULT_BAUD 115200
#endif
#ifndef TP_MAX_BAUD
#define TP_MAX_BAUD 921600
#endif

// Cortex-M3/M4/M7/M33/M55 have a DWT cycle counter; M0+ (RP2040) does not.
#if !defined(ARDUINO_ARCH_ESP32) && (defined(__ARM_ARCH_7M__) || defined(__ARM_ARCH_7EM__) || \
                                     defined(__ARM_ARCH_8M_MAIN__) || defined(__ARM_ARCH_8_1M_MAIN__))
#define TP_HAVE_DWT 1
#define REG32(a) (*(volatile uint32_t *)(a))
#define DEMCR REG32(0xE000EDFCu)
#define DWT_CTRL REG32(0xE0001000u)
#define DWT_CYCCNT REG32(0xE0001004u)
#define DWT_LAR REG32(0xE0001FB0u)
#endif

static uint32_t baud = TP_DEFAULT_BAUD;
static uint8_t reason = PORT_RESET_UNKNOWN;

static uint8_t read_reset_reason(void) {
#if defined(ARDUINO_ARCH_ESP32)
    switch (esp_reset_reason()) {
        case ESP_RST_POWERON: return PORT_RESET_POWER_ON;
        case ESP_RST_SW: return PORT_RESET_SOFTWARE;
        case ESP_RST_PANIC: return PORT_RESET_FAULT;
        case ESP_RST_INT_WDT:
        case ESP_RST_TASK_WDT:
        case ESP_RST_WDT: return PORT_RESET_WATCHDOG;
        case ESP_RST_BROWNOUT: return PORT_RESET_BROWNOUT;
        case ESP_RST_EXT: return PORT_RESET_PIN;
        default: return PORT_RESET_UNKNOWN;
    }
#else
    return PORT_RESET_UNKNOWN;
#endif
}

extern "C" {

void port_init(void) {
    reason = read_reset_reason();
    Serial.begin(baud);
    uint32_t t0 = millis();
    while (!Serial && millis() - t0 < 3000) {  // USB CDC boards: wait for the host a little
    }
#if defined(TP_HAVE_DWT)
    DEMCR |= 1u << 24;     // TRCENA
    DWT_LAR = 0xC5ACCE55u; // unlock (Cortex-M7)
    DWT_CYCCNT = 0;
    DWT_CTRL |= 1u;        // CYCCNTENA
#endif
}

uint8_t port_reset_reason(void) { return reason; }

int port_uart_read(void) { return Serial.available() > 0 ? Serial.read() : -1; }

void port_idle(void) { yield(); }

void port_uart_write(const uint8_t *buf, size_t n) {
    while (n) {
        size_t k = Serial.write(buf, n);
        buf += k;
        n -= k;
        if (!k) yield();
    }
}

void port_uart_flush(void) { Serial.flush(); }
uint32_t port_uart_baud(void) { return baud; }
uint32_t port_uart_max_baud(void) { return TP_MAX_BAUD; }

int port_uart_set_baud(uint32_t b) {
    if (b == 0 || b > TP_MAX_BAUD) return -1;
    Serial.flush();
#if defined(ARDUINO_ARCH_ESP32)
    Serial.updateBaudRate(b);
#else
    Serial.end();
    Serial.begin(b);
#endif
    baud = b;
    return 0;
}

uint32_t port_counter(void) {
#if defined(ARDUINO_ARCH_ESP32)
    return ESP.getCycleCount();
#elif defined(TP_HAVE_DWT)
    return DWT_CYCCNT;
#else
    return micros();
#endif
}

uint8_t port_counter_kind(void) {
#if defined(ARDUINO_ARCH_ESP32) || defined(TP_HAVE_DWT)
    return PORT_COUNTER_CYCLES;
#else
    return PORT_COUNTER_MICROS;
#endif
}

uint32_t port_millis(void) { return millis(); }
const char *port_board_name(void) { return TP_BOARD_NAME; }

uint32_t port_cpu_hz(void) {
#if defined(ARDUINO_ARCH_ESP32)
    return getCpuFrequencyMhz() * 1000000u;
#elif defined(F_CPU)
    return (uint32_t)F_CPU;
#else
    return 0;
#endif
}

void port_reset(void) {
#if defined(ARDUINO_ARCH_ESP32)
    esp_restart();
#else
    __asm volatile("dsb");
    *(volatile uint32_t *)0xE000ED0Cu = (0x5FAu << 16) | (1u << 2);  // SYSRESETREQ
    for (;;) {
    }
#endif
}

}  // extern "C"

// A `tinypipe init` project has its own setup()/loop() in src/ (it defines TP_USER_MAIN).
#ifndef TP_USER_MAIN
void setup() { app_setup(); }

void loop() { app_loop(); }
#endif
