//! What `Paywall::check` costs per request, in process (no HTTP), with the default cache settings: one
//! stateless token reused (the verified-credential cache answers), one with the cache off (key derivation
//! and the HMAC chain every time), and N distinct tokens in rotation (`L402_BENCH_TOKENS`, default 1,000,000:
//! far more than the cache holds, each recorded once). `cargo bench -p l402-server --bench check`.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use l402_lightning::{
    InvoiceIssuer, InvoiceRequest, InvoiceState, IssuedInvoice, LightningError, LightningErrorKind, Node, NodeInfo,
    SettlementStream,
};
use l402_proto::{Credential, Msat, PaymentHash, Preimage, Scheme};
use l402_server::store::SqliteStore;
use l402_server::{Charge, MasterKey, MasterKeys, Paywall, ServiceSpec, mint_stateless};

/// Verification never calls the node; this one refuses everything.
struct NoNode;

fn refused() -> LightningError {
    LightningError::new(LightningErrorKind::Unavailable, "no node in this benchmark")
}

#[async_trait]
impl Node for NoNode {
    async fn info(&self) -> Result<NodeInfo, LightningError> {
        Err(refused())
    }
}

#[async_trait]
impl InvoiceIssuer for NoNode {
    async fn create_invoice(&self, _: &InvoiceRequest) -> Result<IssuedInvoice, LightningError> {
        Err(refused())
    }
    async fn lookup_invoice(&self, _: &PaymentHash) -> Result<InvoiceState, LightningError> {
        Err(refused())
    }
    async fn wait_invoice(&self, _: &PaymentHash, _: Duration) -> Result<InvoiceState, LightningError> {
        Err(refused())
    }
    async fn subscribe_settlements(&self) -> Result<SettlementStream, LightningError> {
        Err(refused())
    }
}

fn credentials(keys: &MasterKeys, spec: &ServiceSpec, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let mut p = [0u8; 32];
            p[..8].copy_from_slice(&(i as u64).to_le_bytes());
            p[8] = 0xa5;
            let preimage = Preimage(p);
            let (mac, _) = mint_stateless(keys, preimage.payment_hash(), spec, 1_700_000_000).expect("mint");
            Credential::new(Scheme::L402, mac, preimage).header_value()
        })
        .collect()
}

/// Parses each credential from its header (as a request would) and checks it.
async fn run(paywall: &Paywall, charge: &Charge, headers: &[String], total: usize) -> Duration {
    let start = Instant::now();
    for i in 0..total {
        let cred = Credential::parse(headers[i % headers.len()].as_bytes()).expect("parse");
        paywall.check(&cred, charge).await.expect("verified");
    }
    start.elapsed()
}

/// Waits until the writer is idle (the count of recorded tokens stops growing) and returns the count.
async fn settle(paywall: &Paywall) -> u64 {
    let count = || async {
        let revenue = paywall.store().revenue().await.expect("revenue");
        revenue.first().map_or(0, |r| r.tokens_paid)
    };
    let mut last = count().await;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = count().await;
        if now == last {
            return now;
        }
        last = now;
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let n: usize = std::env::var("L402_BENCH_TOKENS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
        let keys = MasterKeys::single(MasterKey::from_bytes(&[3; 32]));
        let spec = Arc::new(ServiceSpec::new("svc", Msat::from_sat(1)));
        let charge = Charge::of(&spec);
        let paywall = |ttl: Duration| {
            let store = Arc::new(SqliteStore::in_memory().expect("sqlite"));
            Paywall::builder(store, Arc::new(NoNode)).master_keys(keys.clone()).key_cache_ttl(ttl).build()
        };
        let per = |d: Duration, k: usize| d.as_nanos() as f64 / k as f64;
        let reps = 1_000_000;
        let one = credentials(&keys, &spec, 1);
        let header = one[0].clone();
        let t = Instant::now();
        for _ in 0..reps {
            std::hint::black_box(Credential::parse(std::hint::black_box(header.as_bytes())).expect("parse"));
        }
        println!("parsing the credential alone:   {:>7.0} ns", per(t.elapsed(), reps));
        let cached = paywall(l402_server::DEFAULT_KEY_CACHE_TTL);
        run(&cached, &charge, &one, 1_000).await;
        let d = run(&cached, &charge, &one, reps).await;
        println!("one token, verified cache on:   {:>7.0} ns/check", per(d, reps));
        let uncached = paywall(Duration::ZERO);
        run(&uncached, &charge, &one, 1_000).await;
        let d = run(&uncached, &charge, &one, reps).await;
        println!("one token, verified cache off:  {:>7.0} ns/check", per(d, reps));

        let t = Instant::now();
        let many = credentials(&keys, &spec, n);
        println!("minted {n} tokens in {:?}", t.elapsed());
        // The default cache TTL (1 s), as the proxy runs: a token of the rotation comes back every few seconds.
        let rotation = paywall(l402_server::DEFAULT_KEY_CACHE_TTL);
        let first = run(&rotation, &charge, &many, n).await;
        println!("{n} tokens, first use (recorded): {:>7.0} ns/check", per(first, n));
        // A record the writer's queue cannot take is made on a later use: go round until all are recorded.
        let mut passes = 1;
        loop {
            let recorded = settle(&rotation).await;
            println!("recorded after {passes} pass(es): {recorded}");
            if recorded as usize >= n || passes == 10 {
                break;
            }
            let d = run(&rotation, &charge, &many, n).await;
            passes += 1;
            println!("{n} tokens, pass {passes}:               {:>7.0} ns/check", per(d, n));
        }
        let again = run(&rotation, &charge, &many, n).await;
        println!("{n} tokens in rotation, all recorded: {:>7.0} ns/check", per(again, n));
        println!("recorded at the end: {}", settle(&rotation).await);
    });
}
