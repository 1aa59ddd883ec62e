*** Comments ***
Boot the tinypipe firmware on the emulated STM32F4 Discovery and check the link handshake:
the BOOT frame the device sends once at start, then a HELLO answered with HELLO|0x80.
Build first:  pio run -e renode-f407
Run:          renode-test firmware/renode/hello.robot
Other ELF:    renode-test --variable ELF:/path/to/firmware.elf firmware/renode/hello.robot

*** Variables ***
${ELF}              ${CURDIR}/../../.pio/build/renode-f407/program.elf
${UART}             sysbus.usart2
${PORT}             3456
# Frame header: A5 5A type seq len(LE16) hcrc; see docs/protocol.md.
${BOOT_HEADER}      A5 5A 70 00 06 00
@{HELLO_FRAME}      0xA5    0x5A    0x01    0x01    0x00    0x00    0x7D    0x49    0xB4    0x4A    0x6D
${HELLO_ANSWER}     A5 5A 81 01

*** Keywords ***
Start Board
    Execute Command             $elf=@${ELF}
    Execute Command             $port=${PORT}
    Execute Command             include @${CURDIR}/stm32f4_discovery.resc
    Create Terminal Tester      ${UART}    binaryMode=true    defaultPauseEmulation=true
    Start Emulation

Send Frame
    [Arguments]    @{bytes}
    FOR    ${b}    IN    @{bytes}
        Send Key To Uart    ${b}
    END

*** Test Cases ***
Should Boot And Answer HELLO
    Start Board
    Wait For Bytes On Uart      ${BOOT_HEADER}    timeout=10
    Send Frame                  @{HELLO_FRAME}
    Wait For Bytes On Uart      ${HELLO_ANSWER}    timeout=10
