//! The proxy's configuration file (TOML). `l402.sample.toml` at the repository root documents every key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A configuration error, naming the key at fault.
#[derive(Debug, Error)]
#[error("config: {0}")]
pub struct ConfigError(pub String);

/// The whole file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the proxy listens.
    pub listen: SocketAddr,
    /// TLS termination; plaintext (HTTP/1.1 and h2c) without it.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// The operations listener: `/metrics` and the admin API.
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// The token store.
    pub store: StoreConfig,
    /// The Lightning backend that issues invoices (built by the `l402` command, not by this crate).
    pub lightning: LightningConfig,
    /// Expiry of challenge invoices, seconds.
    #[serde(default = "default_invoice_expiry")]
    pub invoice_expiry_secs: u64,
    /// How long a cached root key of a stored token (and a recently verified credential) is trusted,
    /// milliseconds. Not a revocation bound: every verification checks the revocation set (see
    /// [`TokensConfig::revocation_poll_ms`]). 0 disables the cache.
    #[serde(default = "default_key_cache_ttl")]
    pub key_cache_ttl_ms: u64,
    /// How many root keys the cache holds (default `l402_server::DEFAULT_KEY_CACHE_SIZE`, 100,000). When it
    /// is full, entries past their TTL are dropped, then the whole cache is cleared; a smaller cache means
    /// more store lookups, never a longer revocation bound.
    #[serde(default = "default_key_cache_size")]
    pub key_cache_size: usize,
    /// Proxies (addresses or CIDR blocks) whose `X-Forwarded-For` is believed: for a connection from one of
    /// them, the client is the right-most entry that is not itself trusted. Used for freebies, rate limits
    /// and logs. Default: none (the client is the connection's peer).
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// How many clients (or tokens) each limit table tracks: the challenge limiter, and each service's
    /// freebies and rate limit. Past it the least recently seen are forgotten (memory stays bounded).
    #[serde(default = "default_max_tracked")]
    pub max_tracked_clients: usize,
    /// Bounds on connections and request heads.
    #[serde(default)]
    pub listener: ListenerConfig,
    /// The limit on 402 challenges, always on.
    #[serde(default)]
    pub challenge_limit: ChallengeLimitConfig,
    /// Freebies and rate limits shared by the instances on one PostgreSQL store.
    #[serde(default)]
    pub shared_limits: SharedLimitsConfig,
    /// How tokens are minted: stateless, from master keys (the default with SQLite), or stored at mint time.
    #[serde(default)]
    pub tokens: TokensConfig,
    /// The `Payment` scheme, for services whose `schemes` include `"payment"`.
    #[serde(default)]
    pub payment: PaymentConfig,
    /// What `/metrics` measures beyond the requests (the node probe).
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// The priced services, matched in order: the first whose host and path match takes the request.
    #[serde(rename = "service")]
    pub services: Vec<ServiceConfig>,
}

fn default_invoice_expiry() -> u64 {
    600
}
fn default_key_cache_ttl() -> u64 {
    1000
}
fn default_key_cache_size() -> usize {
    l402_server::DEFAULT_KEY_CACHE_SIZE
}
fn default_max_tracked() -> usize {
    100_000
}
fn default_max_body() -> u64 {
    10 << 20
}
fn default_timeout() -> u64 {
    30
}
fn default_host() -> String {
    "*".into()
}
fn default_schemes() -> Vec<String> {
    vec!["l402".into()]
}

fn yes() -> bool {
    true
}

/// Freebies and rate limits shared by the instances on one PostgreSQL store (with SQLite, one instance, they
/// are its own). Each instance decides alone, from what it knows; every `sync_ms` it writes the uses it
/// counted since in one batch and reads what the others wrote. So every instance counts another's uses
/// within **2 × `sync_ms`**, and no request waits for the store.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SharedLimitsConfig {
    /// How often uses are written and read, milliseconds (0: not shared; each instance counts alone).
    pub sync_ms: u64,
    /// A client's stored uses not written for this long are forgotten (its freebies start again, as when
    /// an instance's own table forgets it), seconds.
    pub retention_secs: u64,
}

impl Default for SharedLimitsConfig {
    fn default() -> Self {
        Self { sync_ms: 250, retention_secs: 86_400 }
    }
}

impl Config {
    /// Whether freebies and rate limits are shared: a PostgreSQL store and a sync interval.
    pub fn shared_limits_on(&self) -> bool {
        matches!(self.store, StoreConfig::Postgres { .. }) && self.shared_limits.sync_ms > 0
    }
}

/// Bounds on the listener: what a connection may hold and for how long. The defaults follow nginx's where it
/// has one (`client_header_timeout 60s`, `keepalive_timeout 75s`, `http2_max_concurrent_streams 128`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerConfig {
    /// A request head (HTTP/1.1) must arrive whole within this many seconds, and a new connection must
    /// start its first request within it; past it the connection is closed (no 408 is sent). On an
    /// HTTP/1.1 keep-alive connection the time waiting for the next request counts too.
    pub header_read_timeout_secs: u64,
    /// A TLS handshake must complete within this many seconds (nginx: 60).
    pub handshake_timeout_secs: u64,
    /// A connection with no request in progress (no request being read, answered or streamed) for this
    /// many seconds is closed.
    pub idle_timeout_secs: u64,
    /// HTTP/2: a PING is sent after this many seconds without a frame from the client (0: never)...
    pub http2_keep_alive_interval_secs: u64,
    /// ...and the connection is closed if it is not acknowledged within this many seconds.
    pub http2_keep_alive_timeout_secs: u64,
    /// HTTP/2: concurrent streams per connection.
    pub http2_max_concurrent_streams: u32,
    /// The largest request head, bytes (at least 8192; nginx's default is 4 buffers of 8 KiB). Over it:
    /// 431 (HTTP/1.1) or a stream reset (HTTP/2). The default leaves room for the largest L402 credential.
    pub max_header_bytes: usize,
    /// Connections served at once. Past it, new connections wait in the kernel's accept queue until one
    /// closes (nothing is refused by the proxy itself).
    pub max_connections: usize,
    /// Threads serving connections, each with a runtime of its own (0: one per core). A connection is
    /// served from start to end by the thread it was handed to, round robin, with its own upstream
    /// connections: no request crosses threads.
    pub workers: usize,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_secs: 60,
            handshake_timeout_secs: 10,
            idle_timeout_secs: 75,
            http2_keep_alive_interval_secs: 20,
            http2_keep_alive_timeout_secs: 20,
            http2_max_concurrent_streams: 128,
            max_header_bytes: 64 << 10,
            max_connections: 10_000,
            workers: 0,
        }
    }
}

/// The limit on challenges (each one an invoice on the Lightning node): per client prefix (an IPv4
/// address, an IPv6 /64) and for all clients together. Over it: 429 with `Retry-After`. It applies whatever
/// a service's own `rate_limit` says.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChallengeLimitConfig {
    /// Sustained challenges per second for one client prefix.
    pub per_client_per_second: f64,
    /// Burst for one client prefix.
    pub per_client_burst: u32,
    /// Sustained challenges per second for all clients together.
    pub global_per_second: f64,
    /// Burst for all clients together.
    pub global_burst: u32,
}

impl Default for ChallengeLimitConfig {
    fn default() -> Self {
        Self { per_client_per_second: 2.0, per_client_burst: 20, global_per_second: 200.0, global_burst: 400 }
    }
}

/// How tokens are minted and revoked.
///
/// Stateless (the default with SQLite, and with PostgreSQL once `master_key_files` is set): a token's root key
/// is derived from a master key, so a challenge writes nothing to the store and a verification reads nothing
/// from it; a token is recorded when it is first paid or used. Stored (PostgreSQL without master keys, or
/// `stored = true`): every challenge writes its root key to the store, the way tokens were minted before.
/// Tokens of either kind keep working whichever way new ones are minted.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokensConfig {
    /// Master key files (64 hex digits), the minting key first; the others only verify (rotation: put a new
    /// key first and keep the old one after it until its tokens have expired). The first is created, `0600`,
    /// when missing. Instances sharing a store must share these files. Default with SQLite: one file beside
    /// the database, `<path>.master-key`; with PostgreSQL: none (tokens are stored).
    #[serde(default)]
    pub master_key_files: Vec<PathBuf>,
    /// Store every token at mint time even with master keys at hand.
    #[serde(default)]
    pub stored: bool,
    /// How often each instance reads the revocations made by the others, milliseconds: a token revoked
    /// through one instance is refused by every other within twice this (default 1000).
    #[serde(default = "default_revocation_poll")]
    pub revocation_poll_ms: u64,
    /// How many stateless tokens are remembered as recorded (default 2,000,000, about 70 MB when full); keep
    /// it above the number of tokens in use.
    #[serde(default = "default_recorded_tokens")]
    pub recorded_tokens: usize,
    /// How many stateless tokens the verified-token cache holds (default 1,000,000, about 200 MB when full; 0:
    /// none): a token in it costs a map lookup instead of key derivation and an HMAC chain. Tokens in use up to
    /// its size are held whole (when it is full, what was not used recently gives way): keep it above the
    /// number of tokens in use for the proxy to run at one token's speed. `key_cache_ttl_ms` does not
    /// apply: nothing in it can go stale.
    #[serde(default = "default_verified_tokens")]
    pub verified_tokens: usize,
}

/// `[metrics]`: the probe of the Lightning node behind `l402_node_up` and the channel liquidity gauges.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Seconds between probes of the node (its `info` and channel balances), 1..=3600 (default 15).
    #[serde(default = "default_node_probe")]
    pub node_probe_secs: u64,
}

fn default_node_probe() -> u64 {
    15
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { node_probe_secs: default_node_probe() }
    }
}

fn default_revocation_poll() -> u64 {
    l402_server::DEFAULT_REVOCATION_POLL.as_millis() as u64
}
fn default_recorded_tokens() -> usize {
    l402_server::DEFAULT_RECORDED_SIZE
}
fn default_verified_tokens() -> usize {
    l402_server::DEFAULT_VERIFIED_STATELESS_SIZE
}

impl Default for TokensConfig {
    fn default() -> Self {
        Self {
            master_key_files: Vec::new(),
            stored: false,
            revocation_poll_ms: default_revocation_poll(),
            recorded_tokens: default_recorded_tokens(),
            verified_tokens: default_verified_tokens(),
        }
    }
}

impl TokensConfig {
    /// The master key files in effect for `store` (empty: tokens are stored at mint time).
    pub fn key_files(&self, store: &StoreConfig) -> Vec<PathBuf> {
        if self.stored {
            return Vec::new();
        }
        match (self.master_key_files.is_empty(), store) {
            (false, _) => self.master_key_files.clone(),
            (true, StoreConfig::Sqlite { path }) => {
                let mut name = path.file_name().unwrap_or_default().to_os_string();
                name.push(".master-key");
                vec![path.with_file_name(name)]
            }
            (true, StoreConfig::Postgres { .. }) => Vec::new(),
        }
    }
}

/// TLS termination from PEM files.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain (PEM).
    pub cert: PathBuf,
    /// The private key (PEM).
    pub key: PathBuf,
}

/// The operations listener.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Where it listens (keep it private).
    pub listen: SocketAddr,
    /// The admin API's bearer credential: from this environment variable...
    #[serde(default)]
    pub token_env: Option<String>,
    /// ...or this file. Without either, the admin API is off (metrics stay on).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

/// The token store.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum StoreConfig {
    /// A SQLite file (created on first start).
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// PostgreSQL, for several instances sharing tokens.
    Postgres {
        /// A libpq connection string (`host=... port=... user=... dbname=...`).
        url: String,
        /// Pool size.
        #[serde(default = "default_pool")]
        max_connections: usize,
    },
}

fn default_pool() -> usize {
    16
}

/// The Lightning backend.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase", deny_unknown_fields)]
pub enum LightningConfig {
    /// LND over gRPC (an invoice macaroon suffices).
    Lnd {
        /// `host:port` of LND's gRPC.
        address: String,
        /// LND's tls.cert (path, or PEM/hex/base64).
        tls_cert: String,
        /// A macaroon with invoices:read and invoices:write (path, or hex/base64).
        macaroon: String,
    },
    /// An LDK node embedded in the proxy.
    Ldk {
        /// The node's data directory.
        data_dir: PathBuf,
        /// `bitcoin`, `testnet`, `signet` or `regtest`.
        network: String,
        /// Where the node accepts Lightning peers.
        #[serde(default)]
        listen: Option<SocketAddr>,
        /// bitcoind RPC `host:port`.
        bitcoind_rpc: String,
        /// bitcoind RPC user.
        bitcoind_user: String,
        /// bitcoind RPC password (or use `bitcoind_password_env`).
        #[serde(default)]
        bitcoind_password: Option<String>,
        /// Environment variable holding the RPC password.
        #[serde(default)]
        bitcoind_password_env: Option<String>,
    },
}

/// The `Payment` scheme (MPP): its challenges' realm and expiry. Their ids are HMACs under a secret derived
/// from the master key, so instances sharing `[tokens] master_key_files` verify each other's challenges.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentConfig {
    /// The realm challenges name (default: the listen address, as Aperture).
    #[serde(default)]
    pub realm: Option<String>,
    /// How long a charge challenge can be paid and presented, seconds (default 900, Aperture's 15 minutes).
    #[serde(default = "default_charge_expiry")]
    pub expiry_secs: u64,
}

fn default_charge_expiry() -> u64 {
    900
}

impl Default for PaymentConfig {
    fn default() -> Self {
        Self { realm: None, expiry_secs: default_charge_expiry() }
    }
}

/// One priced service.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// The service name (in the token's caveats).
    pub name: String,
    /// Host pattern (`*` matches any run of characters; case-insensitive; port ignored).
    #[serde(default = "default_host")]
    pub host: String,
    /// Path pattern (`*` matches any run of characters, `/` included).
    pub path: String,
    /// Upstream base URL: `http://`, `https://` or `h2c://` (HTTP/2 without TLS, for gRPC).
    pub upstream: String,
    /// A CA certificate (PEM) to trust for an `https://` upstream (instead of none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_ca: Option<PathBuf>,
    /// Price per token, msat (or `price_sat`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_msat: Option<u64>,
    /// Price per token, sat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_sat: Option<u64>,
    /// Token lifetime, seconds (none: until revoked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_secs: Option<u64>,
    /// Pricing tier.
    #[serde(default)]
    pub tier: u32,
    /// Capabilities the service's tokens grant.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Routes that require a capability (first match).
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
    /// Paths (patterns) served without payment.
    #[serde(default)]
    pub free_paths: Vec<String>,
    /// Free requests per client (an IPv4 address, an IPv6 /64) before payment is asked (Aperture's freebies).
    /// A freebie never opens a route that needs a capability.
    #[serde(default)]
    pub freebies: u32,
    /// A token-bucket rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitConfig>,
    /// Extra headers sent upstream.
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderSource>,
    /// Upstream response timeout (to headers), seconds: past it, 504.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Ask for payment (false: a plain reverse proxy, e.g. to measure the paywall's cost).
    #[serde(default = "yes")]
    pub payment: bool,
    /// The schemes a 402 offers and requests may pay with: `"l402"` (tokens, reusable until they expire) and
    /// `"payment"` (the `Payment` scheme's Lightning charge, one payment per request). Default `["l402"]`.
    #[serde(default = "default_schemes")]
    pub schemes: Vec<String>,
    /// The largest request body, bytes: a larger `Content-Length` is answered 413 before anything is
    /// forwarded; a body without one (chunked, HTTP/2) is cut when it passes the limit.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    /// Match this service's path, free-path and route patterns without regard to ASCII case, for an
    /// upstream that serves `/Admin` as `/admin` (else `/Admin` would escape a `/admin/*` route). The path
    /// forwarded keeps its case.
    #[serde(default)]
    pub case_insensitive_paths: bool,
    /// Metered pricing: a payment buys a bundle that requests draw down by what they used (see
    /// [`MeteringConfig`]). The service's price is then the bundle's price.
    #[serde(default)]
    pub metering: Option<MeteringConfig>,
    /// Sessions (the `Payment` scheme's `session` intent): a deposit opens a balance that each request draws
    /// the service's price from; see [`SessionConfig`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionConfig>,
}

/// `[service.session]`: the 402 also offers a session (a `Payment ... intent="session"` line). Its deposit is
/// `deposit_sat`, or `deposit_requests` × the service's price (default 20 requests, as Aperture); each request
/// is debited the service's price (whole satoshis); a top-up costs the deposit again; a close refunds what is
/// left over Lightning (the node must be able to pay: with LND, a macaroon that allows sending). Needs master
/// keys (as the `Payment` scheme does) and a price in whole satoshis; not with metering.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// The deposit, satoshis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deposit_sat: Option<u64>,
    /// The deposit, in requests at the service's price (when `deposit_sat` is not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deposit_requests: Option<u64>,
}

impl SessionConfig {
    /// The deposit of service `name` priced `price_msat` per request, checked: at least one request's price,
    /// at most 21M BTC, one of the two keys.
    pub fn deposit(&self, name: &str, price_msat: u64) -> Result<l402_proto::Msat, ConfigError> {
        let err = |what: &str| ConfigError(format!("service {name}: session: {what}"));
        let price_sat = price_msat.div_ceil(1000);
        let sat = match (self.deposit_sat, self.deposit_requests) {
            (Some(_), Some(_)) => return Err(err("give deposit_sat or deposit_requests, not both")),
            (Some(d), None) => d,
            (None, r) => {
                let r = r.unwrap_or(l402_server::session::DEFAULT_DEPOSIT_REQUESTS);
                if r == 0 {
                    return Err(err("deposit_requests must be at least 1"));
                }
                price_sat.checked_mul(r).ok_or_else(|| err("deposit too large"))?
            }
        };
        if sat < price_sat {
            return Err(err(&format!("deposit_sat {sat} is less than one request ({price_sat} sat)")));
        }
        if sat > 21_000_000 * 100_000_000 {
            return Err(err("deposit over 21M BTC"));
        }
        Ok(l402_proto::Msat::from_sat(sat))
    }
}

/// `[service.metering]`: a payment (an L402 token, or a `Payment` charge) buys a balance worth `bundle` units
/// (model tokens, say) and each request is debited what it used, read from the OpenAI-style `usage` object of
/// its response. Give per-direction unit prices (`input_msat_per_unit`, `output_msat_per_unit`) or a flat
/// `per_request_msat`. The bundle's price, the service's price, is `bundle` × the higher unit price (or ×
/// `per_request_msat`): a bundle buys at least `bundle` units in either direction. All amounts are whole msat.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MeteringConfig {
    /// Units bought per payment (tokens, or requests with `per_request_msat`).
    pub bundle: u64,
    /// Price of a prompt (input) unit, msat.
    #[serde(default)]
    pub input_msat_per_unit: Option<u64>,
    /// Price of a completion (output) unit, msat.
    #[serde(default)]
    pub output_msat_per_unit: Option<u64>,
    /// A flat price per request, msat (instead of unit prices; no usage is read).
    #[serde(default)]
    pub per_request_msat: Option<u64>,
    /// Completion units reserved for a request whose body gives no `max_completion_tokens` / `max_tokens`.
    #[serde(default = "default_estimate")]
    pub default_estimate: u64,
    /// An external pricer (`http://` URL), for operators who price dynamically: once a response has
    /// reported its usage, the proxy POSTs `{"service", "id", "prompt_tokens", "completion_tokens",
    /// "total_tokens"}` (`id`: the token id or charge payment hash) and debits the `{"msat": N}` it answers.
    /// An answer that does not come within `pricer_timeout_ms`, is not a 2xx, or is not that JSON, is
    /// logged and the unit prices above are used instead. They also keep pricing the bundle and the
    /// reservation. Needs unit prices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricer_url: Option<String>,
    /// How long the pricer may take, milliseconds.
    #[serde(default = "default_pricer_timeout")]
    pub pricer_timeout_ms: u64,
}

fn default_pricer_timeout() -> u64 {
    500
}

fn default_estimate() -> u64 {
    1000
}

/// A service's metering, checked: unit prices or a flat price, and the bundle's price.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Meter {
    /// Per-direction unit prices, msat.
    Units {
        /// Per prompt unit.
        input: u64,
        /// Per completion unit.
        output: u64,
        /// Completion units reserved when the request names no maximum.
        default_estimate: u64,
    },
    /// A flat price per request, msat.
    PerRequest(u64),
}

impl MeteringConfig {
    /// Checks the metering of service `name` and returns it with the bundle's price (msat).
    pub fn check(&self, name: &str) -> Result<(Meter, u64), ConfigError> {
        let err = |what: &str| ConfigError(format!("service {name}: metering: {what}"));
        if self.bundle == 0 {
            return Err(err("bundle must be at least 1"));
        }
        let (meter, unit) = match (self.input_msat_per_unit, self.output_msat_per_unit, self.per_request_msat) {
            (None, None, Some(flat)) => (Meter::PerRequest(flat), flat),
            (input, output, None) if input.is_some() || output.is_some() => {
                let (input, output) = (input.unwrap_or(0), output.unwrap_or(0));
                if self.default_estimate == 0 {
                    return Err(err("default_estimate must be at least 1"));
                }
                (Meter::Units { input, output, default_estimate: self.default_estimate }, input.max(output))
            }
            _ => return Err(err("give input_msat_per_unit and/or output_msat_per_unit, or per_request_msat")),
        };
        if unit == 0 {
            return Err(err("a unit price above 0 is needed"));
        }
        if let Some(url) = &self.pricer_url {
            if matches!(meter, Meter::PerRequest(_)) {
                return Err(err("pricer_url prices reported usage: give unit prices, not per_request_msat"));
            }
            let uri: http::Uri = url.parse().map_err(|_| err("pricer_url: not a URL"))?;
            if uri.scheme_str() != Some("http") || uri.host().is_none() {
                return Err(err("pricer_url: give an http:// URL with a host"));
            }
        }
        if !(1..=60_000).contains(&self.pricer_timeout_ms) {
            return Err(err("pricer_timeout_ms: give 1..=60000"));
        }
        let price =
            self.bundle.checked_mul(unit).filter(|p| *p <= MAX_BUNDLE_MSAT).ok_or_else(|| {
                err(&format!("bundle × unit price is over {MAX_BUNDLE_MSAT} msat (21 million bitcoin)"))
            })?;
        Ok((meter, price))
    }
}

/// The most a bundle may cost: every bitcoin there will be, in msat (fits in an i64 column).
const MAX_BUNDLE_MSAT: u64 = 21_000_000 * 100_000_000 * 1000;

/// A route's capability requirement.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Path pattern.
    pub path: String,
    /// Methods (empty: all). A request whose path matches a route with methods, but whose method matches
    /// no route for that path, is answered 405 with `Allow` (it never passes as needing no capability).
    #[serde(default)]
    pub methods: Vec<String>,
    /// The capability required.
    pub capability: String,
}

/// A token-bucket rate limit.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// What is limited: each `token` or each client `address`.
    pub per: RateKey,
    /// Sustained requests per second.
    pub per_second: f64,
    /// Burst size.
    pub burst: u32,
}

/// What a rate limit counts by.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RateKey {
    /// Each token.
    Token,
    /// Each client address.
    Address,
}

/// Where an extra upstream header's value comes from.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderSource {
    /// A literal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// An environment variable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// A file (trailing newline trimmed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

impl HeaderSource {
    /// Resolves the value.
    pub fn resolve(&self, name: &str) -> Result<String, ConfigError> {
        match (&self.value, &self.env, &self.file) {
            (Some(v), None, None) => Ok(v.clone()),
            (None, Some(var), None) => std::env::var(var)
                .map_err(|_| ConfigError(format!("header {name}: environment variable {var} is not set"))),
            (None, None, Some(path)) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
                .map_err(|e| ConfigError(format!("header {name}: reading {}: {e}", path.display()))),
            _ => Err(ConfigError(format!("header {name}: give exactly one of value, env, file"))),
        }
    }
}

impl ServiceConfig {
    /// The price in msat.
    pub fn price(&self) -> Result<u64, ConfigError> {
        if let Some(m) = &self.metering {
            if self.price_msat.is_some() || self.price_sat.is_some() {
                return Err(ConfigError(format!(
                    "service {}: a metered service's price is its bundle's: remove price_msat / price_sat",
                    self.name
                )));
            }
            return m.check(&self.name).map(|(_, price)| price);
        }
        match (self.price_msat, self.price_sat) {
            (Some(m), None) => Ok(m),
            (None, Some(s)) => {
                s.checked_mul(1000).ok_or_else(|| ConfigError(format!("service {}: price too large", self.name)))
            }
            (None, None) if !self.payment => Ok(0),
            _ => Err(ConfigError(format!("service {}: give exactly one of price_msat, price_sat", self.name))),
        }
    }

    /// The schemes it is paid in.
    pub fn schemes(&self) -> Result<l402_server::Schemes, ConfigError> {
        l402_server::Schemes::from_names(&self.schemes).ok_or_else(|| {
            ConfigError(format!(
                "service {}: schemes: a non-empty list of \"l402\" and \"payment\" (got {:?})",
                self.name, self.schemes
            ))
        })
    }
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError(format!("reading {}: {e}", path.display())))?;
        Self::parse(&text)
    }

    /// Parses and checks a configuration.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        if config.services.is_empty() {
            return Err(ConfigError("no [[service]] configured".into()));
        }
        config.check_limits()?;
        if config.tokens.revocation_poll_ms == 0 || config.tokens.revocation_poll_ms > 3_600_000 {
            return Err(ConfigError("tokens.revocation_poll_ms: give 1..=3600000".into()));
        }
        if !(1..=3_600).contains(&config.metrics.node_probe_secs) {
            return Err(ConfigError("metrics.node_probe_secs: give 1..=3600".into()));
        }
        if !(1..=86_400).contains(&config.payment.expiry_secs) {
            return Err(ConfigError("payment.expiry_secs: give 1..=86400".into()));
        }
        crate::client::TrustedProxies::parse(&config.trusted_proxies)?;
        check_services(&config.services)?;
        Ok(config)
    }

    fn check_limits(&self) -> Result<(), ConfigError> {
        let l = &self.listener;
        for (key, v) in [
            ("header_read_timeout_secs", l.header_read_timeout_secs),
            ("handshake_timeout_secs", l.handshake_timeout_secs),
            ("idle_timeout_secs", l.idle_timeout_secs),
            ("http2_keep_alive_timeout_secs", l.http2_keep_alive_timeout_secs),
        ] {
            if v == 0 || v > MAX_TIMEOUT_SECS {
                return Err(ConfigError(format!("listener.{key}: between 1 and {MAX_TIMEOUT_SECS} seconds")));
            }
        }
        if l.http2_keep_alive_interval_secs > MAX_TIMEOUT_SECS {
            return Err(ConfigError(format!("listener.http2_keep_alive_interval_secs: at most {MAX_TIMEOUT_SECS}")));
        }
        if !(8192..=u32::MAX as usize).contains(&l.max_header_bytes) {
            return Err(ConfigError("listener.max_header_bytes: at least 8192".into()));
        }
        if l.max_connections == 0 || l.http2_max_concurrent_streams == 0 {
            return Err(ConfigError("listener: max_connections and http2_max_concurrent_streams: at least 1".into()));
        }
        if l.workers > 1024 {
            return Err(ConfigError("listener.workers: at most 1024 (0: one per core)".into()));
        }
        if self.shared_limits.sync_ms > 3_600_000 {
            return Err(ConfigError("shared_limits.sync_ms: at most 3600000 (0: not shared)".into()));
        }
        if self.shared_limits.retention_secs < 60 {
            return Err(ConfigError("shared_limits.retention_secs: at least 60".into()));
        }
        if self.max_tracked_clients == 0 {
            return Err(ConfigError("max_tracked_clients: at least 1".into()));
        }
        let c = &self.challenge_limit;
        positive("challenge_limit.per_client_per_second", c.per_client_per_second)?;
        positive("challenge_limit.global_per_second", c.global_per_second)?;
        if c.per_client_burst == 0 || c.global_burst == 0 {
            return Err(ConfigError("challenge_limit: bursts must be at least 1".into()));
        }
        Ok(())
    }
}

/// A TOML error by line, key and message, without the value (the file can hold secrets, and a reload's error
/// is logged).
fn toml_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let Some(span) = e.span() else { return ConfigError(e.message().to_owned()) };
    let mut start = span.start.min(text.len());
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let line = text.as_bytes()[..start].iter().filter(|&&b| b == b'\n').count() + 1;
    // The key of a `key = value` line, if it is a plain one: a key is not secret, its value may be.
    let line_text = text[..start].rsplit('\n').next().unwrap_or_default().to_owned()
        + text[start..].split('\n').next().unwrap_or_default();
    let key = line_text
        .split_once('=')
        .map(|(k, _)| k.trim())
        .filter(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)));
    match key {
        Some(k) => ConfigError(format!("line {line} ({k}): {}", e.message())),
        None => ConfigError(format!("line {line}: {}", e.message())),
    }
}

impl ServiceConfig {
    /// Reads one service from a JSON object with the keys of a `[[service]]` table (the admin API's form;
    /// unknown keys are refused, as in the file). Checked on its own by [`check_services`] with the others.
    pub fn from_json(body: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
    }
}

/// The checks every set of services passes, from the file or the admin API alike: unique names, patterns
/// that can match, prices, schemes, capabilities, limits.
pub fn check_services(services: &[ServiceConfig]) -> Result<(), ConfigError> {
    let mut names = std::collections::HashSet::new();
    for s in services {
        if !names.insert(s.name.as_str()) {
            return Err(ConfigError(format!(
                "service {}: the name is already used by another [[service]] (names must be unique: a \
                 token names its service)",
                s.name
            )));
        }
        check_service(s)?;
    }
    Ok(())
}

fn check_service(s: &ServiceConfig) -> Result<(), ConfigError> {
    if s.name.is_empty() || s.name.contains([',', ':', '=', ' ', '/']) || s.name.chars().any(char::is_control) {
        return Err(ConfigError(format!(
            "service name {:?}: no commas, colons, '=', '/', spaces or control characters",
            s.name
        )));
    }
    let patterns = std::iter::once(&s.path).chain(&s.free_paths).chain(s.routes.iter().map(|r| &r.path));
    for p in patterns {
        check_pattern(&s.name, p)?;
    }
    if let Some(r) = &s.rate_limit {
        positive(&format!("service {}: rate_limit.per_second", s.name), r.per_second)?;
    }
    let price = s.price()?;
    let schemes = s.schemes()?;
    if s.payment && schemes.payment && price % 1000 != 0 {
        return Err(ConfigError(format!(
            "service {}: the Payment scheme prices in whole satoshis: give price_sat, or a price_msat \
             that is a multiple of 1000",
            s.name
        )));
    }
    if s.metering.is_some() && !s.payment {
        return Err(ConfigError(format!("service {}: metering needs payment = true", s.name)));
    }
    if let Some(session) = &s.session {
        if !s.payment {
            return Err(ConfigError(format!("service {}: sessions need payment = true", s.name)));
        }
        if s.metering.is_some() {
            return Err(ConfigError(format!("service {}: sessions and metering do not go together", s.name)));
        }
        if price % 1000 != 0 {
            return Err(ConfigError(format!(
                "service {}: sessions price in whole satoshis: give price_sat, or a price_msat that is a multiple \
                 of 1000",
                s.name
            )));
        }
        session.deposit(&s.name, price)?;
    }
    if s.payment && price == 0 {
        return Err(ConfigError(format!("service {}: a paid service needs a price above 0", s.name)));
    }
    for r in &s.routes {
        if !s.capabilities.contains(&r.capability) {
            return Err(ConfigError(format!(
                "service {}: route {} requires capability {:?}, which the service does not grant",
                s.name, r.path, r.capability
            )));
        }
    }
    if s.timeout_secs == 0 || s.timeout_secs > MAX_TIMEOUT_SECS {
        return Err(ConfigError(format!("service {}: timeout_secs between 1 and {MAX_TIMEOUT_SECS}", s.name)));
    }
    Ok(())
}

/// A path pattern is matched against canonical paths only: one that no canonical path can match (`//`, a dot
/// segment, an escape that canonicalisation rewrites) is a mistake, named with the form that would match.
fn check_pattern(service: &str, pattern: &str) -> Result<(), ConfigError> {
    if !pattern.starts_with('/') {
        return Ok(()); // `*`, `*.json`: not tied to the path's form.
    }
    match crate::routing::canonical_path(pattern) {
        Ok(c) if c == pattern => Ok(()),
        Ok(c) => Err(ConfigError(format!(
            "service {service}: pattern {pattern:?} never matches (paths are matched in canonical form): write {c:?}"
        ))),
        Err(e) => Err(ConfigError(format!("service {service}: pattern {pattern:?} never matches: {e}"))),
    }
}

/// The longest timeout accepted (a day): keeps every deadline computation far from overflow.
const MAX_TIMEOUT_SECS: u64 = 86_400;

fn positive(key: &str, v: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v > 0.0 { Ok(()) } else { Err(ConfigError(format!("{key}: a finite number above 0"))) }
}
