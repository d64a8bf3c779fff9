"""An httpx or requests program gains L402 by mounting one object: paid once, then the token reused; a
refusal comes through as the l402 exception."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import requests

import l402
import l402.httpx
import l402.requests
from l402 import errors

from parts import PRICE_MSAT


def test_the_httpx_transport_pays_once(network, proxy, wallet, data_dir):
    before = network.payer.succeeded()
    client = l402.Client(wallet=wallet, data_dir=data_dir, allow_http=True)
    with httpx.Client(transport=l402.httpx.L402Transport(client)) as http:
        r = http.get(proxy.url("/weather/httpx"), params={"q": "1"})
        assert (r.status_code, r.text) == (200, "upstream saw /weather/httpx?q=1 with 0 bytes")
        assert r.headers["content-type"].startswith("text/plain")
        paid = r.extensions["l402_payment"]
        assert paid is not None and paid.amount_msat == PRICE_MSAT
        r = http.post(proxy.url("/weather/httpx"), json={"k": "v"})
        assert (r.status_code, r.text, r.extensions["l402_payment"]) == (
            200,
            "upstream saw /weather/httpx with 9 bytes",
            None,
        )
    assert set(network.payer.succeeded()) - set(before) == {paid.payment_hash}


def test_the_async_httpx_transport_pays_once_for_concurrent_requests(network, proxy, wallet, data_dir):
    before = network.payer.succeeded()
    client = l402.AsyncClient(wallet=wallet, data_dir=data_dir, allow_http=True)

    async def main():
        async with httpx.AsyncClient(transport=l402.httpx.AsyncL402Transport(client)) as http:
            return await asyncio.gather(*(http.get(proxy.url(f"/news/async-{i}")) for i in range(4)))

    answers = asyncio.run(main())
    assert [r.status_code for r in answers] == [200] * 4
    payments = [r.extensions["l402_payment"] for r in answers if r.extensions["l402_payment"]]
    assert len(payments) == 1, "one payment per service at a time; the others wait and use its token"
    assert set(network.payer.succeeded()) - set(before) == {payments[0].payment_hash}


def test_a_refusal_through_httpx_is_the_l402_exception(network, proxy, wallet, data_dir):
    before = len(network.payer.payments())
    client = l402.Client(wallet=wallet, data_dir=data_dir, max_cost_sat=1, allow_http=True)
    with httpx.Client(transport=l402.httpx.L402Transport(client)) as http:
        with pytest.raises(errors.PriceOverCap):
            http.get(proxy.url("/weather/x"))
    assert len(network.payer.payments()) == before


def test_the_requests_adapter_pays_once(network, proxy, wallet, data_dir):
    before = network.payer.succeeded()
    client = l402.Client(wallet=wallet, data_dir=data_dir, allow_http=True)
    session = requests.Session()
    session.mount("http://", l402.requests.L402Adapter(client))
    r = session.get(proxy.url("/maps/requests"))
    assert (r.status_code, r.reason, r.text) == (200, "OK", "upstream saw /maps/requests with 0 bytes")
    paid = r.l402_payment
    assert paid is not None and paid.amount_msat == PRICE_MSAT
    r = session.post(proxy.url("/maps/requests"), data=b"abc")
    assert (r.status_code, r.text, r.l402_payment) == (200, "upstream saw /maps/requests with 3 bytes", None)
    assert set(network.payer.succeeded()) - set(before) == {paid.payment_hash}
    with pytest.raises(errors.PlainHttp):
        plain = requests.Session()
        plain.mount("http://", l402.requests.L402Adapter(l402.Client(wallet=wallet, data_dir=data_dir)))
        plain.get(proxy.url("/news/plain"))


def test_the_async_client_pays_once(network, proxy, wallet, data_dir):
    before = network.payer.succeeded()

    async def main():
        async with l402.AsyncClient(wallet=wallet, data_dir=data_dir, allow_http=True) as client:
            first = await client.get(proxy.url("/weather/aio"))
            second = await client.post(proxy.url("/weather/aio"), data="xy")
            return first, second

    first, second = asyncio.run(main())
    assert (first.status, second.status, second.text) == (200, 200, "upstream saw /weather/aio with 2 bytes")
    assert first.payment is not None and second.payment is None
    assert set(network.payer.succeeded()) - set(before) == {first.payment.payment_hash}
