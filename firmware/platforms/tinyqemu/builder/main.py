"""SCons build script for tinyqemu: bare-metal Cortex-M with the system arm-none-eabi-gcc."""

import os
import shutil
import sys

from SCons.Script import AlwaysBuild, Default, DefaultEnvironment

env = DefaultEnvironment()
board = env.BoardConfig()

prefix = env.GetProjectOption("custom_toolchain_prefix", "arm-none-eabi-")
if not shutil.which(prefix + "gcc"):
    sys.stderr.write(
        f"Error: {prefix}gcc not found on PATH (Debian: apt-get install gcc-arm-none-eabi "
        "libnewlib-arm-none-eabi)\n"
    )
    env.Exit(1)

cpu = board.get("build.cpu")
machine_flags = ["-mthumb", f"-mcpu={cpu}"]
fpu = board.get("build.fpu", "")
if fpu:
    machine_flags += [f"-mfpu={fpu}", "-mfloat-abi={}".format(board.get("build.float_abi", "hard"))]
else:
    machine_flags += ["-mfloat-abi={}".format(board.get("build.float_abi", "soft"))]

env.Replace(
    AR=prefix + "gcc-ar",
    AS=prefix + "as",
    CC=prefix + "gcc",
    CXX=prefix + "g++",
    GDB=prefix + "gdb",
    OBJCOPY=prefix + "objcopy",
    RANLIB=prefix + "gcc-ranlib",
    SIZETOOL=prefix + "size",
    SIZEPROGREGEXP=r"^(?:\.text|\.rodata|\.data|\.vectors)\s+(\d+).*",
    SIZEDATAREGEXP=r"^(?:\.data|\.bss|\.stack|\.heap)\s+(\d+).*",
    SIZECHECKCMD="$SIZETOOL -A -d $SOURCES",
    SIZEPRINTCMD="$SIZETOOL -B -d $SOURCES",
    PROGSUFFIX=".elf",
)

env.Append(
    ASFLAGS=machine_flags + ["-x", "assembler-with-cpp"],
    CCFLAGS=machine_flags
    + ["-O2", "-ffunction-sections", "-fdata-sections", "-Wall", "-Wextra", "-g"],
    CFLAGS=["-std=c99"],
    CPPDEFINES=[("F_CPU", "$BOARD_F_CPU")],
    LINKFLAGS=machine_flags
    + ["-Wl,--gc-sections", "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs"],
    LIBS=["c", "m", "gcc"],
)

# Board facts the ports need (counter clock, instructions per tick) come from the board JSON
# that tinypipe generates out of its board registry, as `build.extra_flags`; PlatformIO's core
# adds those flags itself.

ldscript = board.get("build.ldscript", "")
if ldscript:
    env.Replace(LDSCRIPT_PATH=os.path.join("$PROJECT_DIR", ldscript))

target_elf = env.BuildProgram()
env.Alias(
    "bin",
    env.Command(
        os.path.join("$BUILD_DIR", "${PROGNAME}.bin"),
        target_elf,
        env.VerboseAction("$OBJCOPY -O binary $SOURCES $TARGET", "Building $TARGET"),
    ),
)
AlwaysBuild(env.Alias("size", target_elf, env.VerboseAction("$SIZEPRINTCMD", "")))
Default([target_elf, env.Alias("checkprogsize", target_elf)])
