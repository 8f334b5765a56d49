"""The bare baseline for bench.serving_throughput: a minimal Starlette app that loads
the champion with registry.load_model and answers POST /predict by calling
ml_pipelines.core.models.predict on the records, in process. No validation, no
batching, no audit, no auth, one process: what serving costs without the service.

    BENCH_PIPELINE=credit_serving ML_PIPELINES_HOME=... uvicorn bench._serving_baseline:app
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from ml_pipelines.core.models import predict
from ml_pipelines.core.registry import ModelRegistry
from ml_pipelines.core.storage import LocalObjectStore

PIPELINE = os.environ["BENCH_PIPELINE"]
HOME = Path(os.environ["ML_PIPELINES_HOME"])
TRUSTED = tuple(filter(None, os.environ.get("BENCH_TRUSTED_ROOTS", "").split(",")))

_registry = ModelRegistry(LocalObjectStore(HOME / "registry"))
VERSION = _registry.get_alias(PIPELINE, "champion")
RECORD = _registry.get_version(PIPELINE, VERSION)
MODEL = _registry.load_model(PIPELINE, VERSION, TRUSTED)
INPUTS = RECORD.features.inputs
NUMERIC = [c for c, kind in RECORD.features.types.items() if kind in ("float", "int") and c in INPUTS]
CLASSES = [str(c) for c in MODEL.classes_] if RECORD.task == "classification" else None


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


async def predict_endpoint(request: Request) -> JSONResponse:
    records = (await request.json())["records"]
    frame = pd.DataFrame.from_records(records, columns=INPUTS)
    frame[NUMERIC] = frame[NUMERIC].astype("float64")
    predictions, proba = predict(MODEL, frame, RECORD.task)
    body = {"model_version": VERSION, "predictions": [_plain(p) for p in predictions]}
    if proba is not None:
        body["probabilities"] = [dict(zip(CLASSES, map(float, row))) for row in proba]
    return JSONResponse(body)


async def ready(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


app = Starlette(routes=[Route("/predict", predict_endpoint, methods=["POST"]), Route("/readyz", ready)])
