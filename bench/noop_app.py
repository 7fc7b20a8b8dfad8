"""The baselines of the HTTP figures: FastAPI POST endpoints that do no work, on authz's uvicorn settings.

- `POST /v1/check`: the idiomatic no-op (no body, no key, returns a dict that FastAPI
  serializes): the issue's "FastAPI + uvicorn, a POST endpoint that does no work", and
  the baseline of the targets.
- `POST /v1/check-floor`: the same returning pre-serialized bytes, the floor under any
  FastAPI endpoint (reported, to show how much of the gap is authz's own work).
"""

import argparse
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response

BODY = b'{"allowed":true,"revision":0}'


def create_noop_app() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/check")
    async def check() -> dict[str, Any]:
        return {"allowed": True, "revision": 0}

    @app.post("/v1/check-floor")
    async def check_floor() -> Response:
        return Response(BODY, media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    return app


def main() -> None:
    import uvicorn

    from authz.cli import UVICORN_OPTIONS

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(create_noop_app(), host="127.0.0.1", port=args.port, **UVICORN_OPTIONS)


if __name__ == "__main__":
    main()
