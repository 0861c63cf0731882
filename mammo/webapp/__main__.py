"""``mammo serve --model PATH`` (or ``python -m mammo.webapp``): serve the web app with waitress."""

from __future__ import annotations

import argparse
import os
import sys

from . import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mammo serve",
        description="Serve the mammo web page and JSON API (waitress). Open the printed address in a browser, "
        "or POST images to /api/predict (see docs/webapp.md).",
        epilog="example: mammo serve --model runs/default/model.joblib --port 8000",
    )
    parser.add_argument(
        "--model", default=os.environ.get("MAMMO_MODEL"), help="saved model (.joblib) to serve; default: $MAMMO_MODEL"
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to listen on (default 127.0.0.1; 0.0.0.0 exposes it to the network)",
    )
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0 picks a free one)")
    parser.add_argument("--threads", type=int, default=4, help="waitress worker threads (default 4)")
    parser.add_argument("--max-upload-mb", type=float, default=64.0, help="largest accepted upload in MB (default 64)")
    args = parser.parse_args(argv)
    if not args.model:
        parser.error("no model given: pass --model PATH or set MAMMO_MODEL")
    # a model that cannot be loaded is an expected failure: mammo.cli reports it in one line
    serve(
        args.model,
        host=args.host,
        port=args.port,
        threads=args.threads,
        config={"MAX_CONTENT_LENGTH": int(args.max_upload_mb * 2**20)},
    )
    return 0


if __name__ == "__main__":
    from ..cli import run

    sys.exit(run("serve", sys.argv[1:]))
