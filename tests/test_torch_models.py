"""PyTorch models (torch.export .pt2 and TorchScript .pt) exported to ONNX at packaging: the ONNX
file ONNX Runtime serves gives torch's outputs on new inputs, and models cloudml cannot serve are
refused with the reason, leaving nothing behind."""

from __future__ import annotations

import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from cloudml.backends.onnx import OnnxBackend  # noqa: E402
from cloudml.contract import ONNX_FILE  # noqa: E402
from cloudml.errors import ExitCode, ModelError, ProviderUnavailable  # noqa: E402
from cloudml.packaging.conversion.torch import TORCH_TOLERANCE, export_torch  # noqa: E402

ATOL, RTOL = TORCH_TOLERANCE.atol, TORCH_TOLERANCE.rtol
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(6, 16)
        self.out = nn.Linear(16, 3)

    def forward(self, features):
        return self.out(torch.relu(self.hidden(features)))


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 4 * 4, 5)

    def forward(self, image):
        return self.fc(torch.flatten(self.pool(torch.relu(self.conv(image))), 1))


class Eigen(nn.Module):
    """Uses torch.linalg.eigh, which torch.onnx 2.13 has no ONNX function for."""

    def forward(self, x):
        return torch.linalg.eigh(x @ x.mT).eigenvalues


MODELS = {"mlp": (MLP, (6,)), "cnn": (CNN, (1, 8, 8))}


def _built(kind: str):
    torch.manual_seed(0)
    cls, shape = MODELS[kind]
    return cls().eval(), shape


def _save_pt2(model, shape, path: Path) -> Path:
    program = torch.export.export(model, (torch.randn(2, *shape),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(path))
    return path


def _save_script(model, path: Path) -> Path:
    torch.jit.script(model).save(str(path))
    return path


def _assert_serves_like_torch(model, shape, version_dir: Path, result) -> None:
    backend = OnnxBackend(version_dir / result.onnx.file, inputs=result.onnx.inputs, outputs=result.onnx.outputs)
    (input_name,) = result.signature.inputs
    (output_name,) = result.signature.outputs
    rng = np.random.default_rng(7)
    for batch in (3, 16):
        x = rng.standard_normal((batch, *shape)).astype(np.float32)
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        got = backend.run({input_name: x})[output_name]
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL)


def _nothing_left(version_dir: Path) -> bool:
    return not version_dir.exists() or not any(version_dir.iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_torch_export_program_serves_torch_outputs(tmp_path, kind, capfd):
    model, shape = _built(kind)
    pt2 = _save_pt2(model, shape, tmp_path / f"{kind}.pt2")
    version_dir = tmp_path / "pkg" / "1"
    started = time.perf_counter()
    result = export_torch(pt2, "pt2", version_dir, sample=None, what=pt2)
    assert capfd.readouterr().out == ""  # stdout may carry the CLI's --json output
    with capfd.disabled():
        print(f"{kind}.pt2 exported and verified in {time.perf_counter() - started:.2f}s")
    assert (version_dir / ONNX_FILE).is_file()
    spec = result.signature.inputs[next(iter(result.signature.inputs))]
    assert spec.dtype == "float32" and spec.shape == [None, *shape]
    assert result.verification.passed and result.verification.probes >= 3
    assert result.onnx.producer == f"pytorch {torch.__version__.split('+')[0]}"
    _assert_serves_like_torch(model, shape, version_dir, result)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_torchscript_with_a_sample_serves_torch_outputs(tmp_path, kind):
    model, shape = _built(kind)
    pt = _save_script(model, tmp_path / f"{kind}.pt")
    sample = np.random.default_rng(1).standard_normal((2, *shape)).round(3).tolist()
    version_dir = tmp_path / "pkg" / "1"
    started = time.perf_counter()
    result = export_torch(pt, "torchscript", version_dir, sample=sample, what=pt)
    print(f"{kind}.pt exported and verified in {time.perf_counter() - started:.2f}s")
    name = "features" if kind == "mlp" else "image"
    assert result.signature.inputs[name].shape == [None, *shape]
    assert result.verification.passed and result.verification.used_sample
    _assert_serves_like_torch(model, shape, version_dir, result)


@pytest.mark.slow
def test_dynamic_sequence_length_and_dict_outputs(tmp_path):
    class Pool(nn.Module):
        def forward(self, tokens, weights):
            return {"mean": (tokens * weights.unsqueeze(-1)).mean(dim=1), "max": tokens.amax(dim=1)}

    batch, steps = torch.export.Dim("batch"), torch.export.Dim("steps", min=2, max=64)
    program = torch.export.export(Pool(), (torch.randn(2, 5, 3), torch.rand(2, 5)),
                                  dynamic_shapes={"tokens": {0: batch, 1: steps}, "weights": {0: batch, 1: steps}})
    pt2 = tmp_path / "pool.pt2"
    torch.export.save(program, str(pt2))
    sample = [{"tokens": [[0.5, -1.0, 2.0]] * 7, "weights": [1.0] * 7}]
    result = export_torch(pt2, "pt2", tmp_path / "1", sample=sample, what=pt2)
    assert result.verification.used_sample and result.verification.probes == 6  # 2 batches x 2 lengths, the example, the sample
    assert result.signature.inputs["tokens"].shape == [None, None, 3]
    assert set(result.signature.outputs) == {"mean", "max"}
    backend = OnnxBackend(tmp_path / "1" / ONNX_FILE, inputs=result.onnx.inputs, outputs=result.onnx.outputs)
    tokens, weights = np.random.default_rng(3).standard_normal((4, 11, 3)).astype(np.float32), np.ones((4, 11), np.float32)
    got = backend.run({"tokens": tokens, "weights": weights})
    np.testing.assert_allclose(got["max"], tokens.max(axis=1), atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(got["mean"], tokens.mean(axis=1), atol=ATOL, rtol=RTOL)


def test_torchscript_with_two_inputs_takes_a_sample_of_dicts(tmp_path, capfd):
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(20, 4)

        def forward(self, ids, scale):
            return self.embed(ids).mean(dim=1) * scale, ids.sum(dim=1)

    torch.manual_seed(0)
    model = Scaled().eval()
    pt = _save_script(model, tmp_path / "scaled.pt")
    sample = [{"ids": [1, 5, 19], "scale": [2.0]}, {"ids": [0, 3, 7], "scale": [0.5]}]
    result = export_torch(pt, "torchscript", tmp_path / "1", sample=sample, what=pt)
    assert {name: (spec.dtype, spec.shape) for name, spec in result.signature.inputs.items()} == {"ids": ("int64", [None, 3]), "scale": ("float32", [None, 1])}
    assert list(result.signature.outputs) == ["output_0", "output_1"]
    backend = OnnxBackend(tmp_path / "1" / ONNX_FILE, inputs=result.onnx.inputs, outputs=result.onnx.outputs)
    ids, scale = np.array([[2, 4, 6], [19, 0, 1], [3, 3, 3]]), np.array([[1.0], [-1.0], [3.0]], np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(ids), torch.from_numpy(scale))
    got = backend.run({"ids": ids, "scale": scale})
    np.testing.assert_allclose(got["output_0"], want[0].numpy(), atol=ATOL, rtol=RTOL)
    np.testing.assert_array_equal(got["output_1"], want[1].numpy())
    # torch refuses an id outside its table, negative ones too; so does the served ONNX graph.
    assert result.onnx.index_ranges == {"ids": (0, 20)}
    served = OnnxBackend(tmp_path / "1" / ONNX_FILE, inputs=result.onnx.inputs, outputs=result.onnx.outputs, index_ranges=result.onnx.index_ranges)
    for bad in (-1, 20):
        with pytest.raises(IndexError):
            model(torch.tensor([[1, bad, 2]]), torch.ones(1, 1))
        with pytest.raises(served.rejects, match=rf"input 'ids' holds {bad} at \[0, 1\], outside \[0, 20\)"):
            served.run({"ids": np.array([[1, bad, 2]]), "scale": np.ones((1, 1), np.float32)})
    assert capfd.readouterr().out == ""  # stdout may carry the CLI's --json output


def test_torchscript_with_an_op_its_exporter_cannot_map_is_refused(tmp_path, capfd):
    pt = _save_script(Eigen(), tmp_path / "eigen.pt")
    with pytest.raises(ModelError) as caught:
        export_torch(pt, "torchscript", tmp_path / "1", sample=[[[1.0, 2.0], [3.0, 4.0]]], what=pt)
    assert "the operator aten::mT has no ONNX mapping in torch.onnx's TorchScript exporter" in caught.value.message
    assert "torch.export" in caught.value.hint
    assert capfd.readouterr().out == ""  # the exporter's IR dump is not printed
    assert _nothing_left(tmp_path / "1")


def test_torchscript_without_a_sample_is_refused(tmp_path):
    model, _ = _built("mlp")
    pt = _save_script(model, tmp_path / "mlp.pt")
    with pytest.raises(ModelError) as caught:
        export_torch(pt, "torchscript", tmp_path / "1", sample=None, what=pt)
    assert "records no input shapes" in caught.value.message and "--sample" in caught.value.hint
    assert caught.value.exit_code == ExitCode.MODEL
    assert _nothing_left(tmp_path / "1")


def test_torchscript_with_a_sample_of_the_wrong_shape_is_refused(tmp_path):
    model, _ = _built("mlp")
    pt = _save_script(model, tmp_path / "mlp.pt")
    with pytest.raises(ModelError) as caught:
        export_torch(pt, "torchscript", tmp_path / "1", sample=[[0.1, 0.2, 0.3]], what=pt)  # 3 features, the model takes 6
    message = caught.value.message
    assert "mlp.pt failed on the sample" in message and "cannot be multiplied (1x3 and 6x16)" in message and "shapes" in caught.value.hint
    assert _nothing_left(tmp_path / "1")


def test_ragged_sample_is_refused(tmp_path):
    model, _ = _built("mlp")
    pt = _save_script(model, tmp_path / "mlp.pt")
    with pytest.raises(ModelError, match="differ in shape"):
        export_torch(pt, "torchscript", tmp_path / "1", sample=[[0.1] * 6, [0.1] * 5], what=pt)


def test_pt2_with_a_sample_of_the_wrong_shape_is_refused(tmp_path):
    model, shape = _built("mlp")
    pt2 = _save_pt2(model, shape, tmp_path / "mlp.pt2")
    with pytest.raises(ModelError) as caught:
        export_torch(pt2, "pt2", tmp_path / "1", sample=[[1.0, 2.0]], what=pt2)
    assert "has shape [2] per instance" in caught.value.message and "float32[6]" in caught.value.message
    assert _nothing_left(tmp_path / "1")


@pytest.mark.parametrize("fmt", ["torchscript", "pt2"])
def test_a_state_dict_is_refused_as_weights_only(tmp_path, fmt):
    model, _ = _built("mlp")
    path = tmp_path / ("weights.pt" if fmt == "torchscript" else "weights.pt2")
    torch.save(model.state_dict(), path)
    with pytest.raises(ModelError) as caught:
        export_torch(path, fmt, tmp_path / "1", sample=[[0.0] * 6], what=path)
    assert "not only its weights" in caught.value.message
    assert "torch.jit.script(model).save" in caught.value.hint and "torch.export.save" in caught.value.hint
    assert _nothing_left(tmp_path / "1")


@pytest.mark.parametrize("fmt", ["pt2", "torchscript"])
def test_a_corrupt_file_is_refused_quickly(tmp_path, fmt):
    model, shape = _built("mlp")
    good = _save_pt2(model, shape, tmp_path / "good.pt2") if fmt == "pt2" else _save_script(model, tmp_path / "good.pt")
    bad = tmp_path / ("bad.pt2" if fmt == "pt2" else "bad.pt")
    # A zip with every entry but with the model's own record cut short.
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, data[: len(data) // 3] if info.filename.endswith(("model.json", "data.pkl")) else data)
    version_dir = tmp_path / "pkg" / "1"
    version_dir.mkdir(parents=True)
    (version_dir / "keep.txt").write_text("already here")
    started = time.perf_counter()
    with pytest.raises(ModelError) as caught:
        export_torch(bad, fmt, version_dir, sample=[[0.0] * 6], what=bad)
    assert time.perf_counter() - started < 5
    assert "could not read" in caught.value.message and "bad.pt" in caught.value.message
    assert [p.name for p in version_dir.iterdir()] == ["keep.txt"]


def test_a_file_that_is_not_a_zip_is_refused(tmp_path):
    path = tmp_path / "model.pt2"
    path.write_bytes(b"not a model at all")
    with pytest.raises(ModelError, match="not a PyTorch archive"):
        export_torch(path, "pt2", tmp_path / "1", sample=None, what=path)


@pytest.mark.slow
def test_a_program_with_an_op_onnx_cannot_express_is_refused_naming_it(tmp_path, capfd):
    program = torch.export.export(Eigen(), (torch.randn(2, 4, 4),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    pt2 = tmp_path / "eigen.pt2"
    torch.export.save(program, str(pt2))
    version_dir = tmp_path / "pkg" / "1"
    with pytest.raises(ModelError) as caught:
        export_torch(pt2, "pt2", version_dir, sample=None, what=pt2)
    assert "aten._linalg_eigh has no ONNX mapping" in caught.value.message and "eigen.pt2" in caught.value.message
    assert "custom_translation_table" in caught.value.hint
    assert capfd.readouterr().out == ""
    assert _nothing_left(version_dir)


@pytest.mark.slow
def test_a_program_whose_onnx_outputs_differ_from_torch_is_refused(tmp_path):
    class Noisy(nn.Module):
        """Adds noise: ONNX Runtime's random numbers are not torch's, so the outputs cannot agree."""

        def forward(self, x):
            return x + torch.randn_like(x)

    program = torch.export.export(Noisy(), (torch.randn(2, 3),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    pt2 = tmp_path / "noisy.pt2"
    torch.export.save(program, str(pt2))
    with pytest.raises(ModelError) as caught:
        export_torch(pt2, "pt2", tmp_path / "1", sample=None, what=pt2)
    assert "does not match torch: output 'output_0' differs by up to" in caught.value.message
    assert _nothing_left(tmp_path / "1")


def test_a_program_with_a_fixed_batch_is_refused(tmp_path):
    model, shape = _built("mlp")
    program = torch.export.export(model, (torch.randn(2, *shape),))
    pt2 = tmp_path / "fixed.pt2"
    torch.export.save(program, str(pt2))
    with pytest.raises(ModelError) as caught:
        export_torch(pt2, "pt2", tmp_path / "1", sample=None, what=pt2)
    assert "fixed first dimension of 2" in caught.value.message and "torch.export.Dim('batch')" in caught.value.hint


def test_without_torch_installed_the_error_says_what_to_install(tmp_path, monkeypatch):
    model, shape = _built("mlp")
    pt2 = _save_pt2(model, shape, tmp_path / "mlp.pt2")
    monkeypatch.setitem(sys.modules, "torch", None)  # what `import torch` meets where torch is not installed
    with pytest.raises(ProviderUnavailable) as caught:
        export_torch(pt2, "pt2", tmp_path / "1", sample=None, what=pt2)
    assert "needs torch, which is not installed" in caught.value.message and "pip install torch" in caught.value.hint
    assert caught.value.exit_code == ExitCode.PROVIDER_UNAVAILABLE
    assert _nothing_left(tmp_path / "1")
