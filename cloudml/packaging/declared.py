"""What a Keras model config makes Keras allocate before it reads a single weight.

Keras builds every layer from the config, allocating and initialising its variables, and only
then reads the weights: a config declaring a Dense layer of 10**9 units costs gigabytes even when
the file stores no weights at all. This counts, without Keras, the parameters of the layer types
that hold a model's weights. A count is exact where the config records the layer's input shape
(every built layer of a `.keras` file, the inputs of a Functional model) or where it follows from
the layers before it in a Sequential model (a legacy `.h5` records only the model's input), else
a lower bound: an unknown dimension counts as 1, and a quantized layer half (int4 packs two
values in one stored). A layer type not known here counts nothing, so nothing is refused on
guesswork; nested Sequential and Functional models and wrappers (Bidirectional,
TimeDistributed, RNN cells) are walked. Counting never over-states what Keras allocates: the
tests check it layer by layer against Keras.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Shape = list  # a layer's input shape as the config records it: ints and None (batch first)


@dataclass(frozen=True)
class Declared:
    path: str  # the layer's name, below the models and wrappers that hold it: "model/inner/dense"
    class_name: str
    params: int
    detail: str  # the settings that decide `params`, e.g. "units=1000000000"
    itemsize: int  # bytes per parameter, from the layer's dtype policy

    @property
    def nbytes(self) -> int:
        return self.params * self.itemsize


def _count(value: Any) -> int | None:
    """A whole number the config gives (bools and negatives are not), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _dims(shape: Shape | None) -> list[int]:
    return [d if (d := _count(x)) is not None else 1 for x in shape] if shape else []


def _axis_size(shape: Shape | None, axis: Any) -> int:
    """The product of the dimensions at `axis` (an int or a list of them), 1 where unknown."""
    dims = _dims(shape)
    axes = axis if isinstance(axis, list) else [axis]
    size = 1
    for a in axes:
        if isinstance(a, int) and not isinstance(a, bool) and dims and -len(dims) <= a < len(dims):
            size *= dims[a]
    return size


def _last(shape: Shape | None) -> int:
    dims = _dims(shape)
    return dims[-1] if dims else 1


def _channels(cfg: dict, shape: Shape | None) -> int:
    dims = _dims(shape)
    if not dims:
        return 1
    return dims[1] if cfg.get("data_format") == "channels_first" and len(dims) > 1 else dims[-1]


def _kernel(cfg: dict, rank: int) -> int | None:
    size = cfg.get("kernel_size")
    sizes = [size] * rank if not isinstance(size, list) else size
    counts = [_count(s) for s in sizes]
    return None if not counts or None in counts else math.prod(c for c in counts if c is not None)


def _bias(cfg: dict, n: int) -> int:
    return n if cfg.get("use_bias", True) else 0


def _lora(cfg: dict, rows: int, cols: int) -> int:
    rank = _count(cfg.get("lora_rank")) or 0
    return rank * (rows + cols)


Counted = tuple[int, str] | None


def _dense(cfg: dict, shape: Shape | None) -> Counted:
    units = _count(cfg.get("units"))
    if units is None:
        return None
    fan_in = _last(shape)
    return fan_in * units + _bias(cfg, units) + _lora(cfg, fan_in, units), f"units={units}"


def _embedding(cfg: dict, shape: Shape | None) -> Counted:
    rows, cols = _count(cfg.get("input_dim")), _count(cfg.get("output_dim"))
    if rows is None or cols is None:
        return None
    return rows * cols + _lora(cfg, rows, cols), f"input_dim={rows}, output_dim={cols}"


def _conv(rank: int, kind: str) -> Callable[[dict, Shape | None], Counted]:
    def count(cfg: dict, shape: Shape | None) -> Counted:
        kernel = _kernel(cfg, rank)
        filters = _count(cfg.get("filters"))
        channels = _channels(cfg, shape)
        multiplier = _count(cfg.get("depth_multiplier"))
        if kind == "depthwise":
            if kernel is None or multiplier is None:
                return None
            return kernel * channels * multiplier + _bias(cfg, channels * multiplier), f"kernel_size={cfg.get('kernel_size')}, depth_multiplier={multiplier}"
        if kernel is None or filters is None:
            return None
        detail = f"filters={filters}, kernel_size={cfg.get('kernel_size')}"
        if kind == "separable":
            if multiplier is None:
                return None
            return kernel * channels * multiplier + channels * multiplier * filters + _bias(cfg, filters), detail
        if kind == "lstm":
            return 4 * filters * kernel * (channels + filters) + _bias(cfg, 4 * filters), detail
        groups = _count(cfg.get("groups")) or 1
        per_filter = channels if kind == "transpose" else max(channels // groups, 1)
        return kernel * per_filter * filters + _bias(cfg, filters), detail

    return count


def _recurrent(gates: int) -> Callable[[dict, Shape | None], Counted]:
    def count(cfg: dict, shape: Shape | None) -> Counted:
        units = _count(cfg.get("units"))
        if units is None:
            return None
        biases = gates * units * (2 if gates == 3 and cfg.get("reset_after", True) else 1)
        return gates * units * (_last(shape) + units) + _bias(cfg, biases), f"units={units}"

    return count


def _normalization(variables: Callable[[dict], int]) -> Callable[[dict, Shape | None], Counted]:
    def count(cfg: dict, shape: Shape | None) -> Counted:
        axis = cfg.get("axis", -1)
        return variables(cfg) * _axis_size(shape, axis), f"axis={axis}"

    return count


def _attention(cfg: dict, shapes: dict) -> Counted:
    heads, key_dim = _count(cfg.get("num_heads")), _count(cfg.get("key_dim"))
    if heads is None or key_dim is None:
        return None
    value_dim = _count(cfg.get("value_dim")) or key_dim
    query = _last(shapes.get("query_shape"))
    value = _last(shapes.get("value_shape"))
    key = _last(shapes["key_shape"] if "key_shape" in shapes and shapes["key_shape"] is not None else shapes.get("value_shape"))
    output = _count(cfg.get("output_shape")) or query
    kernels = heads * (key_dim * (query + key) + value_dim * value + value_dim * output)
    return kernels + _bias(cfg, heads * (2 * key_dim + value_dim) + output), f"num_heads={heads}, key_dim={key_dim}"


def _einsum_dense(cfg: dict, shape: Shape | None) -> Counted:
    """The kernel is the weight operand of `equation`: each of its axes sized by the input's or
    `output_shape` (which leaves out the batch). With "..." in it, unknown axes count as 1."""
    equation = cfg.get("equation")
    if not isinstance(equation, str) or equation.count(",") != 1 or equation.count("->") != 1:
        return None
    operands, output_spec = equation.replace(" ", "").split("->")
    input_spec, weight_spec = operands.split(",")
    if "..." in weight_spec:
        return None
    declared = cfg.get("output_shape")
    output = [None, *(declared if isinstance(declared, list) else [declared])]
    elided = "..." in input_spec or "..." in output_spec
    inputs = dict(zip(input_spec, _dims(shape))) if not elided and len(_dims(shape)) == len(input_spec) else {}
    outputs = dict(zip(output_spec, _dims(output))) if not elided and len(output) == len(output_spec) else {}
    kernel = math.prod(inputs.get(axis) or outputs.get(axis) or 1 for axis in weight_spec)
    bias_axes = cfg.get("bias_axes") if isinstance(cfg.get("bias_axes"), str) else ""
    bias = math.prod(outputs.get(axis) or 1 for axis in bias_axes) if bias_axes else 0
    return kernel + bias, f"equation={equation!r}, output_shape={declared}"


def _prelu(cfg: dict, shape: Shape | None) -> Counted:
    dims = _dims(shape)[1:]
    shared = cfg.get("shared_axes") or []
    shared = shared if isinstance(shared, list) else [shared]
    return math.prod(1 if i + 1 in shared else d for i, d in enumerate(dims)), "alpha per input element"


_COUNTERS: dict[str, Callable[[dict, Shape | None], Counted]] = {
    "Dense": _dense,
    "Embedding": _embedding,
    "EinsumDense": _einsum_dense,
    "LSTM": _recurrent(4), "LSTMCell": _recurrent(4),
    "GRU": _recurrent(3), "GRUCell": _recurrent(3),
    "SimpleRNN": _recurrent(1), "SimpleRNNCell": _recurrent(1),
    "BatchNormalization": _normalization(lambda c: 2 + bool(c.get("scale", True)) + bool(c.get("center", True))),
    "LayerNormalization": _normalization(lambda c: bool(c.get("scale", True)) + bool(c.get("center", True))),
    "GroupNormalization": _normalization(lambda c: bool(c.get("scale", True)) + bool(c.get("center", True))),
    "RMSNormalization": _normalization(lambda c: 1),
    "Normalization": _normalization(lambda c: 2),  # mean and variance
    "PReLU": _prelu,
}
for _rank in (1, 2, 3):
    for _name, _kind in ((f"Conv{_rank}D", "conv"), (f"Convolution{_rank}D", "conv"), (f"Conv{_rank}DTranspose", "transpose"),
                         (f"Convolution{_rank}DTranspose", "transpose"), (f"ConvLSTM{_rank}D", "lstm"), (f"ConvLSTM{_rank}DCell", "lstm")):
        _COUNTERS[_name] = _conv(_rank, _kind)
    if _rank < 3:
        _COUNTERS[f"SeparableConv{_rank}D"] = _COUNTERS[f"SeparableConvolution{_rank}D"] = _conv(_rank, "separable")
        _COUNTERS[f"DepthwiseConv{_rank}D"] = _conv(_rank, "depthwise")


def _flat_shape(value: Any) -> Shape | None:
    """A shape (ints and None), or the first one in a list or dict of shapes."""
    if isinstance(value, list) and all(v is None or _count(v) is not None for v in value):
        return value
    values = list(value.values()) if isinstance(value, dict) else value if isinstance(value, list) else []
    return next((s for s in map(_flat_shape, values) if s is not None), None)


def _tensor_shapes(value: Any) -> list[Shape]:
    """The shapes of the Keras tensors in `value`, in order."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__" and isinstance(value.get("config"), dict):
            shape = _flat_shape(value["config"].get("shape"))
            return [shape] if shape is not None else []
        return [s for v in value.values() for s in _tensor_shapes(v)]
    if isinstance(value, list):
        return [s for v in value for s in _tensor_shapes(v)]
    return []


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _input_shapes(node: dict, cfg: dict, inherited: Shape | None) -> dict[str, Shape | None]:
    """The input shapes the config records for a layer: `input` (its first input), and for
    attention layers `query_shape`, `value_shape`, `key_shape`."""
    build = _dict(node.get("build_config"))
    shapes: dict[str, Shape | None] = {k: _flat_shape(v) for k, v in _dict(build.get("shapes_dict")).items()}
    # What its first call passed, as a Functional model records it: by position, and `key` by name.
    first = _dict(next(iter(_list(node.get("inbound_nodes"))), None))
    nodes = [next(iter(_tensor_shapes(arg)), None) for arg in _list(first.get("args"))]
    kwargs = _dict(first.get("kwargs"))
    shape = (_flat_shape(build.get("input_shape")) or next(iter(shapes.values()), None) or next((n for n in nodes if n), None)
             or _flat_shape(cfg.get("batch_input_shape")) or inherited)
    if not shapes and nodes:  # an attention layer's call: query, value, key (the value when not given)
        query, value, key = (nodes + [None, None, None])[:3]
        key = key or next(iter(_tensor_shapes(kwargs.get("key"))), None) or (value if "key" not in kwargs and len(nodes) < 3 else [None])
        shapes = {"query_shape": query, "value_shape": value, "key_shape": key}
    shapes.setdefault("query_shape", shape)
    return {"input": shape, **shapes}


def _quantized(cfg: dict) -> bool:
    """Whether a layer's (or a model's) dtype policy quantizes: int4 packs two values in one stored."""
    policy = cfg.get("dtype")
    if isinstance(policy, dict):
        inner = policy.get("config")
        if policy.get("class_name") not in ("DTypePolicy", "FloatDTypePolicy"):
            return True
        policy = inner.get("name") if isinstance(inner, dict) else None
    return isinstance(policy, str) and "_from_" in policy


def _itemsize(cfg: dict) -> int:
    policy = cfg.get("dtype")
    if isinstance(policy, dict):
        inner = policy.get("config")
        policy = inner.get("name") if isinstance(inner, dict) else None
    return {"float64": 8, "float16": 2, "bfloat16": 2}.get(policy, 4) if isinstance(policy, str) else 4


_SAME_SHAPE = {
    "Activation", "ActivityRegularization", "AlphaDropout", "BatchNormalization", "Dropout", "ELU", "GaussianDropout",
    "GaussianNoise", "GroupNormalization", "LayerNormalization", "LeakyReLU", "Masking", "PReLU", "ReLU", "Rescaling",
    "RMSNormalization", "Softmax", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "UnitNormalization",
}


def _spatial(cfg: dict, shape: Shape, window_key: str, default_stride: Any) -> Shape | None:
    """The shape out of a convolution or pooling over the middle dimensions (channels last)."""
    rank = len(shape) - 2
    if rank < 1 or cfg.get("data_format", "channels_last") != "channels_last":
        return None
    windows = cfg.get(window_key)
    windows = windows if isinstance(windows, list) else [windows] * rank
    strides = cfg.get("strides") or default_stride or windows  # pooling strides default to the window
    strides = strides if isinstance(strides, list) else [strides] * rank
    dilations = cfg.get("dilation_rate", 1)
    dilations = dilations if isinstance(dilations, list) else [dilations] * rank
    padding = cfg.get("padding", "valid")
    out: Shape = [shape[0]]
    for n, k, stride, dilation in zip(shape[1:-1], windows, strides, dilations):
        n, k, stride, dilation = _count(n), _count(k), _count(stride), _count(dilation)
        if n is None or not k or not stride or not dilation or padding not in ("valid", "same", "causal"):
            out.append(None)
        elif padding == "valid":
            out.append(max((n - dilation * (k - 1) - 1) // stride + 1, 0))
        else:
            out.append(-(-n // stride))
    return out + [shape[-1]]


def _output_shape(class_name: str, cfg: dict, shape: Shape | None) -> Shape | None:
    """The shape a Sequential model's layer passes to the next, for the common layers; None
    where it is not worked out here. Only used where the config records no input shape."""
    if class_name == "InputLayer":
        return _flat_shape(cfg.get("batch_shape") or cfg.get("batch_input_shape"))
    if shape is None:
        return None
    if class_name in _SAME_SHAPE:
        return shape
    if class_name == "Dense" and _count(cfg.get("units")) is not None:
        return shape[:-1] + [cfg["units"]]
    if class_name == "Embedding" and _count(cfg.get("output_dim")) is not None:
        return shape + [cfg["output_dim"]]
    if class_name == "Reshape" and isinstance(cfg.get("target_shape"), list):
        return _flat_shape([shape[0], *cfg["target_shape"]])
    if class_name == "Flatten" and cfg.get("data_format", "channels_last") == "channels_last":
        dims = [_count(d) for d in shape[1:]]
        return [shape[0], None if None in dims else math.prod(d for d in dims if d is not None)]
    if class_name in ("LSTM", "GRU", "SimpleRNN") and _count(cfg.get("units")) is not None:
        return shape[:-1] + [cfg["units"]] if cfg.get("return_sequences") else [shape[0], cfg["units"]]
    conv = class_name.startswith(("Conv", "Convolution", "SeparableConv")) and class_name.endswith("D") and "LSTM" not in class_name
    if conv and _count(cfg.get("filters")) is not None:
        out = _spatial(cfg, shape, "kernel_size", 1)
        return out[:-1] + [cfg["filters"]] if out else None
    if class_name.startswith(("MaxPooling", "AveragePooling")):
        return _spatial(cfg, shape, "pool_size", None)
    if class_name.startswith(("GlobalMaxPooling", "GlobalAveragePooling")) and not cfg.get("keepdims"):
        return [shape[0], shape[-1]] if cfg.get("data_format", "channels_last") == "channels_last" else None
    return None


def declared_variables(config: Any) -> list[Declared]:
    """The parameters each known layer of a Keras model config declares (see the module doc)."""
    found: list[Declared] = []
    _walk(config, "", None, found, False)
    return found


def _walk(node: Any, prefix: str, inherited: Shape | None, found: list[Declared], quantized: bool) -> Shape | None:
    """Records what `node` and the layers inside it declare; returns the shape it outputs, where
    a Sequential model's next layer may take it from."""
    node = _dict(node)
    class_name = node.get("class_name")
    if not isinstance(class_name, str):
        return None
    layers = node["config"] if isinstance(node.get("config"), list) else _dict(node.get("config")).get("layers")
    cfg = _dict(node.get("config"))
    name = cfg["name"] if isinstance(cfg.get("name"), str) else class_name
    path = f"{prefix}/{name}" if prefix else name
    quantized = quantized or _quantized(cfg)  # a model's policy (a DTypePolicyMap) may quantize its layers
    if isinstance(layers, list):  # a Sequential or Functional model, at any depth
        passed = None
        for layer in layers:
            passed = _walk(layer, path, passed if class_name == "Sequential" else None, found, quantized)
        return None
    shapes = _input_shapes(node, cfg, inherited)
    shape = shapes["input"]
    inner_shape = shape[:1] + shape[2:] if class_name == "TimeDistributed" and shape else shape
    backward = cfg.get("layer") if class_name == "Bidirectional" and cfg.get("backward_layer") is None else cfg.get("backward_layer")
    _walk(cfg.get("layer"), path, inner_shape, found, quantized)
    _walk(backward, path, inner_shape, found, quantized)  # Bidirectional copies the forward layer if none is given
    for cell in _list(cfg.get("cells")) or ([cfg["cell"]] if "cell" in cfg else []):  # each takes the one before's output
        _walk(cell, path, inner_shape, found, quantized)
        inner_shape = (inner_shape or [None])[:-1] + [_count(_dict(_dict(cell).get("config")).get("units"))]
    counter = _COUNTERS.get(class_name)
    counted = _attention(cfg, shapes) if class_name == "MultiHeadAttention" else counter(cfg, shape) if counter else None
    if counted is not None:
        params, detail = counted
        if quantized:
            params, detail = params // 2, f"{detail}, quantized"
        found.append(Declared(path, class_name, params, detail, _itemsize(cfg)))
    return _output_shape(class_name, cfg, shape)
