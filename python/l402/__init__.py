"""Pay for L402 APIs over Lightning, safely.

``l402.Client`` answers ``402 Payment Required`` by paying the invoice through your wallet (LND, or an LDK node
embedded in the process) and sending the request again with the token; it checks price caps and budgets
before paying, journals every payment before sending it (a crash never pays twice), pays one service at a
time across threads and processes, and keeps tokens and budgets in a data directory shared with the ``l402``
command (``l402 fetch``, ``l402 spend``, ``l402 token list``, ``l402 mcp``).

    import l402
    client = l402.Client(wallet=l402.Wallet.lndconnect_file("pay.lndconnect"), max_cost_sat=100)
    r = client.get("https://api.example/quote")
    print(r.status, r.json(), r.payment)

Refusals are exceptions of :mod:`l402.errors`. ``l402.httpx.L402Transport`` and ``l402.requests.L402Adapter``
give an existing httpx or requests program the same behaviour.
"""

from . import errors
from ._client import (
    AsyncClient,
    Client,
    Headers,
    LedgerEntry,
    Payment,
    Response,
    Spend,
    Token,
    Wallet,
)
from ._native import __version__
from .errors import L402Error

__all__ = [
    "AsyncClient",
    "Client",
    "Headers",
    "L402Error",
    "LedgerEntry",
    "Payment",
    "Response",
    "Spend",
    "Token",
    "Wallet",
    "errors",
    "__version__",
]
