//! A local regtest Lightning network: a real bitcoind, real LDK nodes and real LND nodes, on loopback, in a
//! temporary directory, torn down when dropped; and Aperture, Lightning Labs' L402 proxy, on top of it.
//!
//! Tests, benchmarks and the demo all stand on it, so every payment the project makes in its own checks is a
//! real Lightning payment: real BOLT-8 transport, real channels funded on a real (regtest) chain, real HTLCs.
//!
//! ```no_run
//! # async fn f() -> Result<(), l402_regtest::RegtestError> {
//! let net = l402_regtest::Regtest::start().await?;
//! let alice = net.ldk_node("alice").await?;
//! let bob = net.ldk_node("bob").await?;
//! net.fund(&alice, 1_000_000).await?;
//! net.open_channel(&alice, &bob, 500_000, 0).await?;
//! // alice can now pay bob's invoices.
//! net.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! bitcoind is found through `L402_BITCOIND`, then the project's own install (`.tools/bitcoind`, made by
//! `scripts/install-bitcoind.sh`), then `PATH`. If none is there, starting fails with a message saying how to
//! install it: a test that needs the network never passes by skipping.

pub mod aperture;
mod bitcoind;
mod error;
pub mod lnd;
mod network;
pub mod payments;
pub mod postgres;

pub use aperture::{Aperture, ApertureService};
pub use bitcoind::{Bitcoind, find_bitcoind};
pub use error::RegtestError;
pub use lnd::{Lnd, LndMacaroon};
pub use network::{ForwardingFee, Regtest};
pub use postgres::Postgres;

/// Pays the L402 challenge found in a 402's `WWW-Authenticate` values with `payer`, after checking that the
/// invoice pays the hash the macaroon commits to, and returns the `Authorization` value to retry with (in the
/// scheme the server preferred) and the payment.
pub async fn pay_challenge<'a>(
    payer: &dyn l402_lightning::Payer,
    www_authenticate: impl IntoIterator<Item = &'a [u8]>,
) -> Result<(String, l402_lightning::PaymentSuccess), RegtestError> {
    let bad = |what: String| RegtestError::Rpc { method: "pay_challenge".into(), message: what };
    let challenge = l402_proto::Challenge::parse(www_authenticate).map_err(|e| bad(e.to_string()))?;
    let hash = challenge.macaroon.l402_identifier().map_err(|e| bad(e.to_string()))?.payment_hash;
    let paid = pay_invoice(payer, &challenge.invoice, hash).await?;
    let credential = l402_proto::Credential::new(challenge.scheme, challenge.macaroon, paid.preimage);
    Ok((credential.header_value(), paid))
}

/// Pays the first `Payment` Lightning charge among a 402's `WWW-Authenticate` values (checking that its
/// invoice pays the charge's payment hash) and returns the `Authorization` value, for tests.
pub async fn pay_payment_challenge<'a>(
    payer: &dyn l402_lightning::Payer,
    www_authenticate: impl IntoIterator<Item = &'a [u8]>,
) -> Result<(String, l402_lightning::PaymentSuccess), RegtestError> {
    use l402_proto::mpp::{ChargeRequest, PaymentChallenge, PaymentCredential};
    let bad = |what: String| RegtestError::Rpc { method: "pay_payment_challenge".into(), message: what };
    let challenge = PaymentChallenge::parse_all(www_authenticate)
        .into_iter()
        .find(|c| c.method == "lightning" && c.intent == "charge")
        .ok_or_else(|| bad("no Payment lightning charge in the 402".into()))?;
    let request = ChargeRequest::decode(&challenge.request).map_err(|e| bad(e.to_string()))?;
    let hash = l402_proto::PaymentHash(request.method_details.payment_hash);
    let paid = pay_invoice(payer, &request.method_details.invoice, hash).await?;
    Ok((PaymentCredential::charge(challenge, &paid.preimage).header_value(), paid))
}

/// Pays `bolt11` after checking that it pays `hash` and has an amount.
async fn pay_invoice(
    payer: &dyn l402_lightning::Payer,
    bolt11: &str,
    hash: l402_proto::PaymentHash,
) -> Result<l402_lightning::PaymentSuccess, RegtestError> {
    let bad = |what: String| RegtestError::Rpc { method: "pay_invoice".into(), message: what };
    let (_, info) = l402_proto::invoice::decode_invoice(bolt11).map_err(|e| bad(e.to_string()))?;
    if info.payment_hash != hash {
        return Err(bad("the invoice does not pay the challenge's payment hash".into()));
    }
    let request = l402_lightning::PayRequest {
        bolt11: bolt11.to_owned(),
        payment_hash: hash,
        amount: info.amount.ok_or_else(|| bad("amountless invoice".into()))?,
        max_fee: l402_proto::Msat(10_000),
        timeout: std::time::Duration::from_secs(30),
    };
    payer.pay(&request, &|_| {}).await.map_err(|e| bad(e.to_string()))
}

/// A free TCP port on 127.0.0.1, for a process to listen on.
///
/// Ports are taken from 20000-31999, below the kernel's ephemeral range (32768 and up on Linux): a port the
/// kernel handed out by `bind(0)` and released could be taken by any outbound connection (RPC polls, HTTP
/// clients) before the node binds it, which made node starts fail now and then. Within a process, ports are
/// handed out in turn from a random start, so parallel tests never get the same one; each is checked free by
/// binding it.
pub fn free_port() -> Result<u16, RegtestError> {
    use std::hash::{BuildHasher as _, Hasher as _};
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    if NEXT.load(Ordering::Relaxed) == u32::MAX {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let _ = NEXT.compare_exchange(
            u32::MAX,
            (h.finish() % u64::from(COUNT)) as u32,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
    for _ in 0..COUNT {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % COUNT) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(RegtestError::Io("finding a free port".into(), std::io::Error::from(std::io::ErrorKind::AddrInUse)))
}

/// Runs `f` on `n` threads released at the same moment (a race between instances or processes starting
/// together) and returns what each returned, in thread order. A panic in a thread is raised here.
pub fn at_once<T: Send + 'static>(n: usize, f: impl Fn() -> T + Send + Sync + 'static) -> Vec<T> {
    let start = std::sync::Arc::new(std::sync::Barrier::new(n));
    let f = std::sync::Arc::new(f);
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let (start, f) = (start.clone(), f.clone());
            std::thread::spawn(move || {
                start.wait();
                f()
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
}
