"""The /metrics endpoint: a key is required, counters move while traffic is recorded, the
port is free after stop."""
import socket
import threading
import urllib.error
import urllib.request

import pytest

from ftkit.monitor.metrics import ServiceMetrics


def scrape(url, key=None) -> str:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.read().decode()


def value(text: str, prefix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(prefix))


def test_counters_move_while_traffic_is_recorded_and_the_key_is_required():
    with ServiceMetrics("assistant") as metrics:
        url = metrics.serve()
        assert url.startswith("http://127.0.0.1:")
        with pytest.raises(urllib.error.HTTPError) as err:
            scrape(url)
        assert err.value.code == 401
        with pytest.raises(urllib.error.HTTPError):
            scrape(url, "wrong")
        before = scrape(url, metrics.key)

        def traffic():
            for i in range(20):
                metrics.observe(0.2 + 0.01 * i, tokens=8, ok=i % 10 != 0)
        worker = threading.Thread(target=traffic)
        worker.start()
        worker.join()
        after = scrape(url, metrics.key)
        port = metrics.port
    ok = 'ftkit_requests_total{outcome="ok",service="assistant"}'
    assert value(after, ok) - value(before, ok) == 18
    assert value(after, 'ftkit_requests_total{outcome="error"') == 2
    assert value(after, "ftkit_output_tokens_total") == 160
    assert value(after, "ftkit_request_latency_seconds_count") == 20
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0, "the port is free after stop"
