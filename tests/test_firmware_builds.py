"""Offline PlatformIO builds of the envs the HIL suite does not run: renode-f407.

(qemu-m4, qemu-m7 and qemu-m55 are built and run by `pytest hil_tests` in `make test`.)
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

from pipeline.boards import board

pytestmark = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                                reason="arm-none-eabi-gcc not installed")


def test_renode_f407_builds_offline_for_the_stm32f407(tmp_path: Path) -> None:
    from elftools.elf.elffile import ELFFile

    from pipeline.hil.build import build_firmware

    spec = board("renode-f407")
    elf = build_firmware("renode-f407", None, out=tmp_path)
    with elf.open("rb") as f:
        e = ELFFile(f)
        sections = {s.name: s for s in e.iter_sections()}
        assert e["e_machine"] == "EM_ARM"
        # vectors at the STM32's flash, the stack in the 64 KB CCM (f407.ld)
        assert sections[".vectors"]["sh_addr"] == 0x0800_0000
        syms = e.get_section_by_name(".symtab")
        top = syms.get_symbol_by_name("__stack_top")[0]["st_value"]
        assert 0x1000_0000 < top <= 0x1001_0000
        flash = sum(s["sh_size"] for n, s in sections.items()
                    if n in (".vectors", ".text", ".rodata", ".data"))
        assert flash < spec.flash_bytes
    image = elf.read_bytes()
    assert b"renode-f407\0" in image  # HELLO's board name: the env, from the build
    # the registry's clock reached the compiler (F_CPU, a literal in the port's clock code)
    assert struct.pack("<I", spec.cpu_hz) in image
