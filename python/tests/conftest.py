"""The real parts as pytest fixtures (see parts.py), started once per session; none is faked, none skipped.

- ``network``: ``l402 regtest up --lnd`` (a regtest bitcoind, real LND nodes ``payer`` and ``operator`` with
  a funded channel payer -> operator), stopped with ``l402 regtest down``;
- ``upstream``: a small HTTP API (``http.server`` in a thread) answering ``upstream saw <path> with <n> bytes``;
- ``proxy``: ``l402 proxy`` with the operator's LND in front of it, services ``weather``, ``news`` and ``maps``;
- ``wallet``: the payer's LND with its pay-only macaroon, as ``l402.Wallet``.

A missing part (the ``l402`` binary, bitcoind, LND) fails the session loudly.
"""

from __future__ import annotations

import pathlib

import pytest

import l402
import parts
from parts import PRICE_MSAT, Network, Proxy, fetch_command, fetch_env  # noqa: F401 (used by the tests)


@pytest.fixture(scope="session")
def network(tmp_path_factory: pytest.TempPathFactory):
    with parts.network(tmp_path_factory.mktemp("regtest")) as net:
        yield net


@pytest.fixture(scope="session")
def upstream():
    with parts.upstream() as url:
        yield url


@pytest.fixture(scope="session")
def proxy(network: Network, upstream: str, tmp_path_factory: pytest.TempPathFactory):
    with parts.proxy(network, upstream, tmp_path_factory.mktemp("proxy")) as p:
        yield p


@pytest.fixture(scope="session")
def wallet(network: Network) -> l402.Wallet:
    p = network.payer
    return l402.Wallet.lnd(p.rpc_address, p.tls_cert, p.pay_macaroon)


@pytest.fixture
def data_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "l402-data"
