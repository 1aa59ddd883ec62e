"""Deployables: the AOT export in the form a firmware build already takes.

    export_deployable(model, "arduino" | "platformio" | "esp-idf" | "cmake", dest) -> Deployable

Every format holds the same C99 sources (`tinypipe export --backend aot`: `tp_model.h/.c` and
the kernels the model needs), `tp_settings.h` with the preprocessing constants and the labels,
and an umbrella header named after the library; they differ only in the build metadata:

- arduino:    `<dest>/<Name>.zip` holding `<Name>/library.properties`, `src/`, `examples/`
              (Arduino library specification, layout rev 2.2: "Add .ZIP Library")
- platformio: `<dest>/library.json` + `src/` (`lib_deps = file://<dest>`)
- esp-idf:    `<dest>/CMakeLists.txt` (idf_component_register) + `idf_component.yml` + `src/`
- cmake:      `<dest>/CMakeLists.txt`, a static library target + `src/` (add_subdirectory)

Preprocessing and labels come from the run folder's config (config.yaml, labels from training),
else a model folder's card.json, else the defaults `tp_settings.h` names (pixel scale 1/255,
offset 0, stretch, the model's own input size, labels = output indices).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import __version__
from pipeline.artifact import ModelArtifact
from pipeline.config import PreprocessConfig
from pipeline.errors import ConfigError

FORMATS = ("arduino", "platformio", "esp-idf", "cmake")
EXAMPLE = "RunInference"  # the Arduino example sketch
HOMEPAGE = "https://pypi.org/project/tinypipe/"  # `url` of the library manifests


@dataclass
class Settings:
    """What the device needs besides the model: preprocessing, labels, and where they came from."""

    name: str
    preprocess: PreprocessConfig
    labels: list[str]
    source: str  # "config.yaml" | "card.json" | "defaults"


@dataclass
class Deployable:
    """What export_deployable wrote."""

    format: str
    path: Path          # the library folder, or the Arduino zip
    name: str           # library / target / component name
    model_hash: str
    settings: Settings
    files: list[str] = field(default_factory=list)  # relative to the library root


def _ident(text: str) -> str:
    """A C and library name: letters, digits and underscores, starting with a letter."""
    s = re.sub(r"[^0-9A-Za-z_]", "_", text).strip("_") or "model"
    return s if s[0].isalpha() else "m_" + s


def _settings_folder(model: ModelArtifact | str | Path) -> Path | None:
    """A run or model folder whose config.yaml / card.json describes `model`."""
    if isinstance(model, ModelArtifact):
        return None
    p = Path(model)
    if p.is_dir():
        return p
    return p.parent if p.name == "model.tflite" else None


def model_settings(model: ModelArtifact | str | Path, art: ModelArtifact) -> Settings:
    """Preprocessing and labels for `model` (a .tflite, run folder or model folder)."""
    folder = _settings_folder(model)
    if isinstance(model, ModelArtifact):
        name = "model"
    else:
        name = Path(model).stem if Path(model).is_file() else Path(model).resolve().name
    labels: list[str] | None = None
    source = "defaults"
    pre: PreprocessConfig | None = None
    if folder is not None and (folder / "config.yaml").is_file():
        from pipeline.config import load_config
        from pipeline.run import RunDir

        cfg = load_config(folder / "config.yaml")
        pre, name, source = cfg.preprocess, cfg.name or name, "config.yaml"
        trained = RunDir(folder).load("train")
        labels = list(trained.class_names) if trained else None
    elif folder is not None and (folder / "card.json").is_file():
        card_path = folder / "card.json"
        try:
            card = json.loads(card_path.read_text())
            p = card.get("preprocess", {})
            pre = PreprocessConfig(**{k: p[k] for k in ("height", "width", "channels", "resize",
                                                        "pixel_scale", "pixel_offset") if k in p})
        except (OSError, ValueError, TypeError, AttributeError) as e:
            raise ConfigError(f"{card_path}: cannot read the model card ({e})") from None
        if card.get("model_hash") not in (None, art.hash):
            raise ConfigError(f"{card_path}: describes model {card['model_hash']}, not "
                              f"{art.hash} ({art.name})")
        name, labels, source = card.get("name") or name, card.get("class_names"), "card.json"
    if pre is None:
        shape = list(art.inputs[0].shape)
        h, w, c = ((shape[1:] if len(shape) == 4 else shape) + [1, 1, 1])[:3]
        pre = PreprocessConfig(height=h, width=w, channels=c)
    if labels is not None and len(labels) != art.num_classes:
        raise ConfigError(f"{folder}: {len(labels)} labels for a model with "
                          f"{art.num_classes} outputs ({source})")
    return Settings(_ident(name), pre, art.class_labels(labels), source)


# ---- generated text ---------------------------------------------------------------------------


def _c_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _flt(v: float) -> str:
    return f"{float(v)!r}f"


def settings_header(s: Settings, art: ModelArtifact, prefix: str) -> str:
    """tp_settings.h: preprocessing and labels, next to tp_model.h's tensors and hash."""
    P, pre = prefix.upper(), s.preprocess
    guard = f"{P}_SETTINGS_H"
    colour = "gray" if pre.channels == 1 else "RGB"
    labels_from = "output indices: none recorded" if s.source == "defaults" else s.source
    return "\n".join([
        f"/* Generated by tinypipe {__version__} from {s.source}: do not edit. */",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        f'#include "{prefix}_model.h" /* {P}_MODEL_HASH, the tensors, {prefix}_init() ... */',
        "",
        f"/* Device preprocessing, identical to training ({s.source}): uint8 {colour} pixels,",
        "   resized to kNumRows x kNumCols (kResizeCrop: 1 = centre-crop to the aspect first),",
        "   float input = pixel * kPixelScale + kPixelOffset, then quantized with",
        f"   {P}_INPUT0_SCALE and {P}_INPUT0_ZERO_POINT. */",
        f"static const float kPixelScale = {_flt(pre.pixel_scale)};",
        f"static const float kPixelOffset = {_flt(pre.pixel_offset)};",
        f"static const int kResizeCrop = {1 if pre.resize == 'crop' else 0};",
        f"static const int kNumRows = {pre.height};",
        f"static const int kNumCols = {pre.width};",
        f"static const int kNumChannels = {pre.channels};",
        "",
        f"/* Labels in output order ({labels_from}). */",
        f"#define {P}_NUM_LABELS {len(s.labels)}",
        f"static const char *const kCategoryLabels[{P}_NUM_LABELS] = {{"
        + ", ".join(_c_string(n) for n in s.labels) + "};",
        "",
        f"#endif /* {guard} */",
        "",
    ])


def _umbrella(name: str, art: ModelArtifact, prefix: str) -> str:
    guard = f"{name.upper()}_H"
    return (f"/* {name}: {art.name.split('/')[-1]} (model hash {art.hash}) compiled to C99 by "
            f"tinypipe {__version__}. Do not edit. */\n"
            f"#ifndef {guard}\n#define {guard}\n\n"
            f'#include "{prefix}_model.h"\n#include "{prefix}_settings.h"\n\n'
            f"#endif /* {guard} */\n")


def _sketch(name: str, prefix: str) -> str:
    p, P = prefix, prefix.upper()
    return f"""\
// Runs the model once on a blank input (every pixel at the input's zero point) and prints the
// top class and the time. Fill {p}_input(0) with a preprocessed image instead (see
// {p}_settings.h: kPixelScale, kNumRows, ...).
#include <string.h>

#include <{name}.h>

static int top_class(float *score) {{
  int best = 0;
#if {P}_OUTPUT0_TYPE == {P}_TYPE_INT8
  const int8_t *out = (const int8_t *){p}_output(0);
  const int n = (int){p}_output_bytes(0);
  for (int i = 1; i < n; ++i) if (out[i] > out[best]) best = i;
  *score = (out[best] - {P}_OUTPUT0_ZERO_POINT) * {P}_OUTPUT0_SCALE;
#else
  const float *out = (const float *){p}_output(0);
  const int n = (int)({p}_output_bytes(0) / sizeof(float));
  for (int i = 1; i < n; ++i) if (out[i] > out[best]) best = i;
  *score = out[best];
#endif
  return best;
}}

void setup() {{
  Serial.begin(115200);
  while (!Serial && millis() < 3000) {{
  }}
  if ({p}_init() != 0) {{
    Serial.println("{p}_init failed");
    return;
  }}
#if {P}_INPUT0_TYPE == {P}_TYPE_INT8
  memset({p}_input(0), (int8_t){P}_INPUT0_ZERO_POINT, {p}_input_bytes(0));
#else
  memset({p}_input(0), 0, {p}_input_bytes(0));
#endif
  const unsigned long t0 = micros();
  const int rc = {p}_invoke();
  const unsigned long us = micros() - t0;
  if (rc != 0) {{
    Serial.println("{p}_invoke failed");
    return;
  }}
  float score = 0;
  const int best = top_class(&score);
  Serial.print("model ");
  Serial.print({P}_MODEL_HASH);
  Serial.print(": class ");
  Serial.print(best);
  Serial.print(" (");
  Serial.print(best < {P}_NUM_LABELS ? kCategoryLabels[best] : "?");
  Serial.print(") score ");
  Serial.print(score);
  Serial.print(", ");
  Serial.print(us);
  Serial.println(" us");
}}

void loop() {{}}
"""


def _description(s: Settings, art: ModelArtifact) -> str:
    return (f"{s.name} (model hash {art.hash}) compiled to dependency-free C99 by tinypipe: "
            "tp_init(), tp_input(), tp_invoke(), tp_output()")


def _library_properties(name: str, s: Settings, art: ModelArtifact) -> str:
    fields = {
        "name": name,
        "version": __version__,
        "author": "tinypipe",
        "maintainer": "tinypipe",
        "sentence": f"The {s.name} model compiled to C99 by tinypipe (int8, no runtime).",
        "paragraph": (f"Model hash {art.hash}. Call tp_init(), fill tp_input(0), tp_invoke(), "
                      "read tp_output(0); preprocessing constants and labels are in "
                      "tp_settings.h."),
        "category": "Data Processing",
        "url": HOMEPAGE,
        "architectures": "*",
        "includes": f"{name}.h",
    }
    return "".join(f"{k}={v}\n" for k, v in fields.items())


def _library_json(name: str, s: Settings, art: ModelArtifact) -> str:
    meta = {
        "name": name,
        "version": __version__,
        "description": _description(s, art),
        "keywords": ["tinypipe", "tinyml", "int8", "neural-network"],
        "frameworks": "*",
        "platforms": "*",
        "headers": [f"{name}.h"],
        "build": {"srcDir": "src", "includeDir": "src"},
    }
    return json.dumps(meta, indent=2) + "\n"


def _idf_cmake(name: str, sources: list[str]) -> str:
    srcs = "\n".join(f'         "src/{f}"' for f in sources)
    return (f"# {name}: generated by tinypipe {__version__}; do not edit. An ESP-IDF component:\n"
            "# put this folder in your project's components/ (its folder name is the component's\n"
            "# name) or list it in EXTRA_COMPONENT_DIRS.\n"
            f"idf_component_register(\n    SRCS\n{srcs}\n    INCLUDE_DIRS \"src\")\n")


def _idf_manifest(s: Settings, art: ModelArtifact) -> str:
    return (f'version: "{__version__}"\n'
            f"description: {json.dumps(_description(s, art))}\n"
            f"url: {HOMEPAGE}\n"
            "dependencies:\n"
            '  idf: ">=4.4"\n')


def _cmake(name: str, sources: list[str]) -> str:
    srcs = "\n".join(f"    src/{f}" for f in sources)
    return f"""\
# {name}: generated by tinypipe {__version__}; do not edit.
# A static library for any CMake build, firmware or host:
#   add_subdirectory({name})
#   target_link_libraries(app PRIVATE tinypipe::{name})
cmake_minimum_required(VERSION 3.13)
project({name} LANGUAGES C)

add_library({name} STATIC
{srcs})
add_library(tinypipe::{name} ALIAS {name})
target_include_directories({name} PUBLIC ${{CMAKE_CURRENT_SOURCE_DIR}}/src)
set_target_properties({name} PROPERTIES C_STANDARD 99 C_STANDARD_REQUIRED ON)
if(NOT MSVC)
  target_link_libraries({name} PUBLIC m)
endif()
"""


# ---- writing ----------------------------------------------------------------------------------


def check_destination(dest: Path) -> None:
    """A deployable goes into a new or empty folder, so nothing of the user's is overwritten."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ConfigError(f"{dest}: not empty; give a new or empty folder for the export")


def export_deployable(model: ModelArtifact | str | Path, fmt: str, dest: str | Path,
                      prefix: str = "tp", settings: Settings | None = None,
                      stripe: bool = True) -> Deployable:
    """Write `model` as a deployable of format `fmt` into `dest` (a new or empty folder).

    Args:
        model: a .tflite, a run folder or a model folder (also where the settings come from).
        fmt: one of FORMATS.
        dest: the library folder (for arduino: the folder that receives `<Name>.zip`).
        prefix: C symbol prefix of the engine (tp: tp_init, tp_invoke, ...).
        settings: preprocessing and labels (default: `model_settings(model)`).
        stripe: plan the arena with striped ranges where that lowers it (False: op by op).

    Nothing is left behind on failure (unknown format, non-empty destination, unsupported op).
    """
    from pipeline.aot import export_aot

    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    dest = Path(dest)
    check_destination(dest)
    art = ModelArtifact.load(model)
    settings = settings or model_settings(model, art)
    name = f"tinypipe_{settings.name}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        lib = stage / name
        # UnsupportedOpError: nothing written
        res = export_aot(art, lib / "src", prefix=prefix, stripe=stripe)
        sources = sorted(f.name for f in res.files if f.suffix == ".c")
        src = lib / "src"
        (src / f"{prefix}_settings.h").write_text(settings_header(settings, art, prefix))
        (src / f"{name}.h").write_text(_umbrella(name, art, prefix))
        if fmt == "arduino":
            (lib / "library.properties").write_text(_library_properties(name, settings, art))
            (lib / "examples" / EXAMPLE).mkdir(parents=True)
            (lib / "examples" / EXAMPLE / f"{EXAMPLE}.ino").write_text(_sketch(name, prefix))
        elif fmt == "platformio":
            (lib / "library.json").write_text(_library_json(name, settings, art))
        elif fmt == "esp-idf":
            (lib / "CMakeLists.txt").write_text(_idf_cmake(name, sources))
            (lib / "idf_component.yml").write_text(_idf_manifest(settings, art))
        else:
            (lib / "CMakeLists.txt").write_text(_cmake(name, sources))
        files = sorted(p.relative_to(lib).as_posix() for p in lib.rglob("*") if p.is_file())
        final = lib
        if fmt == "arduino":
            final = stage / "zip"
            final.mkdir()
            with zipfile.ZipFile(final / f"{name}.zip", "w", zipfile.ZIP_DEFLATED) as z:
                for rel in files:
                    z.write(lib / rel, f"{name}/{rel}")
        if dest.is_dir():
            dest.rmdir()  # empty, checked above
        os.replace(final, dest)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    path = dest / f"{name}.zip" if fmt == "arduino" else dest
    return Deployable(fmt, path, name, art.hash, settings, files)
