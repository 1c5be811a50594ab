"""TF Serving's REST API: model status, metadata and predict, row or columnar."""

from __future__ import annotations

from starlette.responses import Response

from cloudml.serving.errors import InvalidInput
from cloudml.serving.http.codecs import parse_json
from cloudml.serving.http.contract import Contract, Route
from cloudml.serving.http.request import HttpRequest
from cloudml.serving.http.responses import json_response

# TF Serving's DataType enum names where they differ from "DT_" + the numpy name.
_TF_DTYPE_NAMES = {"float16": "DT_HALF", "float32": "DT_FLOAT", "float64": "DT_DOUBLE", "string": "DT_STRING"}


class TFServing(Contract):
    def routes(self) -> list[Route]:
        base, version = "/v1/models/{model_name}", "/v1/models/{model_name}/versions/{version}"
        return [
            ("POST", base + ":predict", self.predict_route),
            ("POST", version + ":predict", self.predict_route),
            ("GET", base + "/metadata", self.metadata),
            ("GET", version + "/metadata", self.metadata),
            ("GET", base, self.status),
            ("GET", version, self.status),
        ]

    def _check_model(self, request: HttpRequest) -> None:
        params = request.path_params
        self.plane.check_model(params.get("model_name"), params.get("version"))

    async def status(self, request: HttpRequest) -> Response:
        self._check_model(request)
        state = "AVAILABLE" if self.plane.ready else "LOADING"
        version = {"version": str(self.plane.model.version), "state": state, "status": {"error_code": "OK", "error_message": ""}}
        return json_response({"model_version_status": [version]})

    async def metadata(self, request: HttpRequest) -> Response:
        self._check_model(request)
        model, sig = self.plane.model, self.plane.signature

        def tensors(specs):
            return {
                name: {
                    "dtype": _TF_DTYPE_NAMES.get(spec.dtype, "DT_" + spec.dtype.upper()),
                    "tensor_shape": {"dim": [{"size": str(-1 if d is None else d), "name": ""} for d in (spec.shape or [])],
                                     "unknown_rank": spec.shape is None},
                    "name": name,
                }
                for name, spec in specs.items()
            }

        return json_response({
            "model_spec": {"name": model.name, "signature_name": "", "version": str(model.version)},
            "metadata": {"signature_def": {"signature_def": {sig.name: {"inputs": tensors(sig.inputs), "outputs": tensors(sig.outputs),
                                                                        "method_name": "tensorflow/serving/predict"}}}},
        })

    async def predict_route(self, request: HttpRequest) -> Response:
        self._check_model(request)
        request.require_json()
        payload = parse_json(await self.read(request))
        if isinstance(payload, dict):
            signature = payload.get("signature_name", self.plane.signature.name)
            if signature != self.plane.signature.name:
                raise InvalidInput(f"signature {signature!r} is not served; use {self.plane.signature.name!r}")
        return await self.predict_payload(request, payload)
