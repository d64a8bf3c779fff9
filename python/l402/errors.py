"""Why a request through :class:`l402.Client` did not produce a response: one class per reason.

Every class derives from :class:`L402Error`, which carries what ``l402 fetch``'s exit code carries:
``exit_code`` (the same number ``l402 fetch`` exits with), ``reason`` (the client's stable name for it) and
the typed fields of that reason. What happened to the money follows from the class:

- :class:`RefusedBeforePaying` and its subclasses (exit codes 10-19): nothing was paid (an L402 offer and a
  ``Payment`` charge are refused for the same reasons, with the same classes).
- :class:`PaymentFailed` (20): the payment definitely failed; no money moved, the reservation was released.
- :class:`OutcomeUnknown` (21): the payment may have gone through. It is never paid again; the next request
  to the same service (or :meth:`l402.Client.recover`) looks it up by its hash.
- :class:`PaidButRefused` (22): paid, and the server refused the token (or, :class:`ChargeRefused`, the
  charge); it is kept as proof of payment.
- :class:`BodyTooLarge` (23), :class:`ReadTimeout` (24): a token paid for on the way stays stored and valid.

No exception carries a preimage or a macaroon.
"""

from __future__ import annotations

from typing import Any, Optional

__all__ = [
    "L402Error",
    "RequestError",
    "HttpError",
    "RedirectError",
    "WalletError",
    "ChallengeError",
    "StoreError",
    "LeaseTimeout",
    "RefusedBeforePaying",
    "PriceOverCap",
    "AmountlessInvoice",
    "WrongNetwork",
    "InvoiceExpired",
    "PaymentHashMismatch",
    "InvoiceInvalid",
    "AmountMismatch",
    "BudgetExhausted",
    "NotReplayable",
    "PlainHttp",
    "AddressRefused",
    "PaymentFailed",
    "PaymentRejected",
    "OutcomeUnknown",
    "PaidButRefused",
    "ChargeRefused",
    "BodyTooLarge",
    "ReadTimeout",
]


class L402Error(Exception):
    """The common base class.

    Attributes:
        message: what happened, in words.
        reason: the client's stable name for the reason (``"price_over_cap"``, ``"budget_exhausted"``, ...).
        exit_code: what ``l402 fetch`` exits with for the same reason (see the README's list).
        token_id: the token the request had used or paid for, when the failure came after that (hex), else None.
    """

    reason: str = "l402"
    exit_code: int = 1
    #: Whether this class of failure can have moved money (False: nothing was paid).
    may_have_paid: bool = True

    def __init__(
        self,
        message: str,
        *,
        reason: Optional[str] = None,
        exit_code: Optional[int] = None,
        token_id: Optional[str] = None,
        **fields: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        if exit_code is not None:
            self.exit_code = exit_code
        self.token_id = token_id
        for name, value in fields.items():
            setattr(self, name, value)

    def __str__(self) -> str:
        return f"{self.message} [{self.reason}]"


class RequestError(L402Error):
    """The request could not be built or the URL is not usable (exit code 2)."""

    reason, exit_code, may_have_paid = "request", 2, False


class HttpError(L402Error):
    """Talking to the server failed, after the retries the rules allow (exit code 3)."""

    reason, exit_code = "http", 3


class RedirectError(HttpError):
    """A redirect that cannot be followed: too many, or an unusable ``Location`` (exit code 3)."""

    reason = "redirect"


class WalletError(L402Error):
    """The wallet (Lightning node) could not be used (exit code 4); nothing was sent through it."""

    reason, exit_code, may_have_paid = "wallet", 4, False


class ChallengeError(L402Error):
    """The server answered 402 without a usable L402 or ``Payment`` challenge (exit code 5); nothing was paid."""

    reason, exit_code, may_have_paid = "challenge", 5, False


class StoreError(L402Error):
    """The local store (tokens, ledger, journal in the data directory) failed (exit code 6)."""

    reason, exit_code = "store", 6


class LeaseTimeout(StoreError):
    """Waited too long for another request or process paying the same service (exit code 6).

    Attributes:
        service: the origin and service waited for.
    """

    reason = "lease_timeout"
    service: str


class RefusedBeforePaying(L402Error):
    """Refused before anything was paid (exit codes 10-19): the common base of the checks before paying."""

    may_have_paid = False


class PriceOverCap(RefusedBeforePaying):
    """The invoice costs more than ``max_cost_sat`` (exit code 10).

    Attributes:
        price_msat: the invoice amount.
        cap_msat: the cap.
    """

    reason, exit_code = "price_over_cap", 10
    price_msat: int
    cap_msat: int


class AmountlessInvoice(RefusedBeforePaying):
    """The invoice has no amount (exit code 11); such an invoice is never paid."""

    reason, exit_code = "amountless_invoice", 11


class WrongNetwork(RefusedBeforePaying):
    """The invoice is for another network than the wallet's (exit code 12).

    Attributes:
        expected: the wallet's network.
        found: the invoice's.
    """

    reason, exit_code = "wrong_network", 12
    expected: str
    found: str


class InvoiceExpired(RefusedBeforePaying):
    """The invoice has expired, or expires within the safety margin (exit code 13).

    Attributes:
        expires_at: the invoice's expiry, Unix seconds.
        margin_secs: the margin required.
    """

    reason, exit_code = "invoice_expired", 13
    expires_at: int
    margin_secs: int


class PaymentHashMismatch(RefusedBeforePaying):
    """The invoice pays another payment hash than the macaroon commits to (exit code 14).

    Attributes:
        expected: the macaroon's payment hash (hex).
        found: the invoice's (hex).
    """

    reason, exit_code = "payment_hash_mismatch", 14
    expected: str
    found: str


class InvoiceInvalid(RefusedBeforePaying):
    """The invoice does not parse (exit code 5, as a challenge that cannot be used)."""

    reason, exit_code = "invoice_invalid", 5


class AmountMismatch(RefusedBeforePaying):
    """A ``Payment`` charge states one amount and its invoice asks for another (exit code 19).

    Attributes:
        stated_msat: the charge request's ``amount``.
        invoice_msat: the invoice's amount.
    """

    reason, exit_code = "amount_mismatch", 19
    stated_msat: int
    invoice_msat: int


class BudgetExhausted(RefusedBeforePaying):
    """Paying would exceed a budget limit (exit code 15).

    Attributes:
        limit: which one: ``per-request``, ``per-origin``, ``per-hour``, ``per-day``, ``total`` (stored in the
            data directory, shared by every process using it) or ``session`` (this client's own).
        limit_msat: the limit.
        spent_msat: what is already spent or reserved in its scope.
        needed_msat: what this payment needs (amount + fee limit).
    """

    reason, exit_code = "budget_exhausted", 15
    limit: str
    limit_msat: int
    spent_msat: int
    needed_msat: int


class NotReplayable(RefusedBeforePaying):
    """The request body cannot be sent again after paying (exit code 16)."""

    reason, exit_code = "not_replayable", 16


class PlainHttp(RefusedBeforePaying):
    """The URL is plain ``http://`` and the client was not made with ``allow_http=True`` (exit code 17).

    Attributes:
        origin: the origin that asked for payment.
    """

    reason, exit_code = "plain_http", 17
    origin: str


class AddressRefused(RefusedBeforePaying):
    """The address is not one the client may connect to (``public_only=True``; exit code 18); nothing was sent.

    Attributes:
        host: the host as the URL named it.
        address: the address refused.
        address_class: its class (``loopback``, ``private``, ...).
    """

    reason, exit_code = "address_refused", 18
    host: str
    address: str
    address_class: str


class PaymentFailed(L402Error):
    """The payment definitely failed; no money moved and its reservation was released (exit code 20).

    Attributes:
        payment_hash: the payment hash (hex).
        failure: why, as the node reported it.
    """

    reason, exit_code, may_have_paid = "payment_failed", 20, False
    payment_hash: str
    failure: str


class PaymentRejected(PaymentFailed):
    """The wallet refused to send the payment; nothing was sent (exit code 20)."""

    reason = "payment_rejected"


class OutcomeUnknown(L402Error):
    """The payment may or may not have gone through (exit code 21).

    Its reservation is kept and it is never paid again: the next request to the same service, or
    :meth:`l402.Client.recover`, looks it up by hash.

    Attributes:
        payment_hash: the payment hash (hex).
    """

    reason, exit_code = "outcome_unknown", 21
    payment_hash: str


class PaidButRefused(L402Error):
    """A paid token was refused by the server (exit code 22).

    It is kept, with its preimage, as ``refused`` (see :meth:`l402.Client.tokens`); that origin and service get
    no more money until it is removed (``l402 token rm --force``).

    Attributes:
        token_id: the token refused (hex).
        status: the HTTP status the server answered.
        paid_msat: what was paid for it (amount + fee).
    """

    reason, exit_code = "paid_but_refused", 22
    status: int
    paid_msat: int


class ChargeRefused(PaidButRefused):
    """A paid ``Payment`` charge was refused by the server (exit code 22).

    The charge stays in the ledger (``charge_state`` ``refused``) with its challenge and preimage, the proof of
    payment; it is not paid again in the same call.

    Attributes:
        payment_hash: the charge's payment hash (hex).
        challenge_id: its challenge id.
        status: the HTTP status the server answered.
        paid_msat: what was paid for it (amount + fee).
    """

    payment_hash: str
    challenge_id: str


class BodyTooLarge(L402Error):
    """The response body is over ``max_body`` (exit code 23); a token paid for stays stored.

    Attributes:
        limit: the cap, bytes.
    """

    reason, exit_code = "body_too_large", 23
    limit: int


class ReadTimeout(L402Error):
    """The server sent nothing within ``read_timeout`` (exit code 24); a token paid for stays stored."""

    reason, exit_code = "read_timeout", 24
