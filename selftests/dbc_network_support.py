"""The node on the network, the selftests' side: node messages, a sender of UDP datagrams on
loopback and a real HTTP server on 127.0.0.1 that answers as a DBC client node does."""

from __future__ import annotations

import base64
import http.server
import json
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, List

import pytest

ROOT = Path(__file__).resolve().parent.parent
NODE_ID = "2gfpp3MAB4Aa1f0fA5bWq5fV1vKrpWD4xcCSMcdxbZ6o"
OTHER_ID = "2gfpp3MAB4AaOtherNodeOtherNodeOtherNodeOther"


def message(node_id: str, status: str = "renting") -> bytes:
    return base64.b64encode(json.dumps({"node_id": node_id, "status": status}).encode())


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


Sender = Callable[[int, List[bytes]], Callable[[], None]]


@pytest.fixture
def sender() -> Iterator[Sender]:
    """Sends datagrams to 127.0.0.1:port every 0.1 s, in turn; returns how to stop it."""
    stops: list[Callable[[], None]] = []

    def start(port: int, datagrams: list[bytes]) -> Callable[[], None]:
        stop = threading.Event()

        def loop() -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                i = 0
                while not stop.wait(0.1):
                    sock.sendto(datagrams[i % len(datagrams)], ("127.0.0.1", port))
                    i += 1
        thread = threading.Thread(target=loop, daemon=True)
        thread.start()

        def halt() -> None:
            stop.set()
            thread.join(5)
        stops.append(halt)
        return halt

    yield start
    for halt in stops:
        halt()

class ClientNode(http.server.BaseHTTPRequestHandler):
    """Answers POST /api/v1/mining_nodes according to the class attribute ``mode``."""

    mode = "found"
    requests: list[dict[str, object]] = []  # noqa: RUF012 - shared on purpose, read by tests

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "body": body})
        if self.mode == "silence":
            time.sleep(3)
            return
        status, reply = {
            "found": (200, {"errcode": 0, "message": {"gpu": "4 x RTX 3090", "state": "idle"}}),
            "not_found": (200, {"errcode": -1, "message": "list node timeout"}),
            "error": (500, {"error_code": -32603, "error_message": "internal error"}),
        }[self.mode]
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet


@pytest.fixture
def client_node() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ClientNode)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    ClientNode.requests = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()

