"""``prefer_scheme``: a 402 from ``l402 proxy`` offering an L402 token and a ``Payment`` charge, paid on real LND.
By default the token (once, then reused); with ``prefer_scheme="payment"`` a charge per request, never the token,
each with the proxy's receipt in the payment and the ledger."""

from __future__ import annotations

import pytest

import l402

from parts import PRICE_MSAT


def test_prefer_scheme_picks_the_offer_paid(network, proxy, wallet, tmp_path):
    url = proxy.url("/charged/x")
    before = set(network.payer.succeeded())

    default = l402.Client(wallet=wallet, data_dir=tmp_path / "default", max_cost_sat=20, allow_http=True)
    first = default.get(url)
    assert first.status == 200 and first.payment is not None
    assert (first.payment.scheme, first.payment.token_id) == ("L402", first.token_id)
    assert default.get(url).payment is None, "the token is reused"

    charges = l402.Client(
        wallet=wallet, data_dir=tmp_path / "charges", max_cost_sat=20, allow_http=True, prefer_scheme="payment"
    )
    paid = []
    for _ in range(2):
        r = charges.get(url)
        assert (r.status, r.text) == (200, "upstream saw /charged/x with 0 bytes")
        p = r.payment
        assert p is not None and (p.scheme, p.token_id, p.amount_msat) == ("Payment", None, PRICE_MSAT)
        assert r.token_id is None
        assert p.challenge_id and p.receipt_challenge_id == p.challenge_id
        assert p.receipt_reference == p.payment_hash
        paid.append(p.payment_hash)
    assert paid[0] != paid[1], "a charge is paid per request"
    assert charges.tokens() == []
    ledger = charges.spend().payments
    assert sorted(e.payment_hash for e in ledger) == sorted(paid)
    for e in ledger:
        assert (e.scheme, e.charge_state, e.receipt_reference) == ("Payment", "spent", e.payment_hash)
    # Three payments left the payer's node: the token and two charges.
    assert set(network.payer.succeeded()) - before == {first.payment.payment_hash, *paid}

    with pytest.raises(ValueError):
        l402.Client(wallet=wallet, data_dir=tmp_path / "bad", prefer_scheme="lightning")
