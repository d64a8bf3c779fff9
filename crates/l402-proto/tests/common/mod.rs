//! Shared test inputs: the L402 vector of L402.md and invoices signed on the spot.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcoin::secp256k1::{Secp256k1, SecretKey};
use l402_proto::lightning_invoice::{Currency, InvoiceBuilder, PaymentSecret};
use l402_proto::*;

pub const VECTOR_CREDENTIAL: &str = "L402 AgEEbHNhdAJCAABjDc0pZsQzZpESVEi7sltP9BKknHMtssirwbhYG9cQ3aurq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urAAIOc2VydmljZXM9c3ZjOjAAAhFzdmNfY2FwYWJpbGl0aWVzPQACGnN2Y192YWxpZF91bnRpbD0xNzAwMDAwMDAwAAAGIG0V+aBA2vQcLxi+SKWqFqjWoKOMl3Al3o1qy4E5KVLj:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
pub const VECTOR_EXPIRY: u64 = 1_700_000_000;

pub const APERTURE_MACAROON: &str = "AgEEbHNhdAJCAAAwpHpumws6ufQoDwiTLNcge0QPUIWA0+tVY+tKPYAJ/zSfmEGlIpNm3VzxuzCqLhEp5KGiyPLUM9L+kcB7uzS+AAIPc2VydmljZXM9bWVtZTowAAISbWVtZV9jYXBhYmlsaXRpZXM9AAAGILA1VCEIExukt4nG+XR9tX8WJ2BVMiHG3UNt1uYJ+NRD";

pub fn vector_root_key() -> RootKey {
    RootKey([0x11; 32])
}

pub fn vector_preimage() -> Preimage {
    Preimage(std::array::from_fn(|i| i as u8))
}

pub fn vector_caveats() -> Vec<Caveat> {
    vec![
        Caveat::services(&[Service::new("svc")]),
        Caveat::capabilities::<&str>("svc", &[]),
        Caveat::valid_until("svc", VECTOR_EXPIRY),
    ]
}

pub fn vector_macaroon() -> Macaroon {
    let id = Identifier::new(vector_preimage().payment_hash(), TokenId([0xab; 32]));
    Macaroon::mint(&vector_root_key(), &id, &vector_caveats())
}

pub fn access(now_unix: u64) -> Access<'static> {
    Access { service: "svc", capability: None, now_unix }
}

pub fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970")
}

/// A signed BOLT-11 invoice for `hash`, made now, on `currency`, for `amount_msat` (None: amountless).
pub fn invoice(currency: Currency, hash: &PaymentHash, amount_msat: Option<u64>, expiry_secs: u64) -> String {
    invoice_at(currency, hash, amount_msat, expiry_secs, now())
}

pub fn invoice_at(
    currency: Currency,
    hash: &PaymentHash,
    amount_msat: Option<u64>,
    expiry_secs: u64,
    created: Duration,
) -> String {
    use bitcoin::hashes::Hash as _;
    let secp = Secp256k1::new();
    let key = SecretKey::from_slice(&[0x42; 32]).expect("valid key");
    let builder = InvoiceBuilder::new(currency)
        .description("l402 test".into())
        .payment_hash(bitcoin::hashes::sha256::Hash::from_byte_array(hash.0))
        .payment_secret(PaymentSecret([7; 32]))
        .duration_since_epoch(created)
        .min_final_cltv_expiry_delta(18)
        .expiry_time(Duration::from_secs(expiry_secs));
    let signed = match amount_msat {
        Some(a) => builder.amount_milli_satoshis(a).build_signed(|m| secp.sign_ecdsa_recoverable(m, &key)),
        None => builder.build_signed(|m| secp.sign_ecdsa_recoverable(m, &key)),
    };
    signed.expect("invoice builds").to_string()
}
