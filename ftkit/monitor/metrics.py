"""Service metrics in Prometheus' format (paper §9.2.1), from ``prometheus_client``.

:class:`ServiceMetrics` counts requests by outcome and output tokens and keeps a latency
histogram, each in its own registry. :meth:`ServiceMetrics.serve` exposes them at
``/metrics`` on 127.0.0.1 (a free port unless one is given) for a Prometheus server to scrape
with the key as a bearer token (``authorization: {credentials: <key>}`` in its scrape config);
a request without the key gets 401. Stop it with :meth:`ServiceMetrics.stop` or use the object
as a context manager.
"""
from __future__ import annotations

import hmac
import secrets
import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

import urllib.request

from prometheus_client import CollectorRegistry, Counter, Histogram, make_wsgi_app
from prometheus_client.parser import text_string_to_metric_families

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args) -> None:  # scrapes are not worth a log line each
        pass


class ServiceMetrics:
    """Counters and a latency histogram of one service, and their ``/metrics`` endpoint."""

    def __init__(self, service: str = "assistant") -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("ftkit_requests", "Requests answered, by outcome.",
                                ["service", "outcome"], registry=self.registry)
        self.tokens = Counter("ftkit_output_tokens", "Tokens generated.", ["service"],
                              registry=self.registry)
        self.latency = Histogram("ftkit_request_latency_seconds", "Seconds per request.",
                                 ["service"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.service = service
        self.key = ""
        self._server = None
        self._thread: threading.Thread | None = None

    def observe(self, seconds: float, tokens: int = 0, ok: bool = True) -> None:
        """Record one request: its latency, tokens generated and outcome."""
        self.requests.labels(self.service, "ok" if ok else "error").inc()
        self.tokens.labels(self.service).inc(max(int(tokens), 0))
        self.latency.labels(self.service).observe(seconds)

    def serve(self, port: int = 0, key: str | None = None) -> str:
        """Start ``/metrics`` on 127.0.0.1 in a thread; returns its URL."""
        if self._server is not None:
            return self.url
        self.key = key or secrets.token_urlsafe(24)
        app = make_wsgi_app(self.registry)
        expected = f"Bearer {self.key}".encode()

        def guarded(environ, start_response):
            given = environ.get("HTTP_AUTHORIZATION", "").encode()
            if not hmac.compare_digest(given, expected):
                start_response("401 Unauthorized", [("Content-Type", "text/plain")])
                return [b"a bearer key is required\n"]
            return app(environ, start_response)

        self._server = make_server("127.0.0.1", port, guarded, handler_class=_Quiet)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="ftkit-metrics")
        self._thread.start()
        return self.url

    @property
    def port(self) -> int:
        return self._server.server_port if self._server else 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics" if self._server else ""

    def stop(self) -> None:
        """Stop the endpoint and free its port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server, self._thread = None, None

    def __enter__(self) -> "ServiceMetrics":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def scrape(url: str, key: str, timeout: float = 10.0) -> dict[str, float]:
    """What a Prometheus server would read from ``url``: ``{"name{labels}": value}`` for every
    sample, parsed with ``prometheus_client``'s own parser."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        text = response.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


__all__ = ["LATENCY_BUCKETS", "ServiceMetrics", "scrape"]
