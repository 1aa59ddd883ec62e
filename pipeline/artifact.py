"""One model artifact: a .tflite's bytes and everything derived from them, each computed once.

    art = ModelArtifact.load("runs/demo")      # a .tflite, a folder holding model.tflite, or bytes
    art.hash                                   # what HELLO reports and the firmware embeds
    art.graph, art.op_names, art.inputs        # parsed once (pipeline.aot.graph)

Every stage takes a `ModelArtifact` (or anything `load` accepts), so the bytes are read, parsed,
hashed in one place (the TFLM arena is measured once per model by `pipeline.tflm`).
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from functools import cached_property
from pathlib import Path

from pipeline.errors import ModelError

# The host interpreter measures the arena with 64-bit pointers, so its bookkeeping structs are
# larger than on a 32-bit MCU; the tensor data itself is identical. The margin covers alignment
# differences between TFLM versions and kernels that request scratch buffers differently.
ARENA_MARGIN_FRACTION = 0.10
ARENA_MARGIN_BYTES = 1024
HASH_HEX_DIGITS = 16

_LOADED: OrderedDict[str, ModelArtifact] = OrderedDict()  # sha256 -> artifact (parsed graph)
_KEEP = 8


def model_hash(data: bytes) -> str:
    """The model hash: the first 16 hex digits of the .tflite's sha256."""
    return hashlib.sha256(data).hexdigest()[:HASH_HEX_DIGITS]


def arena_with_margin(measured: int) -> int:
    """Measured arena plus the documented margin, rounded up to 16 bytes."""
    raw = measured * (1 + ARENA_MARGIN_FRACTION) + ARENA_MARGIN_BYTES
    return int(math.ceil(raw / 16) * 16)


class ModelArtifact:
    """A .tflite model: bytes, name for messages, hash, parsed graph, measured TFLM arena."""

    def __init__(self, data: bytes, name: str = "<model bytes>"):
        self.data = bytes(data)
        self.name = name

    @classmethod
    def load(cls, model: ModelArtifact | bytes | bytearray | str | Path) -> ModelArtifact:
        """From bytes, a .tflite path, or a folder holding model.tflite (run or model folder)."""
        if isinstance(model, ModelArtifact):
            return model
        if isinstance(model, (bytes, bytearray)):
            data, name = bytes(model), "<model bytes>"
        else:
            path = Path(model)
            if path.is_dir():
                path = path / "model.tflite"
            try:
                data, name = path.read_bytes(), str(path)
            except OSError as e:
                raise ModelError(f"{path}: cannot read model ({e.strerror})") from None
        sha = hashlib.sha256(data).hexdigest()
        hit = _LOADED.get(sha)
        if hit is not None:
            _LOADED.move_to_end(sha)
            return hit if hit.name == name else hit._renamed(name)
        art = cls(data, name)
        art.__dict__["sha256"] = sha
        _LOADED[sha] = art
        while len(_LOADED) > _KEEP:
            _LOADED.popitem(last=False)
        return art

    def _renamed(self, name: str) -> ModelArtifact:
        """The same cached artifact under another name (the graph is shared, not re-parsed)."""
        twin = ModelArtifact(self.data, name)
        twin.__dict__.update({k: v for k, v in self.__dict__.items()
                              if k in ("sha256", "graph")})
        return twin

    # ---- identity -------------------------------------------------------------------------

    @cached_property
    def sha256(self) -> str:
        """Full sha256 of the bytes (hex)."""
        return hashlib.sha256(self.data).hexdigest()

    @property
    def hash(self) -> str:
        """The model hash (`model_hash`), as embedded in firmware and reported by HELLO."""
        return self.sha256[:HASH_HEX_DIGITS]

    @property
    def size(self) -> int:
        """Bytes of the .tflite."""
        return len(self.data)

    # ---- structure ------------------------------------------------------------------------

    @cached_property
    def graph(self):
        """The first subgraph (pipeline.aot.graph.Graph); ModelError if not a .tflite."""
        from pipeline.aot.graph import load_graph

        return load_graph(self.data, self.name)

    @property
    def ops(self):
        return self.graph.ops

    @property
    def tensors(self):
        return self.graph.tensors

    @property
    def op_names(self) -> list[str]:
        """Distinct op names in first-use order."""
        return list(dict.fromkeys(o.name for o in self.graph.ops))

    def op_version(self, name: str) -> int:
        """Highest version of op `name` in the model."""
        return max(o.version for o in self.graph.ops if o.name == name)

    @property
    def inputs(self) -> list:
        """Input tensors (pipeline.aot.graph.Tensor), in order."""
        return [self.graph.tensors[i] for i in self.graph.inputs]

    @property
    def outputs(self) -> list:
        """Output tensors, in order."""
        return [self.graph.tensors[i] for i in self.graph.outputs]

    @property
    def num_classes(self) -> int:
        """Size of the last axis of output 0 (1 for a scalar output)."""
        shape = self.outputs[0].shape
        return int(shape[-1]) if len(shape) else 1

    def class_labels(self, names: list[str] | None = None) -> list[str]:
        """`names`, or the output indices as labels for models without names."""
        return list(names) if names else [str(i) for i in range(self.num_classes)]

    def __repr__(self) -> str:
        return f"ModelArtifact({self.name!r}, {self.size:,} B, hash {self.hash})"
