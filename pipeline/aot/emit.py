"""Write the generated C: public header, model source (weights, arena, invoke)."""

from __future__ import annotations

import numpy as np

from pipeline.aot import stripes
from pipeline.aot.graph import Graph, Tensor
from pipeline.aot.ops import Kernel, c_float
from pipeline.aot.planner import Plan

_CTYPE = {"int8": "int8_t", "uint8": "uint8_t", "int16": "int16_t", "int32": "int32_t",
          "float32": "float", "int64": "int64_t", "bool": "uint8_t"}
# TFLite TensorType numbering, so the values mean the same thing as in the .tflite.
TYPE_CODES = {"float32": 0, "int32": 2, "uint8": 3, "int64": 4, "bool": 6, "int16": 7, "int8": 9}


def ctype(t: Tensor) -> str:
    return _CTYPE[t.dtype]


class Names:
    """C identifiers derived from the user's prefix."""

    def __init__(self, prefix: str) -> None:
        self.p = prefix
        self.P = prefix.upper()

    def weight(self, tid: int) -> str:
        return f"{self.p}_w{tid}"


def _array_body(values: np.ndarray, per_line: int = 24) -> str:
    vals = values.ravel().tolist()
    if values.dtype == np.float32:
        items = [c_float(v) for v in vals]
    else:
        items = [str(int(v)) for v in vals]
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    return "  " + ",\n  ".join(lines)


def weights_source(g: Graph, const_ids: list[int], names: Names) -> tuple[list[str], int]:
    """Const arrays for the weight tensors the kernels read, and their total size."""
    out, total = [], 0
    for tid in const_ids:
        t = g.tensors[tid]
        data = np.asarray(t.data)
        total += data.nbytes
        out.append(f"/* {t.name} {list(t.shape)} */")
        out.append(f"static const {ctype(t)} {names.weight(tid)}[{max(data.size, 1)}] = {{\n"
                   f"{_array_body(data) if data.size else '  0'}\n}};")
    return out, total


def _pointer(g: Graph, tid: int, plan: Plan, const_of: dict[int, int], names: Names,
             write: bool) -> str:
    t = g.tensors[tid]
    ct = ctype(t)
    if tid in const_of:
        return f"(const {ct} *){names.weight(const_of[tid])}"
    qual = "" if write else "const "
    return f"({qual}{ct} *)({names.p}_arena + {plan.offsets[tid]})"


def invoke_source(g: Graph, kernels: list[tuple[int, Kernel]], plan: Plan,
                  const_of: dict[int, int], names: Names,
                  groups: list[stripes.Group] = ()) -> tuple[list[str], list[str]]:
    """Per-op declarations and the body of <prefix>_invoke() (striped groups as band loops)."""
    decls, body = [], []
    first_of = {gr.first: gr for gr in groups}
    inside = {p for gr in groups for p in gr.positions}
    if any(isinstance(a, stripes.Move) for gr in groups for a in gr.actions):
        decls.append(stripes.MOVE_HELPER.format(p=names.p))
    for pos, (i, k) in enumerate(kernels):
        op = g.ops[i]
        tag = f"{names.p}_op{i}_"
        if pos in inside:
            scr = (f"(int32_t *)({names.p}_arena + {plan.offsets[k.scratch_tid]})"
                   if k.scratch else "NULL")
            decls += [d.replace("@op@", tag).replace("@scratch@", scr) for d in k.decls]
            gr = first_of.get(pos)
            if gr is None:
                continue
            gdecls, gbody = stripes.group_source(
                g, kernels, gr, plan, names,
                lambda tid, w: _pointer(g, tid, plan, const_of, names, w),
                lambda q: f"{names.p}_op{kernels[q][0]}_")
            decls += gdecls
            # The group's time is reported on its first op; its other ops show none.
            body += _profile_call(names, pos)
            body += ["  " + x for x in gbody]
            for q in gr.positions[1:]:
                body += _profile_call(names, q)
            continue
        body += _profile_call(names, pos)
        if k.family is None and not k.alias and not k.code:
            body.append(f"  /* op {i}: {op.name} (done by {names.p}_input_write) */")
            continue

        def subst(s: str, k=k, tag=tag) -> str:
            s = s.replace("@op@", tag)
            if k.scratch:
                s = s.replace("@scratch@", f"(int32_t *)({names.p}_arena + "
                                           f"{plan.offsets[k.scratch_tid]})")
            for j, tid in enumerate(k.inputs):
                s = s.replace(f"@in{j}@", _pointer(g, tid, plan, const_of, names, False))
            for j, tid in enumerate(k.outputs):
                s = s.replace(f"@out{j}@", _pointer(g, tid, plan, const_of, names, True))
            return s

        decls += [subst(d) for d in k.decls]
        if k.alias:
            src, dst = k.inputs[0], k.outputs[0]
            if dst in const_of or plan.offsets.get(dst) == plan.offsets.get(src):
                body.append(f"  /* op {i}: {op.name} (aliased, no code) */")
                continue
            # Not sharing memory (e.g. a model input reshaped straight into an output): copy.
            nbytes = g.tensors[dst].nbytes
            body.append(f"  /* op {i}: {op.name} */")
            body.append(f"  memcpy({names.p}_arena + {plan.offsets[dst]}, "
                        f"{_pointer(g, src, plan, const_of, names, False)}, {nbytes});")
            continue
        body.append(f"  /* op {i}: {op.name} */")
        body += ["  " + subst(c) for c in k.code]
    return decls, body


def _profile_call(names: Names, pos: int | str) -> list[str]:
    """Optional per-op timing hook; compiled only with -D<PREFIX>_PROFILE."""
    return [f"#ifdef {names.P}_PROFILE", f"  {names.p}_profile_hook({pos});", "#endif"]


def _io_macros(g: Graph, names: Names, kind: str, tids: list[int], plan: Plan,
               quant: dict | None = None) -> list[str]:
    P = names.P
    lines = []
    quant = quant or {}
    for k, tid in enumerate(tids):
        t = g.tensors[tid]
        m = f"{P}_{kind}{k}"
        shape = list(t.shape) or [1]
        lines.append(f"/* {kind.lower()} {k}: '{t.name}' {t.dtype} {list(t.shape)} */")
        lines.append(f"#define {m}_RANK {len(t.shape)}")
        for d, v in enumerate(shape):
            lines.append(f"#define {m}_DIM{d} {v}")
        lines.append(f"#define {m}_SHAPE {{{', '.join(str(v) for v in shape)}}}")
        lines.append(f"#define {m}_ELEMENTS {t.size}")
        lines.append(f"#define {m}_BYTES {t.nbytes}")
        lines.append(f"#define {m}_TYPE {P}_TYPE_{t.dtype.upper()}")
        lines.append(f"#define {m}_TYPE_{t.dtype.upper()} 1")
        lines.append(f"#define {m}_SCALE {c_float(t.scale)} /* {float(np.float32(t.scale)):.9g} */")
        lines.append(f"#define {m}_ZERO_POINT {t.zero_point}")
        if k in quant:
            q, qt = quant[k]
            lines.append(f"/* quantized as it is written ({names.p}_input_write): the arena holds "
                         "only this int8 tensor */")
            lines.append(f"#define {m}_QUANTIZED 1")
            lines.append(f"#define {m}_QSCALE {c_float(qt.scale)} /* "
                         f"{float(np.float32(qt.scale)):.9g} */")
            lines.append(f"#define {m}_QZERO_POINT {qt.zero_point}")
            lines.append(f"#define {m}_OFFSET {plan.offsets[q]}")
        else:
            lines.append(f"#define {m}_OFFSET {plan.offsets[tid]}")
        lines.append("")
    return lines


def header_source(g: Graph, plan: Plan, names: Names, model_hash: str, weights_bytes: int,
                  op_names: list[str], quant: dict | None = None) -> str:
    p, P = names.p, names.P
    guard = f"{P}_MODEL_H"
    types = [f"#define {P}_TYPE_{k.upper()} {v}" for k, v in TYPE_CODES.items()]
    return "\n".join([
        f"/* Generated by tinypipe (AOT backend). Do not edit. {len(op_names)} ops. */",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        "#include <stddef.h>",
        "#include <stdint.h>",
        "",
        "#ifdef __cplusplus",
        'extern "C" {',
        "#endif",
        "",
        f'#define {P}_MODEL_HASH "{model_hash}"',
        f"#define {P}_ARENA_BYTES {plan.total}",
        f"#define {P}_WEIGHTS_BYTES {weights_bytes}",
        f"#define {P}_NUM_OPS {len(op_names)}",
        f"#define {P}_NUM_INPUTS {len(g.inputs)}",
        f"#define {P}_NUM_OUTPUTS {len(g.outputs)}",
        "",
        "/* Element types (TFLite TensorType codes). */",
        *types,
        "",
        *_io_macros(g, names, "INPUT", g.inputs, plan, quant),
        *_io_macros(g, names, "OUTPUT", g.outputs, plan),
        "/* Returns 0. Call once before the first invoke. */",
        f"int {p}_init(void);",
        "/* Runs the model on the current input buffers; returns 0 on success. */",
        f"int {p}_invoke(void);",
        f"int {p}_num_inputs(void);",
        f"int {p}_num_outputs(void);",
        "/* Buffers live in the static arena; NULL for an out-of-range index, and for a",
        f"   float input marked {P}_INPUTi_QUANTIZED unless compiled with",
        f"   -D{P}_FLOAT_INPUT_BUFFER (which keeps such inputs whole outside the arena). */",
        f"void *{p}_input(int i);",
        f"const void *{p}_output(int i);",
        f"size_t {p}_input_bytes(int i);",
        f"size_t {p}_output_bytes(int i);",
        f"/* Writes n bytes at byte `offset` of input i, in the input's own type ({P}_INPUTi_TYPE,",
        f"   {P}_INPUTi_BYTES in all): works for every input; a quantized float input takes whole",
        "   floats (offset and n multiples of 4). Returns 0, or -1 for a bad index or range. */",
        f"int {p}_input_write(int i, size_t offset, const void *data, size_t n);",
        "/* Writes n floats to elements [first, first + n) of float32 input i (quantizing them",
        "   if it is quantized on write). Returns 0, or -1 if i is not a float input or the",
        "   range is out of bounds. */",
        f"int {p}_input_write_f32(int i, size_t first, const float *data, size_t n);",
        "/* The int8 tensor a quantized float input is written into (scale QSCALE, zero point",
        "   QZERO_POINT), for callers that quantize themselves; NULL for other inputs. */",
        f"int8_t *{p}_input_quantized(int i);",
        "",
        "#ifdef __cplusplus",
        "}",
        "#endif",
        "",
        f"#endif /* {guard} */",
        "",
    ])


def _switch(fn: str, ret: str, cases: list[str], default: str) -> list[str]:
    lines = [f"{ret} {fn}(int i) {{", "  switch (i) {"]
    lines += [f"    case {k}: return {c};" for k, c in enumerate(cases)]
    lines += [f"    default: return {default};", "  }", "}", ""]
    return lines


def _input_source(g: Graph, plan: Plan, names: Names, quant: dict) -> list[str]:
    """tp_input, tp_input_write(_f32), tp_input_quantized and the optional float buffers."""
    p, P = names.p, names.P
    compat = f"{P}_FLOAT_INPUT_BUFFER"
    lines: list[str] = []
    for i in quant:
        lines += [f"#ifdef {compat}",
                  f"/* Input {i} whole, outside the arena; quantized when {p}_invoke starts. */",
                  f"static float {p}_input{i}_f32[{P}_INPUT{i}_ELEMENTS];", "#endif", ""]
    lines += [f"void *{p}_input(int i) {{", "  switch (i) {"]
    for i, t in enumerate(g.inputs):
        if i in quant:
            lines += [f"#ifdef {compat}", f"    case {i}: return {p}_input{i}_f32;", "#else",
                      f"    case {i}: return NULL;", "#endif"]
        else:
            lines.append(f"    case {i}: return (void *)({p}_arena + {plan.offsets[t]});")
    lines += ["    default: return NULL;", "  }", "}", ""]
    lines += [f"int8_t *{p}_input_quantized(int i) {{", "  switch (i) {"]
    for i, (q, _) in quant.items():
        lines.append(f"    case {i}: return (int8_t *)({p}_arena + {plan.offsets[q]});")
    lines += ["    default: return NULL;", "  }", "}", ""]
    lines += [f"int {p}_input_write_f32(int i, size_t first, const float *data, size_t n) {{",
              "  switch (i) {"]
    for i, t in enumerate(g.inputs):
        if g.tensors[t].dtype != "float32":
            continue
        lines += [f"    case {i}:",
                  f"      if (first > {P}_INPUT{i}_ELEMENTS || n > {P}_INPUT{i}_ELEMENTS - first) "
                  "return -1;"]
        if i in quant:
            q, qt = quant[i]
            lines += [f"#ifdef {compat}",
                      f"      memcpy({p}_input{i}_f32 + first, data, n * sizeof(float));", "#else",
                      f"      tk_quantize_f32_s8(data, (int8_t *)({p}_arena + {plan.offsets[q]}) + "
                      f"first, (int)n, {c_float(qt.scale)}, {qt.zero_point});", "#endif"]
        else:
            lines.append(f"      memcpy((float *)(void *)({p}_arena + {plan.offsets[t]}) + first, "
                         "data, n * sizeof(float));")
        lines.append("      return 0;")
    lines += ["    default:", "      (void)first;", "      (void)data;", "      (void)n;",
              "      return -1;", "  }", "}", ""]
    lines += [
        f"int {p}_input_write(int i, size_t offset, const void *data, size_t n) {{",
        "  const uint8_t *src = (const uint8_t *)data;",
        f"  uint8_t *dst = (uint8_t *){p}_input(i);",
        f"  if (i < 0 || i >= {P}_NUM_INPUTS || offset > {p}_input_bytes(i) ||",
        f"      n > {p}_input_bytes(i) - offset) return -1;",
        "  if (dst != NULL) {",
        "    memcpy(dst + offset, src, n);",
        "    return 0;",
        "  }",
        "  if (offset % sizeof(float) != 0 || n % sizeof(float) != 0) return -1;",
        "  while (n > 0) { /* through an aligned buffer: data need not be float-aligned */",
        "    float chunk[16];",
        "    size_t m = n < sizeof chunk ? n : sizeof chunk;",
        "    memcpy(chunk, src, m);",
        f"    if ({p}_input_write_f32(i, offset / sizeof(float), chunk, m / sizeof(float)) != 0)",
        "      return -1;",
        "    src += m;",
        "    offset += m;",
        "    n -= m;",
        "  }",
        "  return 0;",
        "}",
        ""]
    return lines


def model_source(g: Graph, plan: Plan, names: Names, weights: list[str], decls: list[str],
                 body: list[str], needs_memcpy: bool = True, quant: dict | None = None) -> str:
    p, P = names.p, names.P
    quant = quant or {}
    outs = [f"{p}_arena + {plan.offsets[t]}" for t in g.outputs]
    compat = [f"#ifdef {P}_FLOAT_INPUT_BUFFER",
              *(f"  tk_quantize_f32_s8({p}_input{i}_f32, (int8_t *)({p}_arena + "
                f"{plan.offsets[q]}), {P}_INPUT{i}_ELEMENTS, {c_float(qt.scale)}, "
                f"{qt.zero_point});" for i, (q, qt) in quant.items()),
              "#endif"] if quant else []
    lines = [
        "/* Generated by tinypipe (AOT backend). Do not edit. */",
        "#include <string.h>",
        "",
        '#include "tinykernels.h"',
        f'#include "{p}_model.h"',
        "",
        "#if defined(__GNUC__) || defined(__clang__)",
        f"#define {P}_ALIGN16 __attribute__((aligned(16)))",
        "#else",
        f"#define {P}_ALIGN16",
        "#endif",
        "",
        "/* All activations share this arena; offsets were planned at export time. */",
        f"static uint8_t {p}_arena[{P}_ARENA_BYTES] {P}_ALIGN16;",
        "",
        *weights,
        "",
        *decls,
        "",
        f"int {p}_init(void) {{ return 0; }}",
        "",
        f"#ifdef {P}_PROFILE",
        f"/* Called before op i (0..{P}_NUM_OPS-1) and once more with {P}_NUM_OPS at the end. */",
        f"void {p}_profile_hook(int op_index);",
        "#endif",
        "",
        *_input_source(g, plan, names, quant),
        f"int {p}_invoke(void) {{",
        *compat,
        *body,
        *_profile_call(names, f"{P}_NUM_OPS"),
        "  return 0;",
        "}",
        "",
        f"int {p}_num_inputs(void) {{ return {len(g.inputs)}; }}",
        f"int {p}_num_outputs(void) {{ return {len(g.outputs)}; }}",
        "",
        *_switch(f"{p}_output", "const void *", [f"(const void *)({c})" for c in outs], "NULL"),
        *_switch(f"{p}_input_bytes", "size_t",
                 [f"{P}_INPUT{k}_BYTES" for k in range(len(g.inputs))], "0"),
        *_switch(f"{p}_output_bytes", "size_t",
                 [f"{P}_OUTPUT{k}_BYTES" for k in range(len(outs))], "0"),
    ]
    return "\n".join(lines)
