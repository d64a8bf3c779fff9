"""A Python client and `l402 fetch` running at once on one data directory share its budgets and its tokens:
one payment where one fits, and one payment per service."""

from __future__ import annotations

import json
import subprocess
import threading

import l402
from l402 import errors

from parts import PRICE_MSAT, fetch_command, fetch_env


def run_both(network, data_dir, client, python_url, fetch_url):
    """Starts `l402 fetch fetch_url` and, at once, the Python request to python_url; returns both outcomes."""
    result = {}

    def python_side():
        try:
            result["python"] = client.get(python_url)
        except l402.L402Error as e:
            result["python"] = e

    child = subprocess.Popen(
        fetch_command(network, data_dir, fetch_url),
        env=fetch_env(network),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    thread = threading.Thread(target=python_side)
    thread.start()
    out, err = child.communicate(timeout=180)
    thread.join(timeout=180)
    return result["python"], child.returncode, out, err


def test_a_budget_with_room_for_one_payment_pays_once_between_python_and_l402_fetch(network, proxy, wallet, data_dir):
    before = network.payer.succeeded()
    # One payment reserves 10 sat + a 10 sat fee limit and then counts 10 sat (+ fee): 25 sat lets exactly one
    # through, whichever comes first and however they interleave.
    client = l402.Client(wallet=wallet, data_dir=data_dir, budgets={"total": 25}, allow_http=True)
    py, code, out, err = run_both(network, data_dir, client, proxy.url("/weather/a"), proxy.url("/news/a"))

    python_paid = isinstance(py, l402.Response)
    fetch_paid = code == 0
    assert python_paid != fetch_paid, f"exactly one pays: python {py!r}, fetch exit {code}: {err}"
    if python_paid:
        assert py.status == 200 and py.payment is not None
        assert code == 15, f"l402 fetch refused on the budget: {err}"
    else:
        assert isinstance(py, errors.BudgetExhausted) and py.limit == "total", repr(py)
        assert json.loads(out)["payment"]["amount_msat"] == PRICE_MSAT
    succeeded = client.spend().succeeded
    assert len(succeeded) == 1, client.spend()
    assert set(network.payer.succeeded()) - set(before) == {succeeded[0].payment_hash}, "one payment on LND"


def test_python_and_l402_fetch_buying_the_same_service_at_once_pay_once(network, proxy, wallet, data_dir):
    before = network.payer.succeeded()
    client = l402.Client(wallet=wallet, data_dir=data_dir, allow_http=True)
    py, code, out, err = run_both(network, data_dir, client, proxy.url("/maps/a"), proxy.url("/maps/b"))
    assert isinstance(py, l402.Response) and py.status == 200, repr(py)
    assert code == 0 and json.loads(out)["status"] == 200, err
    fetched = json.loads(out)
    assert (py.payment is None) != (fetched["payment"] is None), "one of the two paid, the other used its token"
    succeeded = client.spend().succeeded
    assert len(succeeded) == 1
    assert set(network.payer.succeeded()) - set(before) == {succeeded[0].payment_hash}
    assert [t.service for t in client.tokens()] == ["maps"]
