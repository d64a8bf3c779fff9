"""Real parts for the Python package's tests and benchmark (python/bench): a regtest network with real LND
nodes (``l402 regtest up --lnd``), a small upstream API, and ``l402 proxy`` with the operator's LND in front of
it. Each is a context manager that starts the part or raises, and stops it on exit.

The ``l402`` binary is ``$L402_BIN``, else ``$CARGO_TARGET_DIR/debug/l402``, else ``target/debug/l402``; the
peers are found through ``L402_BITCOIND``, ``L402_LND`` and ``L402_LNCLI`` (``source scripts/install-deps.sh``).
"""

from __future__ import annotations

import http.server
import json
import os
import pathlib
import socket
import subprocess
import threading
import time
from typing import Any, Dict, Iterator, List, Optional

import contextlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
PRICE_MSAT = 10_000


def l402_bin() -> str:
    explicit = os.environ.get("L402_BIN")
    target = os.environ.get("CARGO_TARGET_DIR") or str(ROOT / "target")
    path = explicit or os.path.join(target, "debug", "l402")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"the l402 binary is missing at {path}: run `cargo build -p l402-cli` or set L402_BIN")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lnd:
    """One LND node of the network, driven with lncli (admin macaroon) to check what it paid or was paid."""

    def __init__(self, node: Dict[str, Any]) -> None:
        self.name: str = node["name"]
        self.rpc_address: str = node["rpc_address"]
        self.tls_cert: str = node["tls_cert"]
        self.pay_macaroon: str = node["pay_macaroon"]
        self.invoice_macaroon: str = node["invoice_macaroon"]
        self.admin_macaroon: str = node["admin_macaroon"]
        self.lndconnect_pay_file: str = node["lndconnect_pay_file"]

    def lncli(self, *args: str) -> Any:
        lncli = os.environ.get("L402_LNCLI")
        if not lncli:
            raise RuntimeError("L402_LNCLI is not set (source scripts/install-deps.sh)")
        out = subprocess.run(
            [
                lncli,
                f"--rpcserver={self.rpc_address}",
                f"--tlscertpath={self.tls_cert}",
                f"--macaroonpath={self.admin_macaroon}",
                "--network=regtest",
                *args,
            ],
            capture_output=True,
            check=True,
            timeout=60,
        )
        return json.loads(out.stdout)

    def payments(self) -> List[Dict[str, Any]]:
        """Every payment this node sent (any state)."""
        return self.lncli("listpayments", "--include_incomplete", "--max_payments=10000")["payments"]

    def succeeded(self) -> Dict[str, Dict[str, Any]]:
        """Succeeded payments by hash."""
        return {p["payment_hash"]: p for p in self.payments() if p["status"] == "SUCCEEDED"}


class Network:
    def __init__(self, directory: pathlib.Path, state: Dict[str, Any]) -> None:
        self.dir = directory
        self.state = state
        nodes = {n["name"]: Lnd(n) for n in state["lnd"]}
        self.payer = nodes["payer"]
        self.operator = nodes["operator"]


@contextlib.contextmanager
def network(directory: pathlib.Path) -> Iterator[Network]:
    """`l402 regtest up --lnd` in `directory` (payer and operator LND with a channel), `down` on exit."""
    exe = l402_bin()
    up = subprocess.run(
        [exe, "regtest", "up", "--lnd", "--dir", str(directory)], capture_output=True, text=True, timeout=300
    )
    if up.returncode != 0:
        raise RuntimeError(f"l402 regtest up --lnd failed ({up.returncode}):\n{up.stdout}\n{up.stderr}")
    try:
        state = json.loads((directory / "state.json").read_text())
        yield Network(directory, state)
    finally:
        subprocess.run([exe, "regtest", "down", "--dir", str(directory)], capture_output=True, timeout=120)


class _Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The head and the body go out as two writes: without TCP_NODELAY, Nagle and delayed ACKs add ~40 ms.
    disable_nagle_algorithm = True

    def _answer(self) -> None:
        n = int(self.headers.get("content-length") or 0)
        if n:
            self.rfile.read(n)
        body = f"upstream saw {self.path} with {n} bytes".encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


@contextlib.contextmanager
def upstream() -> Iterator[str]:
    """The upstream API in a thread; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


class Proxy:
    def __init__(self, port: int) -> None:
        self.port = port

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextlib.contextmanager
def proxy(network: Network, upstream: str, directory: pathlib.Path) -> Iterator[Proxy]:
    """`l402 proxy` backed by the operator's LND (its invoice macaroon), in front of `upstream`: services
    weather, news and maps at 10 sat each (L402), and charged (10 sat, L402 and the Payment charge)."""
    port = free_port()
    op = network.operator
    services = "".join(
        f'\n[[service]]\nname = "{name}"\npath = "/{name}/*"\nupstream = "{upstream}"\nprice_sat = {PRICE_MSAT // 1000}\n'
        + ('schemes = ["l402", "payment"]\n' if name == "charged" else "")
        for name in ("weather", "news", "maps", "charged")
    )
    config = directory / "l402.toml"
    config.write_text(
        f'listen = "127.0.0.1:{port}"\n'
        f'store = {{ kind = "sqlite", path = "{directory / "proxy.sqlite3"}" }}\n'
        f'[lightning]\nbackend = "lnd"\naddress = "{op.rpc_address}"\n'
        f'tls_cert = "{op.tls_cert}"\nmacaroon = "{op.invoice_macaroon}"\n' + services
    )
    log = open(directory / "proxy.log", "wb")
    child = subprocess.Popen(
        [l402_bin(), "proxy", "--config", str(config)], stdin=subprocess.DEVNULL, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if child.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"l402 proxy never listened: {(directory / 'proxy.log').read_text()}")
                time.sleep(0.05)
        yield Proxy(port)
    finally:
        child.kill()
        child.wait()
        log.close()


def fetch_command(network: Network, data_dir: pathlib.Path, url: str, *extra: str) -> List[str]:
    """`l402 fetch` paying from the payer (the pay-only macaroon goes in the environment, see fetch_env)."""
    p = network.payer
    return [
        l402_bin(),
        "fetch",
        url,
        "--json",
        "--allow-http",
        "--data-dir",
        str(data_dir),
        "--lnd-address",
        p.rpc_address,
        "--lnd-tls-cert",
        p.tls_cert,
        *extra,
    ]


def fetch_env(network: Network, pause_at: Optional[str] = None) -> Dict[str, str]:
    env = dict(os.environ)
    env["L402_LND_MACAROON"] = network.payer.pay_macaroon
    env.pop("L402_TEST_PAUSE_AT", None)
    if pause_at:
        env["L402_TEST_PAUSE_AT"] = pause_at
    return env
