"""Vertex AI's custom-container contract: health and predict on the routes it names in
AIP_HEALTH_ROUTE and AIP_PREDICT_ROUTE; `{"instances", "parameters"}` -> `{"predictions"}`."""

from __future__ import annotations

import os

from starlette.responses import Response

from cloudml.serving.http.contract import Contract, Route
from cloudml.serving.http.request import HttpRequest


class Vertex(Contract):
    def routes(self) -> list[Route]:
        return [
            ("GET", os.environ.get("AIP_HEALTH_ROUTE", "/health"), self.health),
            ("POST", os.environ.get("AIP_PREDICT_ROUTE", "/predict"), self.predict_route),
        ]

    async def predict_route(self, request: HttpRequest) -> Response:
        return await self.predict_json(request, columnar=False)
