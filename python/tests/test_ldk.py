"""The embedded LDK wallet, built as the CLI builds it: a real LDK node started in the Python process on the
network's bitcoind, its directory locked while it runs. It has no channel, so the payment fails: the
refusal is typed, the reservation released, and nothing reaches the operator."""

from __future__ import annotations

import fcntl

import pytest

import l402
from l402 import errors


def test_an_ldk_wallet_without_channels_fails_the_payment_and_releases_it(network, proxy, tmp_path, data_dir):
    btc = network.state["bitcoind"]
    ldk_dir = tmp_path / "ldk"
    wallet = l402.Wallet.ldk(
        ldk_dir,
        network="regtest",
        bitcoind_rpc_port=btc["rpc_port"],
        bitcoind_rpc_user=btc["rpc_user"],
        bitcoind_rpc_password=btc["rpc_password"],
    )
    assert (wallet.kind, repr(wallet)) == ("ldk", "Wallet(ldk)")
    client = l402.Client(wallet=wallet, data_dir=data_dir, allow_http=True, payment_timeout=30)
    with pytest.raises(errors.PaymentFailed) as e:
        client.get(proxy.url("/weather/ldk"))
    assert e.value.exit_code == 20 and not e.value.may_have_paid
    [entry] = client.spend().payments
    assert (entry.payment_hash, entry.state, entry.reserved_msat) == (e.value.payment_hash, "failed", 0)
    assert network.operator.lncli("lookupinvoice", entry.payment_hash)["state"] == "OPEN"
    # While the node runs its directory is locked (one process per node); close() stops the node.
    with open(ldk_dir / "l402-wallet.lock", "a") as f:
        with pytest.raises(BlockingIOError):
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        client.close()
