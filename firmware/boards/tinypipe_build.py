"""PlatformIO pre-script for every env: adds the board port, the backend and the model sources.

Model folder: $TINYPIPE_MODEL_DIR, else option `custom_model_dir`, else build/model (what
`tinypipe export` writes); without one the hand-written firmware/test_model is used.
Backend: $TINYPIPE_BACKEND or option `custom_backend` (default "aot").
"""

import os

Import("env")  # noqa: F821  (SCons injects Import)

project = env.subst("$PROJECT_DIR")  # noqa: F821


def _option(name, default=""):
    return env.GetProjectOption(name, default)  # noqa: F821


def _abs(path):
    return path if os.path.isabs(path) else os.path.join(project, path)


explicit = os.environ.get("TINYPIPE_MODEL_DIR") or _option("custom_model_dir")
model_dir = _abs(explicit or "build/model")
if not os.path.isfile(os.path.join(model_dir, "tp_model.h")):
    if explicit:
        env.Exit(f"tinypipe: {model_dir} has no tp_model.h; run `tinypipe export` first")  # noqa: F821
    print(f"tinypipe: no exported model in {model_dir}, building firmware/test_model")
    model_dir = os.path.join(project, "firmware", "test_model")
backend = os.environ.get("TINYPIPE_BACKEND") or _option("custom_backend", "aot")
src_dir = env.subst("$PROJECT_SRC_DIR")  # noqa: F821
if not os.path.isfile(os.path.join(src_dir, "backends", f"infer_{backend}.c")):
    env.Exit(f"tinypipe: unknown backend {backend!r} (no backends/infer_{backend}.c)")  # noqa: F821

print(f"tinypipe: model {model_dir}, backend {backend}")
env.Append(CPPPATH=[src_dir, model_dir], LIBPATH=[project])  # noqa: F821
env.BuildSources("$BUILD_DIR/model", model_dir)  # noqa: F821
env.BuildSources(  # noqa: F821
    "$BUILD_DIR/backend", os.path.join(src_dir, "backends"), f"-<*> +<infer_{backend}.c>"
)
for i, port_dir in enumerate(_option("custom_port_dirs").split()):
    env.BuildSources(f"$BUILD_DIR/port{i}", _abs(port_dir))  # noqa: F821
