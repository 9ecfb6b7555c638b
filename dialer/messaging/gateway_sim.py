"""A local SMS gateway speaking the generic HTTP contract (http_sms.py), for tests, the benchmark
and development: it de-duplicates by ref, keeps receipts, and fails on request (5xx, a hang
past the client's timeout, 4xx) through its control methods."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class GatewayState:
    api_key: str
    accepted: dict[str, str] = field(default_factory=dict)  # ref -> gateway id
    delivered: list[dict[str, Any]] = field(default_factory=list)  # what reached "handsets"
    receipts: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0
    # Planned failures, one per request: an HTTP status, or ("hang", seconds).
    faults: deque[int | tuple[str, float]] = field(default_factory=deque)
    reject_numbers: set[str] = field(default_factory=set)
    undeliverable: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real gateway
    # Headers and body leave in separate writes: without TCP_NODELAY each reply would wait
    # for the client's delayed ACK (40 ms).
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _reply(self, status: int, payload: Any) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _fault(self) -> bool:
        state = self.server.state
        with state.lock:
            state.requests += 1
            fault = state.faults.popleft() if state.faults else None
        if fault is None:
            return False
        if isinstance(fault, tuple):
            time.sleep(fault[1])  # past the client's timeout: it gives up and retries
            self.close_connection = True
            return True
        self._reply(fault, {"error": f"planned failure {fault}"})
        return True

    def _authorised(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {self.server.state.api_key}":
            return True
        self._reply(401, {"error": "bad api key"})
        return False

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self._fault() or not self._authorised():
            return
        if urlsplit(self.path).path.rstrip("/").endswith("/messages") is False:
            self._reply(404, {"error": "no such endpoint"})
            return
        try:
            payload = json.loads(raw)
            messages = payload["messages"]
        except (ValueError, KeyError, TypeError):
            self._reply(400, {"error": "expected {messages: [...]}"})
            return
        state = self.server.state
        results = []
        now = datetime.now(UTC).isoformat()
        with state.lock:
            for m in messages:
                ref, to = str(m.get("ref")), str(m.get("to"))
                if to in state.reject_numbers:
                    results.append({"ref": ref, "status": "rejected", "error": "invalid number"})
                    continue
                gid = state.accepted.get(ref)
                if gid is None:  # a ref seen before is not sent again
                    gid = f"gw-{len(state.accepted) + 1}"
                    state.accepted[ref] = gid
                    state.delivered.append({"id": gid, "ref": ref, "to": to, "text": m.get("text")})
                    ok = to not in state.undeliverable
                    state.receipts.append(
                        {
                            "id": gid,
                            "status": "delivered" if ok else "failed",
                            "at": now,
                            "detail": "" if ok else "handset unreachable",
                        }
                    )
                results.append({"ref": ref, "id": gid, "status": "accepted"})
        self._reply(200, {"results": results})

    def do_GET(self) -> None:
        if self._fault() or not self._authorised():
            return
        parts = urlsplit(self.path)
        if not parts.path.rstrip("/").endswith("/receipts"):
            self._reply(404, {"error": "no such endpoint"})
            return
        after = parse_qs(parts.query).get("after", [""])[0]
        start = int(after) if after.isdigit() else 0
        with self.server.state.lock:
            items = self.server.state.receipts[start:]
            cursor = len(self.server.state.receipts)
        self._reply(200, {"receipts": items, "cursor": str(cursor)})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: GatewayState


class GatewaySim:
    """Start with `with GatewaySim(api_key) as gw:`; `gw.url` is its base URL."""

    def __init__(self, api_key: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = GatewayState(api_key)
        self._server = _Server((host, port), _Handler)
        self._server.state = self.state
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="gateway-sim", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def fail_next(self, *faults: int | tuple[str, float]) -> None:
        """The next requests fail in this order: an HTTP status each, or ("hang", seconds)."""
        with self.state.lock:
            self.state.faults.extend(faults)

    def __enter__(self) -> GatewaySim:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def main() -> None:
    """`python -m dialer.messaging.gateway_sim --port P --key K`: serve until stdin closes
    (the benchmark runs it in a process of its own, so its CPU is not the sender's)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    with GatewaySim(args.key, args.host, args.port) as gateway:
        print(gateway.url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
