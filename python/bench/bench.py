"""Times the Python client against plain httpx on the same local `l402 proxy` and upstream, on real LND.

    source scripts/install-deps.sh && cargo build -p l402-cli
    .venv/bin/python python/bench/bench.py [--requests 2000] [--paid 10]

Starts a regtest network with real LND nodes (``l402 regtest up --lnd``), the upstream API and ``l402 proxy``
(parts.py of the tests), then measures, each after a warm-up, the median and 90th percentile of:

- a cached-token request through ``l402.Client.get`` (the token bought once, then reused);
- the same through httpx mounted on ``l402.httpx.L402Transport``;
- plain ``httpx.Client.get`` with the same kind of credential in its ``Authorization`` header (a token this
  script buys itself: the challenge's invoice paid with lncli; the preimage stays in memory, never printed);
- plain httpx straight to the upstream (no proxy), for the floor;
- 402 -> 200 with a real payment (a fresh data directory each time: challenge, checks, journal, LND payment
  payer -> operator, token stored, request sent again).

Prints one line per figure. Which build of ``l402`` runs (dev or release wheel) is the venv's.
"""

from __future__ import annotations

import argparse
import base64
import pathlib
import re
import statistics
import sys
import tempfile
import time
from typing import Callable, List

import httpx

import l402
import l402.httpx

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
import parts  # noqa: E402


def timed(n: int, warmup: int, f: Callable[[], None]) -> List[float]:
    for _ in range(warmup):
        f()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        out.append(time.perf_counter() - t)
    return out


def line(name: str, samples: List[float]) -> None:
    s = sorted(samples)
    med, p90 = statistics.median(s), s[int(len(s) * 0.9) - 1]
    unit, k = ("ms", 1e3) if med >= 1e-3 * 5 else ("us", 1e6)
    print(f"{name:<58} median {med * k:9.1f} {unit}   p90 {p90 * k:9.1f} {unit}   n={len(s)}")


def buy_credential(network: parts.Network, url: str) -> str:
    """An `Authorization` value for `url`, bought without the l402 client: the challenge's invoice is paid with
    lncli from the payer. Held in memory only."""
    r = httpx.get(url)
    assert r.status_code == 402, r.status_code
    challenge = next(v for v in r.headers.get_list("www-authenticate") if v.startswith("L402 "))
    mac = re.search(r'macaroon="([^"]+)"', challenge).group(1)  # type: ignore[union-attr]
    invoice = re.search(r'invoice="([^"]+)"', challenge).group(1)  # type: ignore[union-attr]
    paid = network.payer.lncli("payinvoice", "--force", "--json", invoice)
    assert paid["status"] == "SUCCEEDED", paid["status"]
    base64.b64decode(mac)  # well-formed
    return f"L402 {mac}:{paid['payment_preimage']}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=2000, help="cached requests timed per figure")
    ap.add_argument("--paid", type=int, default=10, help="402 -> 200 payments timed")
    args = ap.parse_args()
    warmup = max(args.requests // 20, 10)
    print(f"l402 {l402.__version__} from {pathlib.Path(l402.__file__).parent}")
    with tempfile.TemporaryDirectory(prefix="l402-bench-") as tmp:
        root = pathlib.Path(tmp)
        (root / "net").mkdir()
        (root / "proxy").mkdir()
        with parts.network(root / "net") as net, parts.upstream() as up, parts.proxy(net, up, root / "proxy") as px:
            p = net.payer
            wallet = l402.Wallet.lnd(p.rpc_address, p.tls_cert, p.pay_macaroon)

            client = l402.Client(wallet=wallet, data_dir=root / "cached", allow_http=True)
            url = px.url("/weather/bench")
            assert client.get(url).payment is not None
            line("l402.Client.get, cached token (proxy + upstream)", timed(args.requests, warmup, lambda: client.get(url)))

            with httpx.Client(transport=l402.httpx.L402Transport(client)) as http:
                line(
                    "httpx on l402.httpx.L402Transport, cached token",
                    timed(args.requests, warmup, lambda: http.get(url)),
                )

            plain_url = px.url("/news/bench")
            auth = buy_credential(net, plain_url)
            with httpx.Client(headers={"authorization": auth}) as http:
                assert http.get(plain_url).status_code == 200
                line("plain httpx.Client.get, same credential by hand", timed(args.requests, warmup, lambda: http.get(plain_url)))
            del auth

            with httpx.Client() as http:
                line("plain httpx.Client.get, upstream directly (no proxy)", timed(args.requests, warmup, lambda: http.get(up + "/x")))

            paid = []
            for i in range(args.paid + 1):
                fresh = l402.Client(wallet=wallet, data_dir=root / f"paid-{i}", allow_http=True)
                t = time.perf_counter()
                r = fresh.get(px.url(f"/maps/paid-{i}"))
                elapsed = time.perf_counter() - t
                assert r.status == 200 and r.payment is not None
                if i > 0:  # the first one also connects to LND
                    paid.append(elapsed)
            line("l402.Client.get, 402 -> real LND payment -> 200", paid)


if __name__ == "__main__":
    main()
