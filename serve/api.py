"""The HTTP API: `leadscore serve` runs `create_app` under uvicorn.

The model is loaded once (in the lifespan) and swapped whole on `POST /reload` or when the alias it was loaded
by points at a new version (`watch_seconds`). Scoring goes through `OnlineScorer`, which gives the numbers
`leadscore score` writes for the same leads.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import logging
import time
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from leadscore import __version__
from leadscore.serve.online import LeadError, OnlineScorer
from leadscore.serve.schemas import Health, Lead, ModelInfo, ScoreRequest, ScoreResponse

log = logging.getLogger(__name__)


@dataclass
class Loaded:
    """The model the server answers with, and where it came from."""

    online: OnlineScorer
    ref: dict[str, Any]
    loaded_at: float


def _load(model_uri: str, tracking_uri: str | None) -> Loaded:
    from leadscore.models.registry import model_reference
    from leadscore.serve.predictor import Predictor

    ref = model_reference(model_uri, tracking_uri=tracking_uri) if model_uri.startswith("models:/") else \
        {"uri": model_uri, "name": None, "version": None, "alias": None}
    predictor = Predictor.load(model_uri, tracking_uri=tracking_uri)
    return Loaded(OnlineScorer(predictor.scorer), ref, time.time())


class BodyLimit:
    """ASGI middleware: a request body larger than `limit` bytes is answered 413 before it is read whole."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for key, value in scope.get("headers", ()):
            if key == b"content-length" and value.isdigit() and int(value) > self.limit:
                if int(value) <= 8 * self.limit:
                    # Read and drop a moderately large body first: a client still sending it would otherwise
                    # see the connection reset (a broken pipe) instead of the 413. Nothing is kept.
                    await self._drain(receive)
                return await self._too_large(send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        try:
            return await self.app(scope, limited, send)
        except _TooLarge:
            return await self._too_large(send)

    @staticmethod
    async def _drain(receive) -> None:
        while True:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                return

    async def _too_large(self, send):
        body = f'{{"detail": "request body larger than {self.limit:,} bytes"}}'.encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


def create_app(model_uri: str, *, tracking_uri: str | None = None, api_key: str | None = None,
               max_body_bytes: int = 2_000_000, watch_seconds: float = 0.0, drift_window: int = 10_000) -> FastAPI:
    """The API for one model URI. `api_key`: required in the `X-API-Key` header of every call but /health.
    `drift_window`: how many of the latest scored leads `GET /drift` compares with training."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.loaded = await asyncio.to_thread(_load, model_uri, tracking_uri)
        app.state.recent = collections.deque(maxlen=drift_window)
        watcher = asyncio.create_task(_watch(app)) if watch_seconds > 0 and "@" in model_uri else None
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()

    async def _watch(app: FastAPI) -> None:
        from leadscore.models.registry import model_reference

        while True:
            await asyncio.sleep(watch_seconds)
            try:
                ref = await asyncio.to_thread(model_reference, model_uri, tracking_uri=tracking_uri)
                if ref["version"] and ref["version"] != app.state.loaded.ref.get("version"):
                    app.state.loaded = await asyncio.to_thread(_load, model_uri, tracking_uri)
                    log.warning("reloaded %s: version %s", model_uri, ref["version"])
            except Exception:  # noqa: BLE001 - a registry hiccup must not stop the server; the next poll retries
                log.exception("alias watch of %s failed", model_uri)

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("x-api-key", "")
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            raise HTTPException(status_code=401, detail="missing or wrong X-API-Key header")

    app = FastAPI(title="leadscore", version=__version__, lifespan=lifespan,
                  description="Calibrated lead conversion scores with reasons, as `leadscore score` gives them.")
    app.add_middleware(BodyLimit, limit=max_body_bytes)

    @app.get("/health", response_model=Health)
    async def health(request: Request):
        return {"status": "ok", "model": request.app.state.loaded.ref}

    @app.get("/model", response_model=ModelInfo, dependencies=[Depends(check_key)])
    async def model_info(request: Request):
        loaded: Loaded = request.app.state.loaded
        bundle = loaded.online.scorer.bundle
        spec = bundle.spec
        meta = bundle.meta or {}
        bands = loaded.online.scorer.bands
        return JSONResponse({
            "model": loaded.ref, "learner": meta.get("learner"), "training_window": meta.get("training_window", {}),
            "metrics": getattr(bundle, "metrics", None) or meta.get("metrics", {}),
            "bands": {"names": list(bands.names), "cutoffs": list(bands.cutoffs)},
            "schema": {"id_column": spec.id_column, "created_column": spec.created_column,
                       "numeric_columns": list(spec.numeric_columns),
                       "categorical_columns": {k: list(v) for k, v in spec.categorical_vocab.items()},
                       "event_types": list(spec.event_types), "windows": list(spec.windows),
                       "as_of_days": spec.as_of_days},
        })

    @app.post("/score", response_model=ScoreResponse, dependencies=[Depends(check_key)],
              responses={422: {"description": "A lead or field is invalid; `detail` names it"}})
    async def score(body: ScoreRequest | Lead, request: Request):
        loaded: Loaded = request.app.state.loaded
        single = isinstance(body, Lead)
        leads = [body] if single else body.leads
        records = [lead.model_dump() for lead in leads]
        as_of = None if single else body.as_of
        reasons = True if single else body.reasons
        try:
            result = loaded.online.score(records, as_of=as_of, reasons=reasons)
        except LeadError as exc:
            loc = ["body", exc.field] if single else ["body", "leads", exc.index, exc.field]
            return JSONResponse(status_code=422, content={"detail": [{"loc": loc, "msg": exc.message,
                                                                      "type": "value_error"}]})
        from leadscore.serve.expectations import input_warnings

        spec = loaded.online.spec
        warnings = input_warnings(spec, result.stats, scored_rows=len(result.leads), events_given=True,
                                  events_rows=sum(len(r.get("events") or ()) for r in records))
        recent = request.app.state.recent
        for values, lead in zip(result.rows or (), result.leads, strict=False):
            recent.append((values, lead["probability"]))
        return JSONResponse({"model": loaded.ref, "leads": result.leads, "warnings": warnings})

    @app.get("/drift", dependencies=[Depends(check_key)])
    async def drift(request: Request):
        """PSI per feature and of the score over the latest scored leads, expected conversions and ROC AUC."""
        import pandas as pd

        from leadscore.models.drift import DriftAccumulator

        loaded: Loaded = request.app.state.loaded
        reference = (loaded.online.scorer.bundle.meta or {}).get("reference")
        if not reference:
            raise HTTPException(status_code=404, detail="this model was saved without a training reference")
        recent = list(request.app.state.recent)
        accumulator = DriftAccumulator(reference)
        if recent:
            names = list(loaded.online.spec.feature_names)
            accumulator.add(pd.DataFrame([values for values, _ in recent], columns=names),
                            [p for _, p in recent])
        return JSONResponse({"model": loaded.ref, "window": request.app.state.recent.maxlen,
                             **accumulator.result()})

    @app.post("/reload", response_model=Health, dependencies=[Depends(check_key)])
    async def reload(request: Request):
        try:
            request.app.state.loaded = await asyncio.to_thread(_load, model_uri, tracking_uri)
        except Exception as exc:  # noqa: BLE001 - keep serving the loaded model and say why the new one failed
            raise HTTPException(status_code=503,
                                detail=f"reload failed, still serving the loaded model: {exc}") from exc
        return {"status": "reloaded", "model": request.app.state.loaded.ref}

    return app
