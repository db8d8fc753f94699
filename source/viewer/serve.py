"""Serve a built site on this machine (``serve: true``) until Ctrl-C; the site also opens from disk without it."""

from __future__ import annotations

import functools
import http.server
import logging
from pathlib import Path

logger = logging.getLogger(__name__)
HOST = "127.0.0.1"


def serve(folder: Path, port: int = 0) -> None:
    """Serve ``folder`` on ``HOST`` (``port`` 0: a free port) and log its URL; returns on Ctrl-C."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    with http.server.ThreadingHTTPServer((HOST, port), handler) as server:
        url = f"http://{HOST}:{server.server_address[1]}/index.html"
        logger.info("serving %s at %s (Ctrl-C stops)", folder, url)
        print(url, flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            logger.info("stopped serving %s", folder)
