"""PlatformIO pre-script for every env: adds the board port, the backend and the model sources.

Model folder: $TINYPIPE_MODEL_DIR, else option `custom_model_dir`, else build/model (what
`tinypipe export` writes); without one the hand-written firmware/test_model is used.
`custom_model_dir = lib_deps`: the model is a library in lib_deps (`tinypipe export --format
platformio`) that your own code calls; no backend is built then.
Backend: $TINYPIPE_BACKEND or option `custom_backend` (default "aot").
tinypipe's firmware tree: option `custom_firmware_dir` (default "firmware"; a `tinypipe init`
project has it in lib/tinypipe). Its src/ holds the app and the backends.
"""

import os

Import("env")  # noqa: F821  (SCons injects Import)

project = env.subst("$PROJECT_DIR")  # noqa: F821


def _option(name, default=""):
    return env.GetProjectOption(name, default)  # noqa: F821


def _abs(path):
    return path if os.path.isabs(path) else os.path.join(project, path)


def _fail(message):
    """Stop the build; tinypipe reports the first line with "error" in it."""
    env.Exit(f"tinypipe: error: {message}")  # noqa: F821


# --- TFLite Micro from a source tree ($TFLM_DIR) ------------------------------------------------
# Third-party folders default to where TFLM's own Makefile downloads them
# (tensorflow/lite/micro/tools/make/downloads/<name>); env vars override each one.
TFLM_THIRD_PARTY = {  # name: (env var, header that must exist inside)
    "flatbuffers": ("FLATBUFFERS_DIR", "include/flatbuffers/flatbuffers.h"),
    "gemmlowp": ("GEMMLOWP_DIR", "fixedpoint/fixedpoint.h"),
    "ruy": ("RUY_DIR", "ruy/profiler/instrumentation.h"),
}
TFLM_CORE_DIRS = ["tensorflow/lite/micro", "tensorflow/lite/micro/arena_allocator",
                  "tensorflow/lite/micro/memory_planner", "tensorflow/lite/micro/tflite_bridge"]
# Shared TFLite sources the micro runtime needs (TFLM's sources.inc takes every .cc outside
# tensorflow/lite/micro; this is that list without array.cc, which static-memory builds drop).
TFLM_SHARED = ["tensorflow/lite/core/api", "tensorflow/lite/core/c", "tensorflow/lite/kernels",
               "tensorflow/lite/kernels/internal", "tensorflow/lite/kernels/internal/reference",
               "tensorflow/compiler/mlir/lite/schema", "tensorflow/compiler/mlir/lite/core/api"]

# Kernel sources every op kernel may call into (the rest are ops, their *_common.cc, tests).
TFLM_KERNEL_HELPERS = ["kernel_util.cc", "micro_tensor_utils.cc"]

# Test scaffolding in the runtime folders (nothing links it; skipping saves compile time).
TFLM_TEST_ONLY = ("test_helper", "fake_", "mock_", "recording_", "kernel_runner")


def _ccs(root, rel):
    folder = os.path.join(root, rel)
    if not os.path.isdir(folder):
        return []
    return sorted(f"{rel}/{n}" for n in os.listdir(folder) if n.endswith((".cc", ".c"))
                  and not n.endswith("_test.cc") and not n.startswith(TFLM_TEST_ONLY))


def _tflm_kernels(root, model_dir, cmsis):
    """Kernel sources for the ops in op_resolver.h (all kernels if that cannot be worked out).
    With CMSIS-NN, a kernel that has a kernels/cmsis_nn/ version uses that one."""
    import re

    kdir = "tensorflow/lite/micro/kernels"
    files = [f for f in _ccs(root, kdir)]
    override = set(os.listdir(os.path.join(root, kdir, "cmsis_nn"))) if cmsis else set()

    def src(f):
        name = os.path.basename(f)
        return f"{kdir}/cmsis_nn/{name}" if name in override else f

    def read(rel):
        with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as fh:
            return fh.read()

    selection = os.environ.get("TINYPIPE_TFLM_KERNELS") or _option("custom_tflm_kernels", "model")
    try:
        if selection == "all":
            raise LookupError("all kernels asked for")
        with open(os.path.join(model_dir, "op_resolver.h"), encoding="utf-8") as fh:
            methods = set(re.findall(r"\br\.(Add\w+)\(", fh.read()))
        header = read("tensorflow/lite/micro/micro_mutable_op_resolver.h")
        regs = set()
        for m in methods:
            body = re.search(rf"TfLiteStatus {m}\((.*?)\n  }}", header, re.S)
            if body is None:
                raise LookupError(m)
            regs |= set(re.findall(r"\b(Register_\w+)\(\)", body.group(1)))
        defines = {}  # kernel file -> Register_* functions it defines
        for f in files:
            text = read(src(f))
            defines[f] = set(re.findall(r"TFLMRegistration\s+(Register_\w+)\s*\(\s*\)\s*{", text))
        picked = {f for f, d in defines.items() if d & regs}
        if not picked or regs - set().union(*(defines[f] for f in picked)):
            raise LookupError("registration not found")
        helpers = {f"{kdir}/{n}" for n in TFLM_KERNEL_HELPERS} & set(files)
        picked |= {f[:-3] + "_common.cc" for f in picked} & set(files)
        return sorted(src(f) for f in picked | helpers)
    except (OSError, LookupError):
        return sorted(src(f) for f in files)


def _tflm(model_dir):
    """Compile TFLM (and CMSIS-NN when CMSIS_NN_DIR is set) from source trees into libraries."""
    root = os.environ.get("TFLM_DIR", "").strip()
    if not root:
        libs = [d for d in env.GetProjectOption("lib_deps", [])  # noqa: F821
                if "tflite" in d.lower() or "tensorflowlite" in d.lower()]
        if libs:
            # A board env that takes TFLM from a PlatformIO library: firmware/src/tflm_lib.cc
            # makes the library finder pick it up (lib_ldf_mode = chain+ sees these defines).
            # Its kernels are whatever the library was built with; HELLO names the library.
            name = libs[0].split("#")[0].rstrip("/").split("/")[-1].removesuffix(".git")
            env.Append(CPPDEFINES=["TINYPIPE_BACKEND_TFLM", "TINYPIPE_TFLM_LIB",  # noqa: F821
                                   ("TINYPIPE_TFLM_LIB_NAME", f'\\"tflm+{name}\\"')])
            return
        _fail("TFLM_DIR unset: point it at a tflite-micro source tree")
    root = os.path.abspath(root)
    if not os.path.isfile(os.path.join(root, "tensorflow/lite/micro/micro_interpreter.h")):
        _fail(f"TFLM_DIR={root} is not a tflite-micro source tree "
              "(no tensorflow/lite/micro/micro_interpreter.h)")
    downloads = os.path.join(root, "tensorflow/lite/micro/tools/make/downloads")
    include = [root]
    for name, (var, probe) in TFLM_THIRD_PARTY.items():
        folder = os.path.abspath(os.environ.get(var) or os.path.join(downloads, name))
        if not os.path.isfile(os.path.join(folder, probe)):
            _fail(f"TFLM needs {name}: no {probe} in {folder}; set {var}")
        include.append(os.path.join(folder, "include") if name == "flatbuffers" else folder)
    cmsis = os.environ.get("CMSIS_NN_DIR", "").strip()
    if cmsis:
        cmsis = os.path.abspath(cmsis)
        if not os.path.isfile(os.path.join(cmsis, "Include", "arm_nnfunctions.h")):
            _fail(f"CMSIS_NN_DIR={cmsis} has no Include/arm_nnfunctions.h")
        include += [cmsis, os.path.join(cmsis, "Include")]
    # Everything that includes TFLM headers must agree on these (TfLiteTensor's layout).
    defines = ["TF_LITE_STATIC_MEMORY", "TF_LITE_STRIP_ERROR_STRINGS", "NDEBUG"]
    if cmsis:
        defines.append("CMSIS_NN")
        # The host measures the arena with the reference kernels; CMSIS-NN's scratch buffers
        # come on top (only the backend source sees this, the libraries stay cacheable).
        extra = os.environ.get("TINYPIPE_ARENA_EXTRA") or _option("custom_arena_extra", "16384")
        env.Append(CPPDEFINES=[("TINYPIPE_ARENA_EXTRA", int(extra))])  # noqa: F821
    env.Append(  # noqa: F821
        CPPPATH=include, CPPDEFINES=defines,
        CXXFLAGS=["-std=c++17", "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics",
                  "-fno-unwind-tables", "-fno-asynchronous-unwind-tables"])
    # Third-party code: its warnings are not ours to fix. (An override, not a Clone: the
    # platform sets the cross toolchain and machine flags after this pre-script.)
    # Their include path is only theirs, so the objects do not depend on the model folder and
    # a build cache ($PLATFORMIO_BUILD_CACHE_DIR) shares them between builds of any model.
    trees = tuple(os.path.join(t, "") for t in [root, cmsis] if t)

    def third_party(e, node):
        return e.Object(node, CPPFLAGS=["-w"], CPPPATH=include, CPPDEFINES=defines) \
            if node.srcnode().get_abspath().startswith(trees) else node

    env.AddBuildMiddleware(third_party)  # noqa: F821
    core = [f for d in TFLM_CORE_DIRS + TFLM_SHARED for f in _ccs(root, d)]
    kernels = _tflm_kernels(root, model_dir, bool(cmsis))
    print(f"tinypipe: TFLM from {root}: {len(core)} core + {len(kernels)} kernel sources"
          + (", CMSIS-NN" if cmsis else ", reference kernels"))
    filt = "-<*> " + " ".join(f"+<{f}>" for f in core + kernels)
    # A cached object is found by its path too: with a build cache, build the libraries in one
    # folder per env and configuration, not in each build folder.
    objs = "$BUILD_DIR"
    cache = os.environ.get("PLATFORMIO_BUILD_CACHE_DIR")
    if cache:
        import hashlib

        key = hashlib.sha256(repr((root, cmsis, include, defines)).encode()).hexdigest()[:12]
        objs = os.path.join(_abs(cache), "tflm-objects", f"{env['PIOENV']}-{key}")  # noqa: F821
    libs = [env.BuildLibrary(f"{objs}/tflm", root, filt)]  # noqa: F821
    if cmsis:
        nn = [os.path.relpath(os.path.join(d, n), cmsis)
              for d, _, names in os.walk(os.path.join(cmsis, "Source")) for n in sorted(names)
              if n.endswith(".c") and not n.endswith(("_f16.c", "_f32.c"))]
        libs.append(env.BuildLibrary(  # noqa: F821
            f"{objs}/cmsis_nn", cmsis, "-<*> " + " ".join(f"+<{f}>" for f in nn)))
    env.Prepend(LIBS=libs)  # noqa: F821


backend = os.environ.get("TINYPIPE_BACKEND") or _option("custom_backend", "aot")
firmware_dir = _abs(_option("custom_firmware_dir", "firmware"))
src_dir = os.path.join(firmware_dir, "src")  # the app (PROJECT_SRC_DIR in this repository)
port_dirs = [_abs(d) for d in _option("custom_port_dirs").split()]
explicit = os.environ.get("TINYPIPE_MODEL_DIR") or _option("custom_model_dir")
from_lib = explicit == "lib_deps"
backend_src = next((f"infer_{backend}{ext}" for ext in (".c", ".cc")
                    if os.path.isfile(os.path.join(src_dir, "backends", f"infer_{backend}{ext}"))),
                   None)
if backend_src is None and not from_lib:
    _fail(f"unknown backend {backend!r} (no backends/infer_{backend}.c)")
marker = "model_data.h" if backend == "tflm" else "tp_model.h"

model_dir = None if from_lib else _abs(explicit or "build/model")
if model_dir and not os.path.isfile(os.path.join(model_dir, marker)):
    if explicit or backend != "aot":
        _fail(f"{model_dir} has no {marker}; run `tinypipe export` first")
    print(f"tinypipe: no exported model in {model_dir}, building firmware/test_model")
    model_dir = os.path.join(firmware_dir, "test_model")

print(f"tinypipe: model {model_dir or 'from lib_deps'}, backend {'none' if from_lib else backend}")
# Port folders are on the linker's search path: their linker scripts INCLUDE each other's.
env.Append(CPPPATH=[src_dir] + ([model_dir] if model_dir else []),  # noqa: F821
           LIBPATH=[project] + port_dirs,
           CPPDEFINES=[("TP_BOARD_NAME", '\\"%s\\"' % env["PIOENV"])])  # noqa: F821
if model_dir:
    if backend == "tflm":
        _tflm(model_dir)
    env.BuildSources("$BUILD_DIR/model", model_dir)  # noqa: F821
    env.BuildSources(  # noqa: F821
        "$BUILD_DIR/backend", os.path.join(src_dir, "backends"), f"-<*> +<{backend_src}>"
    )
for i, port_dir in enumerate(port_dirs):
    env.BuildSources(f"$BUILD_DIR/port{i}", port_dir)  # noqa: F821
