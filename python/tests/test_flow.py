"""The full flow through the Python client on real LND and a real `l402 proxy`, and each refusal before paying
(nothing journaled, nothing sent by the payer's node)."""

from __future__ import annotations

import dataclasses
import json
import stat

import pytest

import l402
from l402 import errors

from parts import PRICE_MSAT


def test_402_is_paid_once_then_the_token_is_reused(network, proxy, wallet, data_dir):
    before = network.payer.succeeded()
    client = l402.Client(wallet=wallet, data_dir=data_dir, max_cost_sat=20, allow_http=True)

    first = client.get(proxy.url("/weather/today"))
    assert (first.status, first.text) == (200, "upstream saw /weather/today with 0 bytes")
    p = first.payment
    assert p is not None and p.amount_msat == PRICE_MSAT and p.amount_sat == 10
    assert first.token_id == p.token_id
    # The payer's LND sent exactly this payment, to the msat; the operator's invoice is settled.
    after = network.payer.succeeded()
    assert set(after) - set(before) == {p.payment_hash}
    assert (int(after[p.payment_hash]["value_msat"]), int(after[p.payment_hash]["fee_msat"])) == (
        p.amount_msat,
        p.fee_msat,
    )
    assert network.operator.lncli("lookupinvoice", p.payment_hash)["state"] == "SETTLED"

    # Reused: no second payment, for GET and POST on the same service.
    second = client.get(proxy.url("/weather/today"))
    assert (second.status, second.payment, second.token_id) == (200, None, p.token_id)
    posted = client.post(proxy.url("/weather/post"), json={"a": 1})
    assert (posted.status, posted.text, posted.payment) == (200, "upstream saw /weather/post with 8 bytes", None)
    assert set(network.payer.succeeded()) - set(before) == {p.payment_hash}

    # The ledger and the token store say the same, and hold no secret.
    spend = client.spend()
    assert [(e.payment_hash, e.state, e.amount_msat) for e in spend.payments] == [
        (p.payment_hash, "succeeded", PRICE_MSAT)
    ]
    assert spend.spent_msat == PRICE_MSAT + p.fee_msat and spend.reserved_msat == 0
    assert spend.counted_msat["total"] == spend.spent_msat
    tokens = client.tokens()
    assert [(t.token_id, t.service, t.state, t.payment_hash) for t in tokens] == [
        (p.token_id, "weather", "valid", p.payment_hash)
    ]
    names = {f.name for f in dataclasses.fields(l402.Token)} | {f.name for f in dataclasses.fields(l402.Payment)}
    assert not {"preimage", "macaroon", "credential"} & names
    store = json.dumps([dataclasses.asdict(t) for t in tokens] + [dataclasses.asdict(e) for e in spend.payments])
    assert "preimage" not in store and "macaroon" not in store
    # The store file is the owner's only.
    db = data_dir / "l402-client.sqlite3"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_the_lndconnect_file_wallet_pays_too(network, proxy, data_dir):
    wallet = l402.Wallet.lndconnect_file(network.payer.lndconnect_pay_file)
    assert repr(wallet) == "Wallet(lnd)"
    client = l402.Client(wallet=wallet, data_dir=data_dir, allow_http=True)
    r = client.get(proxy.url("/maps/here"))
    assert r.status == 200 and r.payment is not None
    assert r.payment.payment_hash in network.payer.succeeded()


def nothing_paid(network, client, before_count):
    assert client.spend().payments == [], "nothing journaled"
    assert len(network.payer.payments()) == before_count, "the payer's LND sent nothing"
    assert client.tokens() == []


def test_a_price_over_the_cap_is_refused_before_paying(network, proxy, wallet, data_dir):
    before = len(network.payer.payments())
    client = l402.Client(wallet=wallet, data_dir=data_dir, max_cost_sat=9, allow_http=True)
    with pytest.raises(errors.PriceOverCap) as e:
        client.get(proxy.url("/weather/x"))
    assert isinstance(e.value, errors.RefusedBeforePaying) and isinstance(e.value, l402.L402Error)
    assert (e.value.exit_code, e.value.reason) == (10, "price_over_cap")
    assert (e.value.price_msat, e.value.cap_msat, e.value.may_have_paid) == (PRICE_MSAT, 9_000, False)
    nothing_paid(network, client, before)


def test_an_exhausted_stored_budget_is_refused_before_paying(network, proxy, wallet, data_dir):
    before = len(network.payer.payments())
    client = l402.Client(wallet=wallet, data_dir=data_dir, budgets={"total": 15}, allow_http=True)
    assert client.spend().limits_msat["total"] == 15_000
    with pytest.raises(errors.BudgetExhausted) as e:
        client.get(proxy.url("/weather/x"))
    assert (e.value.exit_code, e.value.limit, e.value.limit_msat) == (15, "total", 15_000)
    assert e.value.needed_msat > 15_000 and e.value.spent_msat == 0
    nothing_paid(network, client, before)
    # The limit is stored in the data directory: a client made without budgets= is bound by it too.
    again = l402.Client(wallet=wallet, data_dir=data_dir, allow_http=True)
    with pytest.raises(errors.BudgetExhausted):
        again.get(proxy.url("/weather/x"))
    nothing_paid(network, again, before)


def test_a_session_budget_is_refused_before_paying(network, proxy, wallet, data_dir):
    before = len(network.payer.payments())
    client = l402.Client(wallet=wallet, data_dir=data_dir, session_budget_sat=12, allow_http=True)
    with pytest.raises(errors.BudgetExhausted) as e:
        client.get(proxy.url("/weather/x"))
    assert (e.value.limit, e.value.limit_msat) == ("session", 12_000)
    nothing_paid(network, client, before)


def test_plain_http_is_refused_before_paying_without_allow_http(network, proxy, wallet, data_dir):
    before = len(network.payer.payments())
    client = l402.Client(wallet=wallet, data_dir=data_dir)
    with pytest.raises(errors.PlainHttp) as e:
        client.get(proxy.url("/weather/x"))
    assert (e.value.exit_code, e.value.origin) == (17, f"http://127.0.0.1:{proxy.port}")
    nothing_paid(network, client, before)


def test_public_only_refuses_loopback_before_sending(network, proxy, wallet, data_dir):
    before = len(network.payer.payments())
    client = l402.Client(wallet=wallet, data_dir=data_dir, public_only=True, allow_http=True)
    with pytest.raises(errors.AddressRefused) as e:
        client.get(proxy.url("/weather/x"))
    assert (e.value.exit_code, e.value.address, e.value.address_class) == (18, "127.0.0.1", "loopback")
    nothing_paid(network, client, before)


def test_no_wallet_fails_as_a_wallet_error_and_pays_nothing(network, proxy, data_dir):
    before = len(network.payer.payments())
    client = l402.Client(data_dir=data_dir, allow_http=True)
    with pytest.raises(errors.WalletError) as e:
        client.get(proxy.url("/weather/x"))
    assert e.value.exit_code == 4
    nothing_paid(network, client, before)


def test_a_body_over_max_body_is_refused_and_the_token_stays(network, proxy, wallet, data_dir):
    client = l402.Client(wallet=wallet, data_dir=data_dir, allow_http=True, max_body=10)
    with pytest.raises(errors.BodyTooLarge) as e:
        client.get(proxy.url("/news/long"))
    assert (e.value.exit_code, e.value.limit) == (23, 10)
    [token] = client.tokens()
    assert e.value.token_id == token.token_id, "the token paid for is named and kept"
    roomy = l402.Client(wallet=wallet, data_dir=data_dir, allow_http=True)
    r = roomy.get(proxy.url("/news/long"))
    assert (r.status, r.payment) == (200, None)


def test_bad_arguments_are_value_errors(data_dir):
    with pytest.raises(ValueError):
        l402.Client(data_dir=data_dir, budgets={"per_week": 1})
    with pytest.raises(ValueError):
        l402.Client(data_dir=data_dir, max_fee_sat=0)
    with pytest.raises(ValueError):
        l402.Wallet.ldk(data_dir / "ldk", network="regtest")
    with pytest.raises(ValueError):
        l402.Wallet.lndconnect("https://not-lndconnect")


def test_an_invoice_for_another_network_is_refused_before_the_wallet_starts(network, proxy, tmp_path, data_dir):
    before = len(network.payer.payments())
    # A mainnet LDK wallet: its network is known without starting it, and the proxy's invoices are regtest.
    wallet = l402.Wallet.ldk(tmp_path / "ldk", network="bitcoin", esplora_url="http://127.0.0.1:9/never-asked")
    client = l402.Client(wallet=wallet, data_dir=data_dir, allow_http=True)
    with pytest.raises(errors.WrongNetwork) as e:
        client.get(proxy.url("/weather/x"))
    assert (e.value.exit_code, e.value.found) == (12, "regtest"), e.value.expected
    assert not (tmp_path / "ldk").exists(), "the node was never started"
    nothing_paid(network, client, before)
