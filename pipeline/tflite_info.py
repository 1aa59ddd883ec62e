"""Read a .tflite model for the host-side stages (lint, profile, export, evaluation).

There is one flatbuffer reader in the project, the AOT engine's `pipeline.aot.graph`; this module
only adds what the host stages ask of it (file reading, byte size, distinct op names).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.aot.graph import Graph, Op, Tensor, load_graph
from pipeline.errors import ModelError

__all__ = ["ModelInfo", "Op", "Tensor", "read_model"]


@dataclass
class ModelInfo:
    graph: Graph
    size: int  # bytes of the .tflite

    @property
    def ops(self) -> list[Op]:
        return self.graph.ops

    @property
    def tensors(self) -> list[Tensor]:
        return self.graph.tensors

    @property
    def inputs(self) -> list[int]:
        return self.graph.inputs

    @property
    def outputs(self) -> list[int]:
        return self.graph.outputs

    def tensor(self, i: int) -> Tensor | None:
        return self.graph.tensors[i] if i >= 0 else None

    @property
    def op_names(self) -> list[str]:
        """Distinct op names in first-use order."""
        return list(dict.fromkeys(o.name for o in self.graph.ops))


def read_model(model: bytes | str | Path) -> ModelInfo:
    """Parse a .tflite model given as bytes or a path (first subgraph)."""
    if isinstance(model, (str, Path)):
        try:
            data = Path(model).read_bytes()
        except OSError as e:
            raise ModelError(f"{model}: cannot read model ({e.strerror})") from None
        name = str(model)
    else:
        data, name = bytes(model), "model"
    return ModelInfo(load_graph(data, name), len(data))
