"""Deployables (`tinypipe export --format`): every format carries the same engine, hash and
settings; the platformio library runs bit-exact under QEMU from a fresh PlatformIO project, the
cmake target bit-exact on the host; the arduino and esp-idf layouts follow their specifications
(their toolchains are not installable here)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.deploy import FORMATS, export_deployable
from pipeline.errors import ConfigError, UnsupportedOpError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "hil_tests"))
sys.path.insert(0, str(ROOT / "tests" / "aot"))

import tiny_model  # noqa: E402

N = 6


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return tiny_model.cached_tflite(tmp_path_factory.mktemp("deploy_model"))


@pytest.fixture(scope="module")
def samples_and_reference(model: Path) -> tuple[np.ndarray, np.ndarray]:
    from pipeline.tflm import run_tflm

    x = tiny_model.make_samples(N, seed=7)
    return x, run_tflm(model, [x]).outputs[0].reshape(N, -1)


def _settings_h(folder: Path) -> str:
    return (folder / "src" / "tp_settings.h").read_text()


def test_every_format_has_the_engine_hash_and_settings(model: Path, tmp_path: Path) -> None:
    from pipeline.artifact import ModelArtifact

    h = ModelArtifact.load(model).hash
    for fmt in FORMATS:
        dep = export_deployable(model, fmt, tmp_path / fmt)
        assert dep.name == "tinypipe_tiny_cnn" and dep.model_hash == h
        assert {"src/tp_model.h", "src/tp_model.c", "src/tp_settings.h",
                "src/tinypipe_tiny_cnn.h", "src/tinykernels.h"} <= set(dep.files), fmt
        if fmt == "arduino":
            assert sorted(p.name for p in (tmp_path / fmt).iterdir()) == ["tinypipe_tiny_cnn.zip"]
            continue
        header = (tmp_path / fmt / "src" / "tp_model.h").read_text()
        assert f'#define TP_MODEL_HASH "{h}"' in header
        for fn in ("tp_init(void)", "tp_invoke(void)", "*tp_input(int i)", "*tp_output(int i)"):
            assert fn in header, (fmt, fn)
        s = _settings_h(tmp_path / fmt)
        # no card or config next to a bare .tflite: the documented defaults
        assert "from defaults" in s and "kPixelScale = 0.00392156862745098f" in s
        assert 'kCategoryLabels[TP_NUM_LABELS] = {"0", "1", "2", "3"}' in s
        assert "kNumRows = 16;" in s and "kNumChannels = 1;" in s


def test_settings_come_from_a_model_card(tmp_path: Path) -> None:
    card = json.loads((ROOT / "models/cifar10/card.json").read_text())
    dep = export_deployable(ROOT / "models" / "cifar10", "cmake", tmp_path / "c")
    s = _settings_h(tmp_path / "c")
    assert dep.settings.source == "card.json" and dep.name == "tinypipe_cifar10"
    assert f"kPixelScale = {float(card['preprocess']['pixel_scale'])!r}f;" in s
    labels = ", ".join(f'"{n}"' for n in card["class_names"])
    assert f"kCategoryLabels[TP_NUM_LABELS] = {{{labels}}};" in s
    assert "kNumChannels = 3;" in s


def test_settings_come_from_a_run_folder(tiny_run) -> None:
    from pipeline.cli import cli
    from pipeline.config import load_config
    from pipeline.run import RunDir

    out, _ = tiny_run
    res = CliRunner().invoke(cli, ["export", "--format", "platformio", "--out", str(out)])
    assert res.exit_code == 0, res.output
    dest = Path(out) / "deploy" / "platformio"
    s = _settings_h(dest)
    cfg = load_config(Path(out) / "config.yaml")
    names = RunDir(out).load("train").class_names
    assert "from config.yaml" in s
    assert f"kPixelScale = {float(cfg.preprocess.pixel_scale)!r}f;" in s
    assert ", ".join(f'"{n}"' for n in names) in s
    assert json.loads((dest / "library.json").read_text())["name"] == f"tinypipe_{cfg.name}"


def test_errors_are_one_line_and_write_nothing(model: Path, tmp_path: Path, keras_tanh) -> None:
    from pipeline.cli import main

    with pytest.raises(ConfigError, match=r"unknown format 'zip' \(choose from arduino, "):
        export_deployable(model, "zip", tmp_path / "a")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.c").write_text("/* the user's */")
    with pytest.raises(ConfigError, match=r"busy: not empty"):
        export_deployable(model, "cmake", tmp_path / "busy")
    with pytest.raises(UnsupportedOpError, match=r"op #1 TANH is not supported"):
        export_deployable(keras_tanh, "platformio", tmp_path / "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "tanh.tflite"]
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["mine.c"]
    with pytest.raises(SystemExit) as e:
        main(["export", "--format", "zip", "--model", str(model), "--out", str(tmp_path / "c")])
    assert e.value.code == 2 and not (tmp_path / "c").exists()


@pytest.fixture
def keras_tanh(tmp_path: Path) -> Path:
    """A model with an op the AOT engine refuses (TANH)."""
    import keras
    from aot_helpers import convert

    inp = keras.Input((6,), batch_size=1)
    m = keras.Model(inp, keras.layers.Activation("tanh")(keras.layers.Dense(5)(inp)))
    path = tmp_path / "tanh.tflite"
    path.write_bytes(convert(m, np.random.default_rng(1).normal(size=(16, 6)).astype(np.float32)))
    return path


# ---- cmake: a static library target, built with cmake and the host compiler ------------------


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed (apt-get install "
                    "cmake)")
def test_cmake_target_runs_bit_exact_on_the_host(model: Path, samples_and_reference,
                                                 tmp_path: Path) -> None:
    from aot_helpers import HARNESS

    x, want = samples_and_reference
    dep = export_deployable(model, "cmake", tmp_path / "tinypipe_tiny_cnn")
    app = tmp_path / "app"
    app.mkdir()
    (app / "harness.c").write_text('#include "tinypipe_tiny_cnn.h"\n' + HARNESS)
    (app / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.13)\nproject(app C)\n"
        'set(CMAKE_C_FLAGS "${CMAKE_C_FLAGS} -Wall -Wextra -Werror -pedantic")\n'
        f"add_subdirectory({dep.path} model)\n"
        "add_executable(harness harness.c)\n"
        f"target_link_libraries(harness PRIVATE tinypipe::{dep.name})\n")
    build = tmp_path / "build"
    for cmd in (["cmake", "-S", str(app), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"],
                ["cmake", "--build", str(build)]):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (build / "model" / f"lib{dep.name}.a").is_file()
    (tmp_path / "in.bin").write_bytes(x.tobytes())
    subprocess.run([str(build / "harness"), str(tmp_path / "in.bin"), str(tmp_path / "out.bin"),
                    str(N)], check=True, timeout=60)
    got = np.frombuffer((tmp_path / "out.bin").read_bytes(), np.int8).reshape(N, -1)
    np.testing.assert_array_equal(got, want)


# ---- platformio: lib_deps = file://..., a fresh project, offline, QEMU -----------------------


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None or
                    shutil.which("qemu-system-arm") is None,
                    reason="arm-none-eabi-gcc or qemu-system-arm not installed")
def test_platformio_library_runs_bit_exact_under_qemu(model: Path, samples_and_reference,
                                                      tmp_path: Path) -> None:
    from pipeline.aot.arm import run_elf
    from pipeline.hil.build import build_firmware
    from pipeline.paths import BENCH
    from pipeline.project import init_project

    x, want = samples_and_reference
    dep = export_deployable(model, "platformio", tmp_path / "lib_tiny")
    proj = init_project(tmp_path / "fw", "qemu-m4")
    # The project's own code runs the model: the semihosting harness the bench uses (reads
    # in.bin, writes out.bin), calling tp_* from the library, not tinypipe's app.
    (proj.root / "src" / "main.c").write_text((BENCH / "tb_main.c").read_text())
    ini = proj.root / "platformio.ini"
    text = ini.read_text().replace("custom_model_dir = model",
                                   f"custom_model_dir = lib_deps\nlib_deps = file://{dep.path}")
    ini.write_text(text)
    elf = build_firmware(None, None, project=proj.root)
    assert elf.is_relative_to(proj.root / ".pio" / "build" / "qemu-m4")
    log = (proj.root / ".pio" / "build-qemu-m4.log").read_text()
    assert "tinypipe_tiny_cnn" in log and "backend none" in log
    run = run_elf(elf, "qemu-m4", x.tobytes(), N, tmp_path / "qemu")
    np.testing.assert_array_equal(np.frombuffer(run.out, np.int8).reshape(N, -1), want)
    assert all(t > 0 for t in run.ticks)


# ---- arduino: library specification, layout rev 2.2 ------------------------------------------

# Arduino library specification: the fields of library.properties and the categories.
ARDUINO_FIELDS = ("name", "version", "author", "maintainer", "sentence", "paragraph", "category",
                  "url", "architectures")
ARDUINO_CATEGORIES = {"Display", "Communication", "Signal Input/Output", "Sensors",
                      "Device Control", "Timing", "Data Storage", "Data Processing", "Other"}

ARDUINO_STAND_IN = r"""
// Just enough of the Arduino core to compile and run an example sketch on the host.
#include <chrono>
#include <cstdio>
struct HostSerial {
  void begin(unsigned long) {}
  explicit operator bool() const { return true; }
  void print(const char *s) { std::fputs(s, stdout); }
  void print(int v) { std::printf("%d", v); }
  void print(unsigned long v) { std::printf("%lu", v); }
  void print(double v) { std::printf("%.2f", v); }
  void println(const char *s) { std::puts(s); }
};
static HostSerial Serial;
static unsigned long micros() {
  using namespace std::chrono;
  return (unsigned long)duration_cast<microseconds>(steady_clock::now().time_since_epoch()).count();
}
static unsigned long millis() { return micros() / 1000; }
"""


def test_arduino_zip_follows_the_library_specification(model: Path, tmp_path: Path) -> None:
    dep = export_deployable(model, "arduino", tmp_path / "zip")
    with zipfile.ZipFile(dep.path) as z:
        names = z.namelist()
        z.extractall(tmp_path / "x")
    # one top folder, named like the library (what "Add .ZIP Library" installs)
    assert {n.split("/")[0] for n in names} == {dep.name}
    lib = tmp_path / "x" / dep.name
    props = dict(line.split("=", 1) for line in
                 (lib / "library.properties").read_text().splitlines() if line)
    assert all(props.get(f) for f in ARDUINO_FIELDS), props
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 _.\-]*", props["name"]) and \
        props["name"] == dep.name
    assert re.fullmatch(r"\d+\.\d+\.\d+", props["version"])
    assert props["category"] in ARDUINO_CATEGORIES
    assert props["architectures"] == "*"
    assert (lib / "src" / props["includes"]).is_file()
    # layout 2.2: sources (recursively) in src/, examples/<Name>/<Name>.ino, nothing else
    assert {p.name for p in lib.iterdir()} == {"library.properties", "src", "examples"}
    assert not (lib / "utility").exists()
    examples = [p for p in (lib / "examples").iterdir() if p.is_dir()]
    assert examples and all((e / f"{e.name}.ino").is_file() for e in examples)
    # The example as the Arduino IDE builds it (C sources as C, the sketch as C++ after
    # Arduino.h), for the host: it runs one inference and prints the class and the time.
    build = tmp_path / "build"
    build.mkdir()
    objs = []
    for c in sorted((lib / "src").glob("*.c")):
        obj = build / (c.stem + ".o")
        subprocess.run(["gcc", "-std=gnu11", "-O2", "-Wall", "-Werror", "-c", str(c), "-o",
                        str(obj)], check=True)
        objs.append(str(obj))
    sketch = build / "sketch.cpp"
    sketch.write_text(ARDUINO_STAND_IN + (examples[0] / f"{examples[0].name}.ino").read_text()
                      + "\nint main() { setup(); return 0; }\n")
    proc = subprocess.run(["g++", "-std=gnu++11", "-O2", "-Wall", "-Werror", "-I",
                           str(lib / "src"), str(sketch), *objs, "-o", str(build / "sketch"),
                           "-lm"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = subprocess.run([str(build / "sketch")], capture_output=True, text=True, timeout=30,
                         check=True).stdout
    assert re.fullmatch(rf"model {dep.model_hash}: class [0-3] \([0-3]\) score -?\d+\.\d\d, "
                        r"\d+ us\n", out), out


# ---- esp-idf: component CMakeLists and manifest ----------------------------------------------


def test_esp_idf_component_follows_its_specification(model: Path, tmp_path: Path) -> None:
    import yaml

    dep = export_deployable(model, "esp-idf", tmp_path / "tiny_cnn")
    comp = dep.path
    cmake = (comp / "CMakeLists.txt").read_text()
    call = re.search(r"idf_component_register\((.*?)\)", cmake, re.S)
    assert call, cmake
    args = call.group(1).split()
    srcs = [a.strip('"') for a in args[args.index("SRCS") + 1:args.index("INCLUDE_DIRS")]]
    incs = [a.strip('"') for a in args[args.index("INCLUDE_DIRS") + 1:]]
    # every source compiled, every listed file and include dir there
    assert sorted(srcs) == sorted(f"src/{p.name}" for p in (comp / "src").glob("*.c"))
    assert all((comp / s).is_file() for s in srcs) and all((comp / i).is_dir() for i in incs)
    assert (comp / incs[0] / "tp_model.h").is_file()
    manifest = yaml.safe_load((comp / "idf_component.yml").read_text())
    assert set(manifest) <= {"version", "description", "url", "dependencies", "license",
                             "targets", "tags", "maintainers", "repository", "files"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", manifest["version"])
    assert dep.model_hash in manifest["description"]
    assert re.fullmatch(r">=\d+\.\d+", manifest["dependencies"]["idf"])
    # the sources build for the host as ESP-IDF would (C, warnings as errors)
    for s in srcs:
        subprocess.run(["gcc", "-std=gnu17", "-O2", "-Wall", "-Werror", "-I",
                        str(comp / incs[0]), "-c", str(comp / s), "-o", str(tmp_path / "o.o")],
                       check=True)



def test_esp_idf_manifest_passes_espressifs_component_manager(model: Path,
                                                              tmp_path: Path) -> None:
    """The manifest through Espressif's own parser, in the checks it runs before an upload
    (`pip install idf-component-manager`; not a tinypipe dependency)."""
    manager = pytest.importorskip("idf_component_tools.manager",
                                  reason="idf-component-manager not installed")
    dep = export_deployable(model, "esp-idf", tmp_path / "tiny_cnn")
    for mode in (manager.UploadMode.false, manager.UploadMode.component):
        m = manager.ManifestManager(dep.path, dep.name, upload_mode=mode)
        assert m.is_valid, m.validation_errors
        assert m.load().dependencies == {"idf": ">=4.4"}


def test_a_card_for_another_model_is_refused(model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    shutil.copy(model, folder / "model.tflite")
    card = json.loads((ROOT / "models/cifar10/card.json").read_text())
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(ConfigError, match=r"card.json: describes model [0-9a-f]{16}, not "):
        export_deployable(folder, "cmake", tmp_path / "out")
    assert not (tmp_path / "out").exists()
