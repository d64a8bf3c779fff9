//! What the paywall tests share: a real regtest channel (alice pays, server issues), a real store wrapped to
//! count its calls and to fail on demand, and the layer in front of a real axum app on loopback.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::routing::get;
use l402_ldk::LdkNode;
use l402_proto::{Msat, PaymentHash, TokenId};
use l402_regtest::Regtest;
use l402_server::store::{
    KeyLookup, NewToken, Revenue, Revocation, SpentCharge, StoreError, StoredService, TokenInfo, TokenQuery,
    TokenStore, UsedToken,
};
use l402_server::{Charge, L402Layer, L402Token, Paywall, RequestInfo, ServiceSpec};

/// A real store that counts its calls by method and fails every call while `down`.
pub struct Counting {
    inner: Arc<dyn TokenStore>,
    pub down: AtomicBool,
    calls: Mutex<BTreeMap<&'static str, usize>>,
}

/// The calls that write.
pub const WRITES: [&str; 6] = ["insert", "record", "mark_paid", "revoke", "revoke_id", "spend_charge"];

impl Counting {
    pub fn new(inner: impl TokenStore) -> Arc<Self> {
        Arc::new(Self { inner: Arc::new(inner), down: AtomicBool::new(false), calls: Mutex::default() })
    }

    fn call(&self, method: &'static str) -> Result<(), StoreError> {
        *self.calls.lock().expect("calls").entry(method).or_default() += 1;
        if self.down.load(Ordering::SeqCst) { Err(StoreError("connection refused".into())) } else { Ok(()) }
    }

    pub fn count(&self, method: &str) -> usize {
        self.calls.lock().expect("calls").get(method).copied().unwrap_or(0)
    }

    pub fn writes(&self) -> usize {
        WRITES.iter().map(|m| self.count(m)).sum()
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

#[async_trait]
impl TokenStore for Counting {
    async fn insert(&self, t: &NewToken) -> Result<(), StoreError> {
        self.call("insert")?;
        self.inner.insert(t).await
    }
    async fn lookup(&self, id: &[u8; 32]) -> Result<KeyLookup, StoreError> {
        self.call("lookup")?;
        self.inner.lookup(id).await
    }
    async fn revoke(&self, t: &TokenId) -> Result<bool, StoreError> {
        self.call("revoke")?;
        self.inner.revoke(t).await
    }
    async fn revoke_id(&self, t: &TokenId) -> Result<bool, StoreError> {
        self.call("revoke_id")?;
        self.inner.revoke_id(t).await
    }
    async fn revocations_since(&self, after: u64, limit: u32) -> Result<Vec<Revocation>, StoreError> {
        self.call("revocations_since")?;
        self.inner.revocations_since(after, limit).await
    }
    async fn record(&self, t: &[UsedToken]) -> Result<Vec<bool>, StoreError> {
        self.call("record")?;
        self.inner.record(t).await
    }
    async fn mark_paid(&self, h: &PaymentHash, a: Option<Msat>, at: u64) -> Result<bool, StoreError> {
        self.call("mark_paid")?;
        self.inner.mark_paid(h, a, at).await
    }
    async fn list(&self, q: &TokenQuery) -> Result<Vec<TokenInfo>, StoreError> {
        self.call("list")?;
        self.inner.list(q).await
    }
    async fn revenue(&self) -> Result<Vec<Revenue>, StoreError> {
        self.call("revenue")?;
        self.inner.revenue().await
    }
    async fn spend_charge(&self, c: &SpentCharge) -> Result<bool, StoreError> {
        self.call("spend_charge")?;
        self.inner.spend_charge(c).await
    }
    async fn put_service(&self, name: &str, config: Option<&str>) -> Result<u64, StoreError> {
        self.call("put_service")?;
        self.inner.put_service(name, config).await
    }
    async fn services(&self) -> Result<Vec<StoredService>, StoreError> {
        self.call("services")?;
        self.inner.services().await
    }
    async fn services_version(&self) -> Result<u64, StoreError> {
        self.call("services_version")?;
        self.inner.services_version().await
    }
}

/// A regtest network with a channel alice -> server.
pub struct Net {
    pub net: Regtest,
    pub alice: Arc<LdkNode>,
    pub server: Arc<LdkNode>,
}

impl Net {
    pub async fn start() -> Self {
        let net = Regtest::start().await.expect("regtest (is bitcoind installed? scripts/install-bitcoind.sh)");
        let (alice, server) = net.channel_pair("alice", "server", 1_000_000, 800_000).await.expect("alice -> server");
        Self { net, alice, server }
    }

    /// Pays the challenge of a 402 and returns the Authorization value.
    pub async fn pay(&self, resp: reqwest::Response) -> String {
        assert_eq!(resp.status(), 402, "a challenge to pay");
        let lines: Vec<&[u8]> = resp.headers().get_all("www-authenticate").iter().map(|v| v.as_bytes()).collect();
        l402_regtest::pay_challenge(self.alice.as_ref(), lines).await.expect("paid over lightning").0
    }
}

/// `weather` tier 0 (1000 sat, 1 h, capability `read`) on /weather, `weather` tier 1 (5000 sat) on
/// /weather-pro, `maps` (2000 sat) on /maps.
pub fn weather() -> Arc<ServiceSpec> {
    Arc::new(
        ServiceSpec::new("weather", Msat::from_sat(1_000)).lifetime(Duration::from_secs(3600)).capabilities(["read"]),
    )
}

pub fn weather_pro() -> Arc<ServiceSpec> {
    Arc::new(ServiceSpec { tier: 1, ..ServiceSpec::new("weather", Msat::from_sat(5_000)) })
}

/// The app behind the layer, on loopback.
pub struct App {
    pub base: String,
    pub paywall: Arc<Paywall>,
    pub http: reqwest::Client,
}

pub async fn serve(paywall: Arc<Paywall>) -> App {
    let (weather, pro, maps) = (weather(), weather_pro(), Arc::new(ServiceSpec::new("maps", Msat::from_sat(2_000))));
    let pricing = move |r: &RequestInfo<'_>| -> Option<Charge> {
        match r.uri.path() {
            "/weather" => Some(Charge::of(&weather).requiring("read")),
            "/weather-pro" => Some(Charge::of(&pro)),
            "/maps" => Some(Charge::of(&maps)),
            _ => None,
        }
    };
    let handler = |t: L402Token| async move { format!("{} for {}", t.service, t.token_id) };
    let app = Router::new()
        .route("/weather", get(handler))
        .route("/weather-pro", get(handler))
        .route("/maps", get(handler))
        .layer(L402Layer::new(paywall.clone(), pricing));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    App { base, paywall, http: reqwest::Client::new() }
}

impl App {
    pub async fn get(&self, path: &str, auth: Option<&str>) -> reqwest::Response {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send().await.expect("request")
    }

    pub async fn status(&self, path: &str, auth: Option<&str>) -> u16 {
        self.get(path, auth).await.status().as_u16()
    }
}

/// Waits (up to 10 s) until `f` holds.
pub async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The macaroon and preimage of an `L402 <mac>:<preimage>` value.
pub fn parts(auth: &str) -> (&str, &str) {
    auth.split_once(' ').and_then(|(_, c)| c.split_once(':')).expect("L402 mac:preimage")
}

/// The token id of a credential.
pub fn token_id(auth: &str) -> TokenId {
    let cred = l402_proto::Credential::parse(auth.as_bytes()).expect("credential");
    cred.macaroon.l402_identifier().expect("identifier").token_id
}
