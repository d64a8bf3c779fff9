//! The live services: built from the config file's `[[service]]` tables and the services the admin API
//! wrote to the store, swapped whole.
//!
//! The rule: a service in the store replaces the file's service of the same name in place (a deleted one
//! removes it); the store's other services come after the file's, in the order they were created. Every
//! change (admin API, SIGHUP, another instance's write seen by the poller) builds a whole new
//! [`ServiceTable`], checked as the config file is ([`check_services`]) and ready to serve, then swaps it in
//! one step: a bad change changes nothing, and a request already routed keeps the service it started with
//! (its table is an `Arc` it holds). A service whose configuration did not change keeps its state (freebies,
//! rate limits, upstream connections).
//!
//! A request takes the table through its thread's cache ([`Registry::for_request`]): an atomic load of the
//! generation, and the table is read under the lock only after a swap, once per thread. A thread keeps the old
//! table (and its upstream connections) until its next request.
//!
//! Instances sharing a PostgreSQL store read `MAX(version)` of the store's services every poll interval (the
//! revocation poll, `[tokens] revocation_poll_ms`) and rebuild when it moved: a change made through one
//! instance is served by every other within **2 × the poll interval**.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use l402_server::store::{StoreError, TokenStore};

use crate::config::{Config, ConfigError, ServiceConfig, check_services};
use crate::proxy::Service;

/// One consistent set of services, in matching order.
pub(crate) struct ServiceTable {
    pub(crate) services: Vec<Arc<Service>>,
    /// Whether some service matches paths without regard to case (then a lower-cased path is made).
    pub(crate) any_case_insensitive: bool,
}

/// A service as the store has it: its configuration, or deleted.
#[derive(Clone)]
struct Stored {
    name: String,
    config: Option<ServiceConfig>,
}

/// Where the live set comes from.
#[derive(Clone)]
struct Sources {
    file: Vec<ServiceConfig>,
    stored: Vec<Stored>,
    /// The store's version these `stored` are (0: nothing read yet, or nothing written).
    version: u64,
}

impl Sources {
    /// The live set, by the rule in the module's documentation.
    fn effective(&self) -> Vec<ServiceConfig> {
        let stored = |name: &str| self.stored.iter().find(|s| s.name == name);
        let mut out: Vec<ServiceConfig> = Vec::new();
        for f in &self.file {
            match stored(&f.name) {
                Some(Stored { config: Some(c), .. }) => out.push(c.clone()),
                Some(Stored { config: None, .. }) => {}
                None => out.push(f.clone()),
            }
        }
        for s in &self.stored {
            if let Some(c) = &s.config {
                if !self.file.iter().any(|f| f.name == s.name) {
                    out.push(c.clone());
                }
            }
        }
        out
    }
}

/// Why a change to the services was refused.
#[derive(Debug)]
pub enum ServiceError {
    /// The configuration is not valid (nothing changed).
    Invalid(ConfigError),
    /// A service of that name exists already.
    Exists(String),
    /// No service of that name.
    NotFound(String),
    /// The store could not be read or written (nothing changed).
    Store(StoreError),
}

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServiceError::Invalid(e) => write!(f, "{e}"),
            ServiceError::Exists(n) => write!(f, "service {n}: a service of that name exists"),
            ServiceError::NotFound(n) => write!(f, "service {n}: no such service"),
            ServiceError::Store(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ServiceError {}

impl From<ConfigError> for ServiceError {
    fn from(e: ConfigError) -> Self {
        ServiceError::Invalid(e)
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        ServiceError::Store(e)
    }
}

/// A thread's hold on a table: an allocation of its own, so that taking it for a request writes to no memory
/// shared with other threads.
pub(crate) type TableRef = Arc<Arc<ServiceTable>>;

/// The table a thread took last, and the registry and generation it is of.
struct Cached {
    registry: u64,
    generation: u64,
    table: TableRef,
}

thread_local! {
    static CACHED: RefCell<Option<Cached>> = const { RefCell::new(None) };
}

/// Tells registries apart (several proxies in one process).
static NEXT_REGISTRY: AtomicU64 = AtomicU64::new(1);

/// The live services and what changes them.
pub(crate) struct Registry {
    live: RwLock<Arc<ServiceTable>>,
    /// Bumped after each swap: a thread whose cached table is of an older generation takes the new one.
    generation: AtomicU64,
    id: u64,
    /// Held for a whole change: changes are applied one at a time.
    sources: tokio::sync::Mutex<Sources>,
    store: Arc<dyn TokenStore>,
    /// Whether the paywall has the `Payment` scheme (master keys).
    payment_available: bool,
    /// Whether the paywall can pay session refunds.
    refunds_available: bool,
    /// The size of each service's limit tables.
    capacity: usize,
    /// Whether the services' freebies and rate limits are shared with other instances (PostgreSQL).
    shared_limits: bool,
}

impl Registry {
    /// The file's services, ready (the store's are read by [`Registry::load`]).
    pub(crate) fn new(
        config: &Config,
        store: Arc<dyn TokenStore>,
        payment_available: bool,
        refunds_available: bool,
        capacity: usize,
        shared_limits: bool,
    ) -> Result<Self, ConfigError> {
        let sources = Sources { file: config.services.clone(), stored: Vec::new(), version: 0 };
        let mut me = Self {
            live: RwLock::new(Arc::new(ServiceTable { services: Vec::new(), any_case_insensitive: false })),
            generation: AtomicU64::new(0),
            id: NEXT_REGISTRY.fetch_add(1, Ordering::Relaxed),
            sources: tokio::sync::Mutex::new(sources.clone()),
            store,
            payment_available,
            refunds_available,
            capacity,
            shared_limits,
        };
        let table = me.build(&sources)?;
        me.live = RwLock::new(Arc::new(table));
        Ok(me)
    }

    /// The table in force now (one read lock, an `Arc` clone).
    pub(crate) fn current(&self) -> Arc<ServiceTable> {
        self.live.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The table in force now, for a request: this thread's cached hold on it while the generation has not
    /// moved (an atomic load and a clone of a thread-private `Arc`), else the new table, cached.
    pub(crate) fn for_request(&self) -> TableRef {
        let generation = self.generation.load(Ordering::Acquire);
        CACHED.with_borrow_mut(|cached| match cached {
            Some(c) if c.registry == self.id && c.generation == generation => c.table.clone(),
            _ => {
                let table: TableRef = Arc::new(self.current());
                *cached = Some(Cached { registry: self.id, generation, table: table.clone() });
                table
            }
        })
    }

    /// The live services' configurations, in matching order.
    pub(crate) fn configs(&self) -> Vec<ServiceConfig> {
        self.current().services.iter().map(|s| s.config.clone()).collect()
    }

    /// Builds the table `sources` give, checked and ready to serve, reusing the services that did not change.
    fn build(&self, sources: &Sources) -> Result<ServiceTable, ConfigError> {
        let configs = sources.effective();
        check_services(&configs)?;
        let old = self.current();
        let mut services = Vec::with_capacity(configs.len());
        for c in &configs {
            if !self.payment_available && c.schemes()?.payment {
                return Err(ConfigError(format!(
                    "service {}: the Payment scheme's challenge ids are keyed by the master key: a service with \
                     schemes = [\"payment\"] needs stateless tokens ([tokens] stored = false, the default)",
                    c.name
                )));
            }
            if c.session.is_some() && !self.payment_available {
                return Err(ConfigError(format!(
                    "service {}: sessions' challenge ids are keyed by the master key: a service with \
                     [service.session] needs stateless tokens ([tokens] stored = false, the default)",
                    c.name
                )));
            }
            if c.session.is_some() && !self.refunds_available {
                return Err(ConfigError(format!(
                    "service {}: sessions refund over Lightning, and this proxy's node cannot pay",
                    c.name
                )));
            }
            let same = |s: &&Arc<Service>| s.config.name == c.name && same_config(&s.config, c);
            match old.services.iter().find(same) {
                Some(s) => services.push(s.clone()),
                None => services.push(Arc::new(Service::build(c, self.capacity, self.shared_limits)?)),
            }
        }
        Ok(ServiceTable { any_case_insensitive: configs.iter().any(|s| s.case_insensitive_paths), services })
    }

    fn swap(&self, table: ServiceTable) {
        *self.live.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(table);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Reads the store's services and applies them if they changed since the last read. `Ok(true)`: a new
    /// table is in force.
    async fn sync(&self, sources: &mut Sources) -> Result<bool, ServiceError> {
        if self.store.services_version().await? == sources.version {
            return Ok(false);
        }
        let rows = self.store.services().await?;
        let mut next = sources.clone();
        next.version = rows.iter().map(|r| r.version).max().unwrap_or(0);
        next.stored = rows
            .into_iter()
            .map(|r| {
                let config = match r.config {
                    None => None,
                    Some(json) => Some(
                        ServiceConfig::from_json(json.as_bytes())
                            .map_err(|e| ConfigError(format!("service {} in the store: {e}", r.name)))?,
                    ),
                };
                Ok(Stored { name: r.name, config })
            })
            .collect::<Result<_, ConfigError>>()?;
        let table = self.build(&next)?;
        self.swap(table);
        *sources = next;
        Ok(true)
    }

    /// Reads the store's services at start (a store that cannot be read, or services in it that are not
    /// valid here, fail the start).
    pub(crate) async fn load(&self) -> Result<(), ServiceError> {
        let mut sources = self.sources.lock().await;
        self.sync(&mut sources).await.map(drop)
    }

    /// Replaces the file's services (SIGHUP): checked with the store's as one set.
    pub(crate) async fn reload_file(&self, file: Vec<ServiceConfig>) -> Result<usize, ServiceError> {
        let mut sources = self.sources.lock().await;
        let mut next = sources.clone();
        next.file = file;
        let table = self.build(&next)?;
        let n = table.services.len();
        self.swap(table);
        *sources = next;
        Ok(n)
    }

    /// Creates (`exists = false`), replaces (`exists = true`, `config` set) or deletes (`config` `None`) the
    /// service `name` through the store, then applies it here.
    pub(crate) async fn change(
        &self,
        name: &str,
        config: Option<ServiceConfig>,
        exists: bool,
    ) -> Result<(), ServiceError> {
        let mut sources = self.sources.lock().await;
        // Up to date with the other instances first, so that "exists" is asked of the latest set.
        self.sync(&mut sources).await?;
        let found = self.current().services.iter().any(|s| s.config.name == name);
        match (exists, found) {
            (false, true) => return Err(ServiceError::Exists(name.to_owned())),
            (true, false) => return Err(ServiceError::NotFound(name.to_owned())),
            _ => {}
        }
        let json = config
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| ConfigError(format!("service {name}: {e}")))?;
        let mut next = sources.clone();
        let entry = Stored { name: name.to_owned(), config };
        match next.stored.iter_mut().find(|s| s.name == name) {
            Some(s) => *s = entry,
            None => next.stored.push(entry),
        }
        let table = self.build(&next)?;
        let version = self.store.put_service(name, json.as_deref()).await?;
        self.swap(table);
        // Another instance's write in between: keep the old version, so that the next sync reads it.
        next.version = if version == sources.version + 1 { version } else { sources.version };
        *sources = next;
        Ok(())
    }

    /// Follows the store's services every `interval` until the registry is gone.
    pub(crate) fn spawn_poller(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let me: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                tokio::time::sleep(interval).await;
                let Some(r) = me.upgrade() else { return };
                let mut sources = r.sources.lock().await;
                match r.sync(&mut sources).await {
                    Ok(changed) => {
                        if failing {
                            failing = false;
                            tracing::info!("the store's services can be read and applied again");
                        }
                        if changed {
                            let names = r.current().services.len();
                            tracing::info!(
                                services = names,
                                version = sources.version,
                                "services changed in the store: applied"
                            );
                        }
                    }
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "the store's services cannot be applied; serving the last good set");
                    }
                    Err(_) => {}
                }
            }
        })
    }
}

/// Whether two configurations are the same (as their JSON forms).
fn same_config(a: &ServiceConfig, b: &ServiceConfig) -> bool {
    matches!((serde_json::to_value(a), serde_json::to_value(b)), (Ok(x), Ok(y)) if x == y)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, price_sat: u64) -> ServiceConfig {
        let json = format!(
            r#"{{"name": "{name}", "path": "/{name}*", "upstream": "http://127.0.0.1:1", "price_sat": {price_sat}}}"#
        );
        ServiceConfig::from_json(json.as_bytes()).expect("a service")
    }

    fn stored(name: &str, config: Option<ServiceConfig>) -> Stored {
        Stored { name: name.into(), config }
    }

    #[test]
    fn the_store_replaces_the_files_services_in_place_deletes_them_and_extends_them_in_creation_order() {
        let sources = Sources {
            file: vec![service("a", 1), service("b", 1), service("c", 1)],
            stored: vec![
                stored("e", Some(service("e", 5))),
                stored("b", Some(service("b", 2))),
                stored("c", None),
                stored("d", Some(service("d", 4))),
                stored("gone", None),
            ],
            version: 5,
        };
        let live = sources.effective();
        let names: Vec<&str> = live.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "e", "d"]);
        assert_eq!(live[1].price_sat, Some(2), "the store's b, in the file's place");
    }

    #[test]
    fn a_service_round_trips_through_its_json_form() {
        let mut s = service("a", 1);
        s.headers
            .insert("x-key".into(), crate::config::HeaderSource { value: Some("v".into()), env: None, file: None });
        let json = serde_json::to_vec(&s).expect("json");
        assert!(same_config(&s, &ServiceConfig::from_json(&json).expect("read back")));
        assert!(!same_config(&s, &service("a", 2)));
    }
}
