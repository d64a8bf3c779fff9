//! What a request costs: the service it belongs to, the price, and the capability it needs.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method, Uri};
use l402_proto::Msat;

/// The authentication schemes a service's 402 offers and its requests accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schemes {
    /// L402 tokens (`LSAT` and `L402` lines; reusable until they expire).
    pub l402: bool,
    /// The `Payment` scheme's Lightning charge (MPP; one payment per request).
    pub payment: bool,
}

impl Default for Schemes {
    /// L402 only.
    fn default() -> Self {
        Self { l402: true, payment: false }
    }
}

impl Schemes {
    /// Both schemes.
    pub const BOTH: Self = Self { l402: true, payment: true };

    /// Reads scheme names (`l402`, `payment`; case-insensitive). `None` for an unknown name or an empty list.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Option<Self> {
        let mut s = Self { l402: false, payment: false };
        for n in names {
            match n.as_ref().to_ascii_lowercase().as_str() {
                "l402" => s.l402 = true,
                "payment" => s.payment = true,
                _ => return None,
            }
        }
        (s.l402 || s.payment).then_some(s)
    }
}

/// A priced service: what its tokens grant and cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    /// The service name (in the `services` caveat).
    pub name: String,
    /// Its tier (Aperture uses 0).
    pub tier: u32,
    /// The price of a token.
    pub price: Msat,
    /// How long a token is valid after minting; `None`: until revoked.
    pub lifetime: Option<Duration>,
    /// The capabilities its tokens grant (minted as `<service>_capabilities`).
    pub capabilities: Vec<String>,
    /// The schemes it is paid in (default: L402 only).
    pub schemes: Schemes,
    /// Metered: a payment buys a balance that requests draw down (kept by whoever meters, e.g. the proxy).
    /// A `Payment` charge of a metered service is then accepted again after its first request, its balance
    /// deciding what it still buys.
    pub metered: bool,
    /// Sessions (the `Payment` scheme's `session` intent, [`crate::session`]): offered beside the other schemes.
    pub session: Option<crate::session::SessionSpec>,
}

impl ServiceSpec {
    /// A service at tier 0 with no lifetime and no capabilities.
    pub fn new(name: impl Into<String>, price: Msat) -> Self {
        Self {
            name: name.into(),
            tier: 0,
            price,
            lifetime: None,
            capabilities: Vec::new(),
            schemes: Schemes::default(),
            metered: false,
            session: None,
        }
    }

    /// Offering sessions.
    pub fn session(mut self, session: crate::session::SessionSpec) -> Self {
        self.session = Some(session);
        self
    }

    /// Metered (see the `metered` field).
    pub fn metered(mut self, metered: bool) -> Self {
        self.metered = metered;
        self
    }

    /// Paid in these schemes.
    pub fn schemes(mut self, schemes: Schemes) -> Self {
        self.schemes = schemes;
        self
    }

    /// With a token lifetime.
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = Some(lifetime);
        self
    }

    /// With capabilities granted.
    pub fn capabilities<S: Into<String>>(mut self, caps: impl IntoIterator<Item = S>) -> Self {
        self.capabilities = caps.into_iter().map(Into::into).collect();
        self
    }
}

/// The charge for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Charge {
    /// The service.
    pub service: Arc<ServiceSpec>,
    /// The price of a token minted for this request (usually the service's price).
    pub price: Msat,
    /// The capability the route requires, if any.
    pub capability: Option<String>,
}

impl Charge {
    /// The service's own price, no capability required.
    pub fn of(service: &Arc<ServiceSpec>) -> Self {
        Self { service: service.clone(), price: service.price, capability: None }
    }

    /// Requiring a capability.
    pub fn requiring(mut self, capability: impl Into<String>) -> Self {
        self.capability = Some(capability.into());
        self
    }
}

/// What a pricing decision sees of a request.
#[derive(Clone, Copy, Debug)]
pub struct RequestInfo<'a> {
    /// The method.
    pub method: &'a Method,
    /// The URI.
    pub uri: &'a Uri,
    /// The headers.
    pub headers: &'a HeaderMap,
}

/// Prices requests: `None` lets a request through free.
pub trait Pricing: Send + Sync + 'static {
    /// The charge for this request.
    fn charge(&self, request: &RequestInfo<'_>) -> Option<Charge>;
}

impl<F> Pricing for F
where
    F: Fn(&RequestInfo<'_>) -> Option<Charge> + Send + Sync + 'static,
{
    fn charge(&self, request: &RequestInfo<'_>) -> Option<Charge> {
        self(request)
    }
}

/// Every request is charged for one service at its price.
#[derive(Clone, Debug)]
pub struct StaticPrice(pub Arc<ServiceSpec>);

impl Pricing for StaticPrice {
    fn charge(&self, _: &RequestInfo<'_>) -> Option<Charge> {
        Some(Charge::of(&self.0))
    }
}
