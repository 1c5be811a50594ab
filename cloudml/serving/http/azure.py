"""Azure ML's custom-container contract: GET / (liveness), GET /ready, POST /score with
`{"data": [...]}`, `{"input_data": [...]}` or `{"instances": [...]}`."""

from __future__ import annotations

from starlette.responses import Response

from cloudml.serving.http.contract import Contract, Route
from cloudml.serving.http.request import HttpRequest
from cloudml.serving.http.responses import json_response


class Azure(Contract):
    def routes(self) -> list[Route]:
        return [("GET", "/", self.alive), ("GET", "/ready", self.health), ("POST", "/score", self.score)]

    async def alive(self, request: HttpRequest) -> Response:
        return json_response({"status": "alive"})

    async def score(self, request: HttpRequest) -> Response:
        return await self.predict_json(request, keys=("instances", "data", "input_data"), columnar=False)
