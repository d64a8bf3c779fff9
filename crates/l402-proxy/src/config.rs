//! The proxy's configuration file (TOML). `l402.sample.toml` at the repository root documents every key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
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
    /// How long a cached root key is trusted, milliseconds: the bound on a revocation made by another
    /// instance sharing the store. 0 disables the cache.
    #[serde(default = "default_key_cache_ttl")]
    pub key_cache_ttl_ms: u64,
    /// How many root keys the cache holds (default `l402_server::DEFAULT_KEY_CACHE_SIZE`, 100,000). When it
    /// is full, entries past their TTL are dropped, then the whole cache is cleared; a smaller cache means
    /// more store lookups, never a longer revocation bound.
    #[serde(default = "default_key_cache_size")]
    pub key_cache_size: usize,
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
fn default_timeout() -> u64 {
    30
}
fn default_host() -> String {
    "*".into()
}
fn yes() -> bool {
    true
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

/// One priced service.
#[derive(Clone, Debug, Deserialize)]
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
    #[serde(default)]
    pub upstream_ca: Option<PathBuf>,
    /// Price per token, msat (or `price_sat`).
    #[serde(default)]
    pub price_msat: Option<u64>,
    /// Price per token, sat.
    #[serde(default)]
    pub price_sat: Option<u64>,
    /// Token lifetime, seconds (none: until revoked).
    #[serde(default)]
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
    /// Free requests per client address before payment is asked (Aperture's freebies).
    #[serde(default)]
    pub freebies: u32,
    /// A token-bucket rate limit.
    #[serde(default)]
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
}

/// A route's capability requirement.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Path pattern.
    pub path: String,
    /// Methods (empty: all).
    #[serde(default)]
    pub methods: Vec<String>,
    /// The capability required.
    pub capability: String,
}

/// A token-bucket rate limit.
#[derive(Clone, Debug, Deserialize)]
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
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RateKey {
    /// Each token.
    Token,
    /// Each client address.
    Address,
}

/// Where an extra upstream header's value comes from.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderSource {
    /// A literal value.
    #[serde(default)]
    pub value: Option<String>,
    /// An environment variable.
    #[serde(default)]
    pub env: Option<String>,
    /// A file (trailing newline trimmed).
    #[serde(default)]
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
        match (self.price_msat, self.price_sat) {
            (Some(m), None) => Ok(m),
            (None, Some(s)) => {
                s.checked_mul(1000).ok_or_else(|| ConfigError(format!("service {}: price too large", self.name)))
            }
            (None, None) if !self.payment => Ok(0),
            _ => Err(ConfigError(format!("service {}: give exactly one of price_msat, price_sat", self.name))),
        }
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
        let config: Config = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        if config.services.is_empty() {
            return Err(ConfigError("no [[service]] configured".into()));
        }
        for s in &config.services {
            let price = s.price()?;
            if s.payment && price == 0 {
                return Err(ConfigError(format!("service {}: a paid service needs a price above 0", s.name)));
            }
            if s.name.is_empty() || s.name.contains([',', ':', '=', ' ']) {
                return Err(ConfigError(format!("service name {:?}: no commas, colons, '=' or spaces", s.name)));
            }
            for r in &s.routes {
                if !s.capabilities.contains(&r.capability) {
                    return Err(ConfigError(format!(
                        "service {}: route {} requires capability {:?}, which the service does not grant",
                        s.name, r.path, r.capability
                    )));
                }
            }
        }
        Ok(config)
    }
}
