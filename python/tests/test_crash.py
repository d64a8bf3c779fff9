"""A Python process SIGKILLed at each stage of a payment, and the next one: never a second payment, and the
token of a payment that went through is recovered from the write-ahead journal and the wallet."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time

import pytest

import l402

# The child: one request through the Python client, its outcome as JSON on stdout (no secret in it).
CHILD = """
import json, sys, l402
address, cert, macaroon, data_dir, url = sys.argv[1:]
client = l402.Client(wallet=l402.Wallet.lnd(address, cert, macaroon), data_dir=data_dir, allow_http=True)
r = client.get(url)
p = r.payment
print(json.dumps({"status": r.status, "payment_hash": p.payment_hash if p else None}))
"""


def child(network, data_dir, url, pause_at=None):
    env = dict(os.environ)
    env.pop("L402_TEST_PAUSE_AT", None)
    if pause_at:
        env["L402_TEST_PAUSE_AT"] = pause_at
    p = network.payer
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, p.rpc_address, p.tls_cert, p.pay_macaroon, str(data_dir), url],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_at(network, data_dir, url, point):
    proc = child(network, data_dir, url, pause_at=point)
    lines: "queue.Queue[str]" = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
    deadline = time.monotonic() + 120
    seen = []
    while True:
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            assert time.monotonic() < deadline, f"never reached {point}: {seen}"
            assert proc.poll() is None, f"exited ({proc.returncode}) before {point}: {seen}"
            continue
        if f"test pause at {point}" in line:
            break
        seen.append(line)
    if point != "journal_written":
        # Killed once the operator's node has settled the invoice: the money has moved.
        [entry] = l402.Client(data_dir=data_dir).spend().payments
        deadline = time.monotonic() + 60
        while network.operator.lncli("lookupinvoice", entry.payment_hash)["state"] != "SETTLED":
            assert time.monotonic() < deadline, f"{point}: the operator never settled"
            time.sleep(0.05)
    proc.kill()  # SIGKILL
    proc.wait()
    assert proc.returncode == -9


@pytest.mark.parametrize("point", ["journal_written", "payment_in_flight", "payment_succeeded"])
def test_a_python_process_killed_mid_payment_never_pays_twice(network, proxy, data_dir, point):
    before = network.payer.succeeded()
    url = proxy.url(f"/news/crash-{point}")
    kill_at(network, data_dir, url, point)
    [entry] = l402.Client(data_dir=data_dir).spend().payments
    assert entry.state == "pending", f"{point}: the journal holds the payment before anything else"
    journaled = entry.payment_hash

    proc = child(network, data_dir, url)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    v = json.loads(out)
    assert v["status"] == 200
    spend = l402.Client(data_dir=data_dir).spend()
    [succeeded] = spend.succeeded
    new_on_lnd = set(network.payer.succeeded()) - set(before)
    assert new_on_lnd == {succeeded.payment_hash}, f"{point}: exactly one payment reached LND"
    if point == "journal_written":
        # Never sent: its reservation was released and a fresh challenge was paid.
        assert succeeded.payment_hash != journaled
        assert {e.state for e in spend.payments if e.payment_hash == journaled} == {"failed"}
    else:
        # Sent: the next process found it in the journal, asked LND, and took its token without paying again.
        assert (len(spend.payments), succeeded.payment_hash, v["payment_hash"]) == (1, journaled, journaled)
    assert spend.reserved_msat == 0

    proc = child(network, data_dir, url)
    out, err = proc.communicate(timeout=120)
    assert json.loads(out) == {"status": 200, "payment_hash": None}, f"{point}: the token is reused"
    assert set(network.payer.succeeded()) - set(before) == {succeeded.payment_hash}
