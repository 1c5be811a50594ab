"""The values an integer input may take when it indexes a table (an embedding's token ids).

ONNX's Gather takes an index in [-rows, rows), a negative one counting from the end; TensorFlow's
gather takes [0, rows) only. Served by ONNX Runtime, a model would answer an id that TensorFlow
refuses with a 400. So at conversion each Gather of a weight table whose indices are computed from
one integer input alone (through Cast or Identity, or the model's own arithmetic: Keras's
Embedding first wraps a negative id once, `where(id < 0, id + rows, id)`) is found, that
computation is run on the values at the edges of the table, and the input values whose index
lands in [0, rows) are recorded; the ONNX backend refuses the others, as TensorFlow does.

A computation that is not one of the two known shapes (the id itself, or the id wrapped once) is
left alone: nothing is recorded for it, and ONNX Runtime's own bounds apply.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_SUBGRAPH_OPS = {"If", "Loop", "Scan"}


def index_ranges(model: Any) -> dict[str, tuple[int, int]]:
    """Graph input name -> [low, high) of the values it may hold, for the integer inputs that
    index a table; the narrowest range where several tables are indexed by the same input."""
    import onnx

    graph = model.graph
    tables = {t.name: list(t.dims) for t in graph.initializer}
    integer = {v.name for v in graph.input if v.name not in tables
               and v.type.tensor_type.elem_type in (onnx.TensorProto.INT32, onnx.TensorProto.INT64)}
    producers = {out: (order, node) for order, node in enumerate(graph.node) for out in node.output}
    found: dict[str, tuple[int, int]] = {}
    for node in graph.node:
        if node.op_type != "Gather" or node.input[0] not in tables:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        dims = tables[node.input[0]]
        if not dims or not -len(dims) <= axis < len(dims) or dims[axis] <= 0:
            continue
        traced = _trace(node.input[1], producers, tables, {v.name for v in graph.input})
        if traced is None or len(traced[0]) != 1 or not traced[0] <= integer:
            continue
        [source] = traced[0]
        valid = _valid_range(model, source, node.input[1], traced[1], dims[axis])
        if valid is not None:
            low, high = found.get(source, valid)
            found[source] = (max(low, valid[0]), min(high, valid[1]))
    return found


def _trace(tensor: str, producers: dict[str, tuple[int, Any]], tables: dict[str, list[int]],
           inputs: set[str]) -> tuple[set[str], list[Any]] | None:
    """The graph inputs `tensor` is computed from and the nodes computing it (in graph order);
    None when it cannot be followed (through a subgraph)."""
    seen: set[str] = set()
    sources: set[str] = set()
    nodes: dict[int, Any] = {}
    stack = [tensor]
    while stack:
        name = stack.pop()
        if not name or name in seen or name in tables:
            continue
        seen.add(name)
        if name in inputs:
            sources.add(name)
            continue
        if name not in producers:
            return None
        order, node = producers[name]
        if node.op_type in _SUBGRAPH_OPS:
            return None
        nodes[order] = node
        stack.extend(node.input)
    return sources, [nodes[k] for k in sorted(nodes)]


def _valid_range(model: Any, source: str, indices: str, nodes: list[Any], rows: int) -> tuple[int, int] | None:
    """[0, rows) when the index is the input's value, [-rows, rows) when the model wraps a
    negative one; None for anything else (or a computation that cannot be run on its own)."""
    import onnx
    import onnxruntime as ort

    used = {name for node in nodes for name in node.input}
    graph = model.graph
    try:
        part = onnx.helper.make_model(
            onnx.helper.make_graph(nodes, "index", [next(v for v in graph.input if v.name == source)],
                                   [onnx.helper.make_empty_tensor_value_info(indices)],
                                   initializer=[t for t in graph.initializer if t.name in used]),
            opset_imports=model.opset_import, ir_version=model.ir_version)
        session = ort.InferenceSession(part.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - a computation this cannot run alone is left to ONNX Runtime's own bounds
        return None
    feed = session.get_inputs()[0]
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in feed.shape]
    dtype = np.int32 if feed.type == "tensor(int32)" else np.int64
    candidates = (-rows - 1, -rows, -rows // 2, -1, 0, rows // 2, rows - 1, rows)
    valid = []
    for value in candidates:
        try:
            [index] = session.run(None, {feed.name: np.full(shape, value, dtype=dtype)})
        except Exception:  # noqa: BLE001
            return None
        index = np.asarray(index)
        if index.size == 0 or index.dtype.kind not in "iu" or not np.all(index == index.flat[0]):
            return None  # not an index computed value by value
        valid.append(0 <= int(index.flat[0]) < rows)
    if valid == [False, False, False, False, True, True, True, False]:
        return (0, rows)
    if valid == [False, True, True, True, True, True, True, False]:
        return (-rows, rows)
    return None
