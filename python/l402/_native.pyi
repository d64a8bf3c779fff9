"""Type stubs of the native module (Rust, PyO3). Use the wrappers in :mod:`l402` instead of this module."""

import os
import pathlib
from typing import Awaitable, Dict, List, Optional, Tuple, Union

__version__: str

_Payment = Tuple[str, int, int, Optional[str], str, Optional[str], Optional[str], Optional[str]]
_Response = Tuple[int, str, List[Tuple[str, bytes]], bytes, Optional[str], Optional[_Payment]]

class Wallet:
    """Which wallet pays: LND over gRPC or an embedded LDK node. The options are checked (files read, the URI
    parsed) when it is made; the node starts on the first payment. ``repr`` never shows a secret."""

    @staticmethod
    def lnd(address: str, tls_cert: str, macaroon: str) -> "Wallet":
        """LND at ``address`` (``host:port``), its ``tls.cert`` (path or PEM) pinned, paying with ``macaroon``
        (a path, or hex/base64; a pay-only macaroon is enough)."""
    @staticmethod
    def lndconnect(uri: str) -> "Wallet":
        """LND from an ``lndconnect://`` URI (address, certificate and macaroon in one)."""
    @staticmethod
    def lndconnect_file(path: Union[str, "os.PathLike[str]"]) -> "Wallet":
        """LND from a file holding an ``lndconnect://`` URI (as ``l402 regtest up --lnd`` writes, 0600)."""
    @staticmethod
    def ldk(
        data_dir: Union[str, "os.PathLike[str]"],
        network: str = "bitcoin",
        bitcoind_rpc_host: str = "127.0.0.1",
        bitcoind_rpc_port: Optional[int] = None,
        bitcoind_rpc_user: Optional[str] = None,
        bitcoind_rpc_password: Optional[str] = None,
        esplora_url: Optional[str] = None,
    ) -> "Wallet":
        """An LDK node embedded in this process, its keys and channels in ``data_dir`` (locked while in use:
        one process runs a node at a time), on ``network`` (bitcoin, testnet, signet, regtest), following the
        chain through a bitcoind's RPC or an Esplora server."""
    @property
    def kind(self) -> str:
        """``"lnd"`` or ``"ldk"``."""

class Client:
    """The native client; see :class:`l402.Client`."""

    def __init__(
        self,
        wallet: Optional[Wallet] = None,
        data_dir: Optional[str] = None,
        max_cost_sat: int = 1000,
        max_fee_sat: int = 50,
        session_budget_sat: Optional[int] = None,
        budgets: Optional[Dict[str, int]] = None,
        allow_http: bool = False,
        public_only: bool = False,
        payment_timeout: float = 60.0,
        read_timeout: float = 60.0,
        max_body: int = 67108864,
        max_redirects: int = 10,
        prefer_scheme: str = "l402",
    ) -> None: ...
    def request(
        self, method: str, url: str, headers: List[Tuple[str, str]] = ..., body: Optional[bytes] = None
    ) -> _Response:
        """Sends a request (blocking, the GIL released): ``(status, url, headers, body, token_id, payment)``."""
    def request_async(
        self, method: str, url: str, headers: List[Tuple[str, str]] = ..., body: Optional[bytes] = None
    ) -> Awaitable[_Response]:
        """The same, as an asyncio awaitable."""
    def spend(self, since: Optional[int] = None) -> Tuple[List[Tuple[str, int]], Tuple[int, int, int], str]:
        """``(limits, (hour, day, total) counted, ledger JSON)``, msat."""
    def tokens(self, origin: Optional[str] = None) -> str:
        """The stored tokens as JSON (no macaroon, no preimage)."""
    def recover(self) -> Tuple[List[str], List[str], List[str]]:
        """``(completed, released, unknown)`` payment hashes."""
    def close(self) -> None:
        """Stops an embedded LDK node, if one was started."""
    @property
    def data_dir(self) -> pathlib.Path:
        """The data directory."""
