"""The client, its response and payment objects, and the ledger and token views (wrapping ``l402._native``)."""

from __future__ import annotations

import json as _json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from . import _native

Wallet = _native.Wallet

HeadersLike = Union[Mapping[str, str], Iterable[Tuple[str, str]], None]
BodyLike = Union[bytes, bytearray, memoryview, str, None]


@dataclass(frozen=True)
class Payment:
    """A payment made (or recovered from the journal) for a request. Never holds the preimage.

    Attributes:
        payment_hash: the payment hash (hex).
        amount_msat: the amount paid.
        fee_msat: the routing fee paid.
        token_id: the token it bought (hex); None for a ``Payment`` charge, which buys this one request.
        scheme: ``L402`` (a token) or ``Payment`` (a charge).
        challenge_id: a charge's challenge id.
        receipt_reference: the reference of the server's ``Payment-Receipt`` for a charge, if it sent one.
        receipt_challenge_id: the challenge id that receipt names.
    """

    payment_hash: str
    amount_msat: int
    fee_msat: int
    token_id: Optional[str]
    scheme: str = "L402"
    challenge_id: Optional[str] = None
    receipt_reference: Optional[str] = None
    receipt_challenge_id: Optional[str] = None

    @property
    def amount_sat(self) -> int:
        """The amount paid, in whole sat (rounded down)."""
        return self.amount_msat // 1000

    @property
    def fee_sat(self) -> int:
        """The fee paid, in whole sat (rounded down)."""
        return self.fee_msat // 1000


class Headers(Mapping[str, str]):
    """Response headers: case-insensitive; a repeated header is joined with ``", "`` (``get_list`` keeps them
    apart); ``raw`` holds the ``(name, value bytes)`` pairs as received."""

    def __init__(self, raw: Sequence[Tuple[str, bytes]]) -> None:
        self.raw: List[Tuple[str, bytes]] = list(raw)

    def get_list(self, name: str) -> List[str]:
        """Every value of ``name``, in order."""
        key = name.lower()
        return [v.decode("latin-1") for k, v in self.raw if k.lower() == key]

    def __getitem__(self, name: str) -> str:
        values = self.get_list(name)
        if not values:
            raise KeyError(name)
        return ", ".join(values)

    def __iter__(self) -> Iterator[str]:
        seen: Dict[str, None] = {}
        for k, _ in self.raw:
            seen.setdefault(k.lower(), None)
        return iter(seen)

    def __len__(self) -> int:
        return len({k.lower() for k, _ in self.raw})

    def __repr__(self) -> str:
        return f"Headers({dict(self)!r})"


class Response:
    """A response, with the payment made to get it (if one was).

    Attributes:
        status: the HTTP status (also ``status_code``).
        url: the URL of the final response (after redirects the client followed).
        headers: the response headers (:class:`Headers`).
        content: the body, bytes (also ``body``).
        token_id: the token sent with the request that produced this response (hex), if any.
        payment: the payment made for this request (:class:`Payment`), or None when a stored token served it or
            no payment was asked for.
    """

    def __init__(self, raw: Tuple[Any, ...]) -> None:
        status, url, headers, body, token_id, payment = raw
        self.status: int = status
        self.url: str = url
        self.headers = Headers(headers)
        self.content: bytes = bytes(body)
        self.token_id: Optional[str] = token_id
        self.payment: Optional[Payment] = Payment(*payment) if payment is not None else None

    @property
    def status_code(self) -> int:
        """The HTTP status."""
        return self.status

    @property
    def body(self) -> bytes:
        """The body, bytes."""
        return self.content

    @property
    def encoding(self) -> str:
        """The charset of ``Content-Type``, else ``utf-8``."""
        for part in self.headers.get("content-type", "").split(";")[1:]:
            key, _, value = part.strip().partition("=")
            if key.lower() == "charset" and value:
                return value.strip('"')
        return "utf-8"

    @property
    def text(self) -> str:
        """The body decoded (``encoding``; undecodable bytes replaced)."""
        return self.content.decode(self.encoding, errors="replace")

    def json(self, **kwargs: Any) -> Any:
        """The body parsed as JSON."""
        return _json.loads(self.content, **kwargs)

    @property
    def ok(self) -> bool:
        """Whether the status is below 400."""
        return self.status < 400

    def __repr__(self) -> str:
        paid = f", paid {self.payment.amount_msat} msat" if self.payment else ""
        return f"<l402.Response [{self.status}]{paid}>"


@dataclass(frozen=True)
class LedgerEntry:
    """A journaled payment (one line of ``l402 spend``). Never holds the preimage.

    ``state`` is ``pending`` (journaled, not known to be sent), ``succeeded``, ``failed`` or ``unknown``.
    ``scheme`` is ``L402``/``LSAT`` (a token) or ``Payment`` (a charge: ``service`` is its realm, and
    ``charge_state`` says whether the server accepted it: ``unspent``, ``spent``, ``refused`` or ``expired``;
    ``receipt_*`` is its ``Payment-Receipt``, if the server sent one).
    """

    payment_hash: str
    origin: str
    service: str
    path: str
    amount_msat: int
    fee_limit_msat: int
    reserved_msat: int
    state: str
    fee_msat: Optional[int]
    failure: Optional[str]
    token_id: Optional[str]
    created_at: int
    updated_at: int
    scheme: str = "L402"
    challenge_id: Optional[str] = None
    charge_state: Optional[str] = None
    receipt_status: Optional[str] = None
    receipt_reference: Optional[str] = None
    receipt_challenge_id: Optional[str] = None
    receipt_timestamp: Optional[str] = None

    @property
    def counted_msat(self) -> int:
        """What this entry counts against the budgets now."""
        if self.state == "succeeded":
            return self.amount_msat + (self.fee_msat or 0)
        if self.state in ("pending", "unknown"):
            return self.reserved_msat
        return 0


@dataclass(frozen=True)
class Spend:
    """The ledger and what counts against each budget limit, as ``l402 spend`` shows them (msat throughout).

    Attributes:
        limits_msat: the stored limits by name (``per-request``, ``per-origin``, ``per-hour``, ``per-day``,
            ``total``), shared by every process using the data directory.
        counted_msat: what counts against them now: ``hour``, ``day``, ``total`` (spent plus reservations).
        payments: the ledger, newest first.
    """

    limits_msat: Dict[str, int]
    counted_msat: Dict[str, int]
    payments: List[LedgerEntry] = field(default_factory=list)

    @property
    def succeeded(self) -> List[LedgerEntry]:
        """The payments that went through."""
        return [p for p in self.payments if p.state == "succeeded"]

    @property
    def spent_msat(self) -> int:
        """Amounts and fees of the payments that went through."""
        return sum(p.counted_msat for p in self.succeeded)

    @property
    def fees_msat(self) -> int:
        """Fees of the payments that went through."""
        return sum(p.fee_msat or 0 for p in self.succeeded)

    @property
    def reserved_msat(self) -> int:
        """Reservations of payments not (yet) known to have gone through."""
        return sum(p.counted_msat for p in self.payments if p.state != "succeeded")


@dataclass(frozen=True)
class Token:
    """A stored token, as ``l402 token list`` shows it: named by its id, never its macaroon or preimage.

    ``state`` is ``valid`` or ``refused`` (paid for, refused by the server, kept as proof of payment).
    """

    token_id: str
    origin: str
    service: str
    services: str
    path_prefix: str
    scheme: str
    payment_hash: str
    amount_msat: int
    fee_msat: int
    valid_until: Optional[int]
    state: str
    refused_at: Optional[int]
    refused_status: Optional[int]
    created_at: int
    last_used_at: Optional[int]


def _known(cls: type, row: Dict[str, Any]) -> Dict[str, Any]:
    names = cls.__dataclass_fields__  # type: ignore[attr-defined]
    return {k: v for k, v in row.items() if k in names}


def _headers(headers: HeadersLike) -> List[Tuple[str, str]]:
    if headers is None:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(str(k), str(v)) for k, v in items]


def _body(data: BodyLike, json: Any, headers: List[Tuple[str, str]]) -> Optional[bytes]:
    if json is not None:
        if data is not None:
            raise ValueError("pass data or json, not both")
        if not any(k.lower() == "content-type" for k, _ in headers):
            headers.append(("content-type", "application/json"))
        return _json.dumps(json).encode()
    if isinstance(data, str):
        return data.encode()
    if data is not None:
        return bytes(data)
    return None


class _Base:
    def __init__(
        self,
        wallet: Optional[Wallet] = None,
        data_dir: Union[str, "os.PathLike[str]", None] = None,
        max_cost_sat: int = 1_000,
        max_fee_sat: int = 50,
        budgets: Optional[Mapping[str, int]] = None,
        session_budget_sat: Optional[int] = None,
        allow_http: bool = False,
        public_only: bool = False,
        payment_timeout: float = 60.0,
        read_timeout: float = 60.0,
        max_body: int = 64 << 20,
        max_redirects: int = 10,
        prefer_scheme: str = "l402",
    ) -> None:
        self._native = _native.Client(
            wallet=wallet,
            data_dir=os.fspath(data_dir) if data_dir is not None else None,
            max_cost_sat=max_cost_sat,
            max_fee_sat=max_fee_sat,
            session_budget_sat=session_budget_sat,
            budgets=dict(budgets) if budgets is not None else None,
            allow_http=allow_http,
            public_only=public_only,
            payment_timeout=payment_timeout,
            read_timeout=read_timeout,
            max_body=max_body,
            max_redirects=max_redirects,
            prefer_scheme=prefer_scheme,
        )

    @property
    def data_dir(self) -> str:
        """The data directory (tokens, ledger, journal, budgets), shared with ``l402 fetch`` and ``l402 mcp``."""
        return os.fspath(self._native.data_dir)

    def spend(self, since: Optional[int] = None) -> Spend:
        """The ledger and the budgets, as ``l402 spend``; ``since``: only payments of the last so many seconds."""
        limits, (hour, day, total), ledger = self._native.spend(since)
        rows = [LedgerEntry(**_known(LedgerEntry, r)) for r in _json.loads(ledger)]
        return Spend(dict(limits), {"hour": hour, "day": day, "total": total}, rows)

    def tokens(self, origin: Optional[str] = None) -> List[Token]:
        """The stored tokens, as ``l402 token list`` (``origin``: only those of ``scheme://host:port``)."""
        return [Token(**_known(Token, r)) for r in _json.loads(self._native.tokens(origin))]

    def recover(self) -> Dict[str, List[str]]:
        """Asks the wallet what became of interrupted payments (``l402 spend --recover``): completed ones yield
        their token, failed or never-sent ones release their reservation, the rest stay unknown. Returns the
        payment hashes by outcome: ``completed``, ``released``, ``unknown``. Requests do this by themselves
        for the service they pay."""
        completed, released, unknown = self._native.recover()
        return {"completed": completed, "released": released, "unknown": unknown}

    def close(self) -> None:
        """Stops an embedded LDK node if one was started (its state persisted)."""
        self._native.close()

    def __repr__(self) -> str:
        return f"<l402.{type(self).__name__} data_dir={self.data_dir!r}>"


class Client(_Base):
    """The paying HTTP client: answers a 402 by paying within caps and budgets, then sends the request again.

    Before paying it refuses on any doubt (each refusal is an exception of :mod:`l402.errors`, nothing paid):
    the price over ``max_cost_sat``, an amountless or expired invoice or one for another network, an invoice
    whose hash is not the macaroon's (or a ``Payment`` charge's stated hash, amount or network its invoice's
    not, or its challenge expired), a budget that would be exceeded, plain ``http://`` without
    ``allow_http``, an address refused under ``public_only``. It journals every payment before sending it,
    pays one service at a time across threads and processes, and reuses stored tokens. Everything lives in
    ``data_dir``, shared with ``l402 fetch``, ``l402 spend`` and ``l402 mcp``.

    Args:
        wallet: which wallet pays (:class:`l402.Wallet`); None: only stored tokens are used, a 402 fails with
            :class:`~l402.errors.WalletError`. The wallet starts on the first payment.
        data_dir: the data directory; default ``$L402_DATA_DIR``, ``$XDG_DATA_HOME/l402`` or
            ``~/.local/share/l402``.
        max_cost_sat: the most one token may cost (the invoice amount).
        max_fee_sat: the most one payment may spend on routing fees (at least 1).
        budgets: stored limits to set, in sat, by name: ``per_request``, ``per_origin``, ``per_hour``,
            ``per_day``, ``total`` (amount + fee). They are saved in the data directory and bind every process
            using it, as ``l402 spend --set-limit`` does.
        session_budget_sat: the most this client may spend in its life (amount + fees), on top of the limits.
        allow_http: pay over plain ``http://`` (for loopback tests and demos only).
        public_only: connect only to public addresses (checked on resolved addresses and every redirect), as
            ``l402 mcp`` does: for URLs an agent or a user chose.
        payment_timeout: seconds a payment may take.
        read_timeout: seconds the server may send nothing.
        max_body: the most of a response body read, bytes.
        max_redirects: how many redirects are followed (the client follows them: a token only goes to the
            origin it was bought from).
        prefer_scheme: which offer to pay when a 402 offers both an L402 token and a ``Payment`` charge:
            ``"l402"`` (the default: a token is reused by later requests) or ``"payment"`` (a charge buys one
            request; the next one pays again). One offer is paid, never both; a 402 with one scheme gets it.

    The GIL is released while a request runs, so threads may share one client.
    """

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: HeadersLike = None,
        data: BodyLike = None,
        json: Any = None,
    ) -> Response:
        """Sends a request, paying a 402 if the checks allow; returns the final response (any status)."""
        h = _headers(headers)
        body = _body(data, json, h)
        return Response(self._native.request(method, url, h, body))

    def get(self, url: str, *, headers: HeadersLike = None) -> Response:
        """``request("GET", url)``."""
        return self.request("GET", url, headers=headers)

    def post(self, url: str, *, headers: HeadersLike = None, data: BodyLike = None, json: Any = None) -> Response:
        """``request("POST", url, data=..., json=...)``."""
        return self.request("POST", url, headers=headers, data=data, json=json)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Base):
    """:class:`Client` for asyncio: the same arguments; ``request``, ``get`` and ``post`` are coroutines.

    The work runs on the Rust side's tokio runtime; the event loop is not blocked. ``spend``, ``tokens``,
    ``recover`` and ``close`` are the blocking ones of :class:`Client` (they read a local file, or ask the
    wallet once).
    """

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: HeadersLike = None,
        data: BodyLike = None,
        json: Any = None,
    ) -> Response:
        """Sends a request, paying a 402 if the checks allow; returns the final response (any status)."""
        h = _headers(headers)
        body = _body(data, json, h)
        return Response(await self._native.request_async(method, url, h, body))

    async def get(self, url: str, *, headers: HeadersLike = None) -> Response:
        """``await request("GET", url)``."""
        return await self.request("GET", url, headers=headers)

    async def post(
        self, url: str, *, headers: HeadersLike = None, data: BodyLike = None, json: Any = None
    ) -> Response:
        """``await request("POST", url, data=..., json=...)``."""
        return await self.request("POST", url, headers=headers, data=data, json=json)

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
