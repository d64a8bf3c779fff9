//! The request flow: send with the right token, meet a 402, decide whether the token was refused, choose the
//! offer to answer ([`crate::offer`]), get a token (reusing one another request bought, or paying) or pay a
//! charge (`charge` module), and send again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use l402_lightning::{InvoiceIssuer, Payer};
use l402_proto::lightning_invoice::Currency;
use l402_proto::{Challenge, Msat, PaymentHash, Preimage, TokenId};
use reqwest::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Request, Response, StatusCode, Url};
use serde::Serialize;
use tokio::sync::OnceCell;

use crate::budget::{LimitKind, Limits, Usage};
use crate::config::{Checkpoint, ClientConfig, PreferScheme, Progress};
use crate::error::Error;
use crate::journal::{self, LedgerEntry};
use crate::lease::Leases;
use crate::net::{self, Destinations, PublicResolver};
use crate::offer::{Offer, Offers};
use crate::redirect;
use crate::refusal::{self, Verdict};
use crate::retry::{idempotent, retry_after, retryable_error, retryable_status};
use crate::store::{Store, now_unix};
use crate::tokens::{self, StoredToken, TokenScope};

/// A payment made (or recovered) for a request. `Debug` redacts the preimage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    /// The payment hash.
    pub payment_hash: PaymentHash,
    /// The proof of payment (a secret).
    pub preimage: Preimage,
    /// The amount paid.
    pub amount: Msat,
    /// The routing fee paid.
    pub fee: Msat,
    /// The token it bought; `None` for a `Payment` charge (a charge buys the one request it was paid for).
    pub token_id: Option<TokenId>,
    /// The `Payment` charge it paid, if it was one (an L402 token otherwise).
    pub charge: Option<ChargeInfo>,
    /// The `Payment` session it paid into (its deposit or a top-up), if it was one.
    pub session_id: Option<String>,
}

/// The `Payment` charge a [`Payment`] paid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChargeInfo {
    /// The challenge id.
    pub challenge_id: String,
    /// The server's `Payment-Receipt`, if it sent one that decodes.
    pub receipt: Option<ChargeReceipt>,
}

/// A `Payment-Receipt`, as the server sent it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChargeReceipt {
    /// `success`.
    pub status: String,
    /// The payment method (`lightning`).
    pub method: String,
    /// When (RFC 3339, as sent).
    pub timestamp: String,
    /// The reference (Aperture: the payment hash, hex).
    pub reference: String,
    /// The challenge id it answers.
    pub challenge_id: String,
}

impl Payment {
    /// The scheme of the offer paid: `L402` for a token, `Payment` for a charge or a session's deposit or
    /// top-up.
    pub fn scheme(&self) -> &'static str {
        if self.charge.is_some() || self.session_id.is_some() { "Payment" } else { "L402" }
    }

    /// The `Payment` intent paid: `charge` or `session` (`None` for an L402 token).
    pub fn intent(&self) -> Option<&'static str> {
        match (&self.charge, &self.session_id) {
            (Some(_), _) => Some("charge"),
            (None, Some(_)) => Some("session"),
            (None, None) => None,
        }
    }
}

/// The `Payment` session a request was sent on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SessionUse {
    /// The session id (the deposit's payment hash, hex).
    pub session_id: String,
    /// The balance left after this request, as the server said it (`X-L402-Balance-Msat`), msat.
    pub balance_msat: Option<u64>,
}

/// A response, with what was paid to get it.
#[derive(Debug)]
pub struct L402Response {
    /// The server's response.
    pub response: Response,
    /// The token sent with the request that produced `response`, if any.
    pub token_id: Option<TokenId>,
    /// The payment made for this request, if one was (or one found in the journal was completed); after
    /// redirects, the last one made on the way.
    pub payment: Option<Payment>,
    /// The `Payment` session the request was sent on, if it was.
    pub session: Option<SessionUse>,
}

/// What a request would cost, without paying (`l402 fetch --dry-run`).
#[derive(Debug)]
pub enum Quote {
    /// A stored token would be sent; nothing was requested.
    Token(StoredToken),
    /// A stored `Payment` session would be used (the preferred scheme is `session`); nothing was requested.
    Session(crate::sessions::StoredSession),
    /// The server answered without asking for payment.
    NotRequired {
        /// The status it answered.
        status: u16,
    },
    /// The server asks for payment.
    Payment(PaymentQuote),
}

/// The facts of the offer the client chose, and whether it would pay it.
#[derive(Debug, Serialize)]
pub struct PaymentQuote {
    /// The origin.
    pub origin: String,
    /// The scheme of the offer chosen: `L402`/`LSAT` (a reusable token), `Payment` (a charge: one request) or
    /// `Session` (a `Payment` session: the amount is its deposit).
    pub scheme: String,
    /// The offers the server made usably: `L402`, `Payment` (a charge), `Session` (a `Payment` session).
    pub offers: Vec<String>,
    /// The service the token would grant (a charge: its realm; a session: its description, else its realm).
    pub service: String,
    /// A charge's or a session offer's challenge id.
    pub challenge_id: Option<String>,
    /// The invoice's payment hash (hex).
    pub payment_hash: String,
    /// The price, msat (`None`: the invoice has no amount).
    pub amount_msat: Option<u64>,
    /// The fee limit of the first attempt (the estimate: at most this), msat.
    pub fee_limit_msat: u64,
    /// The most a retry could raise the fee limit to, msat.
    pub max_fee_msat: u64,
    /// The invoice's expiry, or a charge challenge's if earlier (Unix seconds).
    pub expires_at: u64,
    /// The payee node id.
    pub destination: String,
    /// The invoice description.
    pub description: String,
    /// The invoice's network.
    pub network: String,
    /// Why the client would refuse to pay, if it would.
    #[serde(skip)]
    pub refusal: Option<Error>,
}

/// The paying HTTP client. Cheap to share (`Arc`); every method takes `&self`.
pub struct Client {
    http: reqwest::Client,
    payer: Arc<dyn Payer>,
    issuer: Option<Arc<dyn InvoiceIssuer>>,
    store: Store,
    leases: Leases,
    config: ClientConfig,
    network: OnceCell<Currency>,
    session_used: AtomicU64,
    /// When this client last wrote each token's `last_used_at` (unix seconds).
    touched: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

/// `last_used_at` is written at most this often per token and client: it is for people reading `token list`,
/// and a write per request (an fsync, the store being `synchronous=FULL`) was most of a cached request's cost.
pub(crate) const TOUCH_INTERVAL_SECS: u64 = 60;

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("config", &self.config).finish_non_exhaustive()
    }
}

/// `scheme://host:port` of a URL (the port always written, so `:443` and no port are one origin).
pub fn origin_of(url: &Url) -> Result<String, Error> {
    let host = url.host_str().ok_or_else(|| Error::Request(format!("URL has no host: {url}")))?;
    let port = url.port_or_known_default().ok_or_else(|| Error::Request(format!("URL has no port: {url}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::Request(format!("not an http(s) URL: {url}")));
    }
    let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_owned() };
    Ok(format!("{}://{host}:{port}", url.scheme()))
}

fn with_token(mut req: Request, token: &StoredToken) -> Result<Request, Error> {
    let mut value = HeaderValue::from_str(&token.credential()?.header_value())
        .map_err(|_| Error::Store("stored credential is not a valid header value".into()))?;
    value.set_sensitive(true);
    req.headers_mut().insert(AUTHORIZATION, value);
    Ok(req)
}

fn challenge_of(resp: &Response) -> Result<Challenge, Error> {
    Challenge::parse(resp.headers().get_all(WWW_AUTHENTICATE).iter().map(HeaderValue::as_bytes))
        .map_err(|e| Error::Challenge(e.to_string()))
}

/// What one call may pay, and for which offer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CallLimits {
    pub(crate) max_price: Msat,
    pub(crate) prefer: PreferScheme,
}

impl Client {
    /// A client paying through `payer`, with its own reqwest client (rustls): it follows no redirect by itself
    /// (the client does: see the crate doc), reads with [`ClientConfig::read_timeout`], and under
    /// [`Destinations::PublicOnly`] resolves names through [`PublicResolver`] and ignores proxy settings.
    pub fn new(payer: Arc<dyn Payer>, config: ClientConfig) -> Result<Self, Error> {
        config.validate()?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(config.read_timeout)
            .redirect(reqwest::redirect::Policy::none());
        if let Destinations::PublicOnly { .. } = &config.destinations {
            builder = builder.no_proxy().dns_resolver(Arc::new(PublicResolver::new(config.destinations.clone())));
        }
        let http = builder.build().map_err(|e| Error::Request(format!("building the HTTP client: {e}")))?;
        Self::build(http, payer, config)
    }

    /// A client using the given reqwest client for HTTP. Build it with `redirect(Policy::none())`: a response
    /// that was redirected by the HTTP client is refused ([`Error::Redirect`]), since a token must only go to
    /// the origin it was bought from. [`Destinations::PublicOnly`] needs [`Client::new`] (the resolver is part
    /// of the HTTP client) and is refused here.
    pub fn with_http(http: reqwest::Client, payer: Arc<dyn Payer>, config: ClientConfig) -> Result<Self, Error> {
        if config.destinations != Destinations::Any {
            return Err(Error::Request(
                "Destinations::PublicOnly is enforced by the HTTP client's resolver: use Client::new".into(),
            ));
        }
        Self::build(http, payer, config)
    }

    fn build(http: reqwest::Client, payer: Arc<dyn Payer>, config: ClientConfig) -> Result<Self, Error> {
        config.validate()?;
        let store = Store::open(&config.data_dir)?;
        let leases = Leases::new(&config.data_dir);
        Ok(Self {
            http,
            payer,
            issuer: None,
            store,
            leases,
            config,
            network: OnceCell::new(),
            session_used: AtomicU64::new(0),
            touched: Default::default(),
        })
    }

    /// With `issuer`, the wallet's own node as an invoice issuer: what opening a `Payment` session needs (the
    /// amountless refund invoice) and closing one checks the refund against. Without it, no session is opened.
    pub fn with_invoice_issuer(mut self, issuer: Arc<dyn InvoiceIssuer>) -> Self {
        self.issuer = Some(issuer);
        self
    }

    pub(crate) fn issuer(&self) -> Option<&dyn InvoiceIssuer> {
        self.issuer.as_deref()
    }

    /// The store (tokens, ledger).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The underlying reqwest client, to build requests with.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A request builder for `url` (send it with [`Client::execute`] after `.build()`).
    pub fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        self.http.request(method, url)
    }

    fn report(&self, p: Progress) {
        if let Some(f) = &self.config.progress {
            f(&p);
        }
    }

    pub(crate) fn checkpoint(&self, c: Checkpoint) {
        if let Some(f) = &self.config.checkpoint {
            f(c);
        }
    }

    pub(crate) fn payer(&self) -> &dyn Payer {
        self.payer.as_ref()
    }

    /// The wallet's network (configured, or asked once).
    pub(crate) async fn network(&self) -> Result<Currency, Error> {
        if let Some(n) = &self.config.network {
            return Ok(n.clone());
        }
        let n = self.network.get_or_try_init(|| async { self.payer.info().await.map(|i| i.network) }).await?;
        Ok(n.clone())
    }

    /// Sends a request once, and again on the errors and statuses the retry policy allows (if replayable; a
    /// non-idempotent method only after a connection error). The destination is checked first.
    pub(crate) async fn send(&self, mut req: Request) -> Result<Response, Error> {
        self.config.destinations.check_literal(req.url()).map_err(Error::AddressRefused)?;
        let policy = self.config.retry;
        let idempotent = idempotent(req.method());
        let mut attempt = 0;
        loop {
            let again = (attempt < policy.max_retries).then(|| req.try_clone()).flatten();
            let sent_to = req.url().clone();
            let result = self.http.execute(req).await;
            if let Ok(r) = &result
                && r.url() != &sent_to
            {
                return Err(Error::Redirect(
                    "the HTTP client followed a redirect by itself (build it with redirect::Policy::none())".into(),
                ));
            }
            let delay = match &result {
                Err(e) if net::refused_in(e).is_some() => None,
                Err(e) if retryable_error(e) => Some(policy.backoff(attempt)),
                Ok(_) if !idempotent => None,
                Ok(r) if r.status() == StatusCode::TOO_MANY_REQUESTS => match retry_after(r.headers()) {
                    Some(d) if d > policy.max_delay => None,
                    Some(d) => Some(d),
                    None => Some(policy.backoff(attempt)),
                },
                Ok(r) if retryable_status(r.status()) => Some(policy.backoff(attempt)),
                _ => None,
            };
            match (delay, again) {
                (Some(d), Some(next)) => {
                    tracing::debug!(attempt, delay_ms = d.as_millis() as u64, "retrying request");
                    tokio::time::sleep(d).await;
                    req = next;
                    attempt += 1;
                }
                _ => return result.map_err(Error::from_transport),
            }
        }
    }

    /// Sends `request`, paying for a token if the server asks (within the caps and budgets), and returns the
    /// response. See the crate doc for every rule on the way.
    pub async fn execute(&self, request: Request) -> Result<L402Response, Error> {
        self.execute_capped(request, self.config.max_price).await
    }

    /// [`Client::execute`] with a lower price cap for this request (the configured cap still applies: the lower
    /// of the two is used). An agent's per-call maximum.
    ///
    /// Redirects are followed here, one request per hop (rules in the crate doc); each hop uses the token of its
    /// own origin and pays, if asked, for its own origin. [`L402Response::payment`] is the last payment made
    /// on the way.
    pub async fn execute_capped(&self, request: Request, max_price: Msat) -> Result<L402Response, Error> {
        self.execute_with(request, max_price, self.config.prefer_scheme).await
    }

    /// [`Client::execute_capped`], preferring `prefer`'s offer when a `402` offers both schemes (one offer is
    /// paid, never two; see [`crate::PreferScheme`]).
    pub async fn execute_with(
        &self,
        request: Request,
        max_price: Msat,
        prefer: PreferScheme,
    ) -> Result<L402Response, Error> {
        let call = CallLimits { max_price: max_price.min(self.config.max_price), prefer };
        let mut request = request;
        let mut paid_earlier = None;
        let mut hops = 0;
        loop {
            let sent = request.try_clone();
            let from = request.url().clone();
            let mut answer = self.exchange(request, call).await?;
            answer.payment = answer.payment.or(paid_earlier);
            if self.config.max_redirects == 0 {
                return Ok(answer);
            }
            let Some(to) = redirect::target(&answer.response)? else { return Ok(answer) };
            if hops == self.config.max_redirects {
                return Err(Error::Redirect(format!("more than {} redirects", self.config.max_redirects)));
            }
            hops += 1;
            tracing::debug!(status = answer.response.status().as_u16(), hop = hops, "following a redirect");
            request = redirect::follow(sent, &from, answer.response.status(), to)?;
            paid_earlier = answer.payment.take();
        }
    }

    /// One request to one origin: sent with the token stored for it (if any); a 402 answered (if the rules
    /// allow) by the offer chosen, and the request sent again with the new token or the paid charge.
    async fn exchange(&self, request: Request, call: CallLimits) -> Result<L402Response, Error> {
        let url = request.url().clone();
        let origin = origin_of(&url)?;
        let path = url.path().to_owned();
        if call.prefer == PreferScheme::Session
            && let Some(session) = self.session_for(&origin, &path).await?
        {
            return self.session_request(request, session, call, None, false).await;
        }
        let replay = request.try_clone();
        let now = now_unix();
        let (o, p) = (origin.clone(), path.clone());
        let token = self.store.call(move |c| tokens::select(c, &o, &p, now)).await?;
        let first = match &token {
            Some(t) => with_token(request, t)?,
            None => request,
        };
        let resp = self.send(first).await?;
        let status = resp.status();
        if status != StatusCode::PAYMENT_REQUIRED && status != StatusCode::UNAUTHORIZED {
            return self.done(resp, token.as_ref(), None).await;
        }
        let offers = if status == StatusCode::PAYMENT_REQUIRED { Some(Offers::read(resp.headers())) } else { None };
        match &token {
            Some(t) => match refusal::judge(t, resp.headers(), offers.as_ref().and_then(|o| o.l402.as_ref().ok())) {
                Verdict::NotThePaywall => return self.done(resp, Some(t), None).await,
                Verdict::OtherService => {
                    tracing::debug!(token_id = %t.token_id, "token is for another service of this origin");
                }
                Verdict::Refused if t.valid_until.is_some_and(|v| v <= now_unix()) => {
                    let id = t.token_id.clone();
                    tracing::info!(token_id = %id, "token expired; dropped");
                    self.store.call(move |c| tokens::remove(c, &id).map(drop)).await?;
                }
                Verdict::Refused => return Err(self.refused(t, status.as_u16()).await),
                // A bundle that served requests is used up: spent, and the next one is bought below (within
                // the budgets). One that never served a request is not "used up": refused.
                Verdict::Exhausted(_) if t.last_used_at.is_none() => {
                    return Err(self.refused(t, status.as_u16()).await);
                }
                Verdict::Exhausted(left) => {
                    let (id, hash, now) = (t.token_id.clone(), t.payment_hash.clone(), now_unix());
                    tracing::info!(token_id = %id, balance_msat = left, "metered bundle used up; buying the next");
                    self.store
                        .call(move |c| {
                            journal::note_exhausted(c, &hash, left, now)?;
                            tokens::remove(c, &id).map(drop)
                        })
                        .await?;
                }
            },
            None if status == StatusCode::UNAUTHORIZED => return self.done(resp, None, None).await,
            None => {}
        }
        let Some(offers) = offers else {
            return Err(Error::Challenge(format!("{status} without an L402 or Payment challenge")));
        };
        // A charge paid earlier for this path and never accepted costs nothing more: it goes first.
        let prefer = match offers.usable_charge() {
            Some(c)
                if call.prefer == PreferScheme::L402
                    && self.has_unspent_charge(&origin, &c.challenge.realm, &path).await? =>
            {
                PreferScheme::Payment
            }
            _ => call.prefer,
        };
        let challenge = match offers.choose(prefer)? {
            Offer::L402(challenge) => challenge,
            Offer::Charge(charge) => {
                let Some(replay) = replay else { return Err(Error::NotReplayable) };
                self.transport_allows_paying(&url, &origin)?;
                return self.charge_exchange(replay, &origin, &path, *charge, call.max_price).await;
            }
            Offer::Session(offer) => {
                let Some(replay) = replay else { return Err(Error::NotReplayable) };
                self.transport_allows_paying(&url, &origin)?;
                return self.session_open(replay, &origin, &path, *offer, call).await;
            }
        };
        let service = TokenScope::of(&challenge.macaroon).service().to_owned();
        let (o, p, s) = (origin.clone(), path.clone(), service.clone());
        self.store.call(move |c| tokens::learn_route(c, &o, &p, &s, now_unix())).await?;
        let Some(replay) = replay else { return Err(Error::NotReplayable) };
        self.transport_allows_paying(&url, &origin)?;
        let (token, payment) = self.obtain(&origin, &path, &challenge, call.max_price).await?;
        let resp = self.send(with_token(replay, &token)?).await?;
        if matches!(resp.status(), StatusCode::PAYMENT_REQUIRED | StatusCode::UNAUTHORIZED) {
            let again = challenge_of(&resp).ok();
            if matches!(
                refusal::judge(&token, resp.headers(), again.as_ref()),
                Verdict::Refused | Verdict::Exhausted(_)
            ) {
                return Err(self.refused(&token, resp.status().as_u16()).await);
            }
        }
        self.done(resp, Some(&token), payment).await
    }

    /// Refuses to pay over plain http unless [`ClientConfig::allow_http`].
    pub(crate) fn transport_allows_paying(&self, url: &Url, origin: &str) -> Result<(), Error> {
        if url.scheme() == "http" && !self.config.allow_http {
            return Err(Error::PlainHttp { origin: origin.to_owned() });
        }
        Ok(())
    }

    pub(crate) async fn done(
        &self,
        response: Response,
        token: Option<&StoredToken>,
        payment: Option<Payment>,
    ) -> Result<L402Response, Error> {
        let token_id = match token {
            Some(t) => {
                let now = now_unix();
                // A metered bundle: the balance the server says is kept in the ledger with its payment.
                let balance = if response.status().is_success() { refusal::balance(response.headers()) } else { None };
                if let Some(b) = balance {
                    let hash = t.payment_hash.clone();
                    self.store.call(move |c| journal::note_balance(c, &hash, b, now)).await?;
                }
                if self.due_for_touch(&t.token_id, now) {
                    let id = t.token_id.clone();
                    self.store.call(move |c| tokens::touch(c, &id, now)).await?;
                }
                Some(t.id()?)
            }
            None => None,
        };
        Ok(L402Response { response, token_id, payment, session: None })
    }

    /// Whether to write `token_id`'s last use now (see [`TOUCH_INTERVAL_SECS`]); notes it if so.
    fn due_for_touch(&self, token_id: &str, now: u64) -> bool {
        let mut touched = self.touched.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if touched.get(token_id).is_some_and(|last| now < last.saturating_add(TOUCH_INTERVAL_SECS)) {
            return false;
        }
        if touched.len() >= 10_000 {
            touched.clear();
        }
        touched.insert(token_id.to_owned(), now);
        true
    }

    /// Marks a token refused (kept with its preimage) and builds the error that reports it.
    async fn refused(&self, token: &StoredToken, status: u16) -> Error {
        let id = token.token_id.clone();
        tracing::warn!(token_id = %id, status, "paid token refused by the server; kept as proof of payment");
        if let Err(e) = self.store.call(move |c| tokens::mark_refused(c, &id, status, now_unix())).await {
            return e;
        }
        match token.id() {
            Ok(token_id) => Error::PaidButRefused { token_id, status, paid: token.paid() },
            Err(e) => e,
        }
    }

    /// Asks for what `request` would cost without paying anything (following redirects as
    /// [`Client::execute`] does).
    pub async fn quote(&self, request: Request) -> Result<Quote, Error> {
        let mut request = request;
        let mut hops = 0;
        let (resp, url, origin) = loop {
            let url = request.url().clone();
            let origin = origin_of(&url)?;
            if self.config.prefer_scheme == PreferScheme::Session
                && let Some(s) = self.session_for(&origin, url.path()).await?
            {
                return Ok(Quote::Session(s));
            }
            let (o, p) = (origin.clone(), url.path().to_owned());
            if let Some(t) = self.store.call(move |c| tokens::select(c, &o, &p, now_unix())).await? {
                return Ok(Quote::Token(t));
            }
            let sent = request.try_clone();
            let resp = self.send(request).await?;
            let to = if self.config.max_redirects == 0 { None } else { redirect::target(&resp)? };
            let Some(to) = to else { break (resp, url, origin) };
            if hops == self.config.max_redirects {
                return Err(Error::Redirect(format!("more than {} redirects", self.config.max_redirects)));
            }
            hops += 1;
            request = redirect::follow(sent, &url, resp.status(), to)?;
        };
        if resp.status() != StatusCode::PAYMENT_REQUIRED {
            return Ok(Quote::NotRequired { status: resp.status().as_u16() });
        }
        let offers = Offers::read(resp.headers());
        let offered: Vec<String> = offers.offered().into_iter().map(str::to_owned).collect();
        let max_price = self.config.max_price;
        let quote = match offers.choose(self.config.prefer_scheme)? {
            Offer::L402(challenge) => {
                let scope = TokenScope::of(&challenge.macaroon);
                let (_, info) = l402_proto::invoice::decode_invoice(&challenge.invoice)?;
                let mut quote = self.quote_of(&origin, &info, challenge.scheme.as_str(), offered);
                quote.service = scope.service().to_owned();
                quote.refusal = match self.transport_allows_paying(&url, &origin) {
                    Err(e) => Some(e),
                    Ok(()) => match self.check_challenge(&challenge, max_price).await {
                        Ok((amount, _, _)) => self.budget_precheck(&origin, amount).await.err(),
                        Err(e) => Some(e),
                    },
                };
                quote
            }
            Offer::Charge(charge) => {
                let (_, info) = l402_proto::invoice::decode_invoice(&charge.request.method_details.invoice)?;
                let mut quote = self.quote_of(&origin, &info, crate::journal::CHARGE_SCHEME, offered);
                quote.service = charge.challenge.realm.clone();
                quote.challenge_id = Some(charge.challenge.id.clone());
                quote.payment_hash = PaymentHash(charge.request.method_details.payment_hash).to_hex();
                if let Ok(Some(t)) = crate::offer::challenge_expiry(&charge.challenge) {
                    quote.expires_at = quote.expires_at.min(t);
                }
                quote.refusal = match self.transport_allows_paying(&url, &origin) {
                    Err(e) => Some(e),
                    Ok(()) => match self.check_charge(&charge, max_price).await {
                        Ok(c) => self.budget_precheck(&origin, c.amount).await.err(),
                        Err(e) => Some(e),
                    },
                };
                quote
            }
            Offer::Session(offer) => {
                let invoice = offer.request.deposit_invoice.clone().unwrap_or_default();
                let (_, info) = l402_proto::invoice::decode_invoice(&invoice)?;
                let mut quote = self.quote_of(&origin, &info, crate::journal::SESSION_SCHEME, offered);
                quote.service = offer.service();
                quote.challenge_id = Some(offer.challenge.id.clone());
                quote.payment_hash = PaymentHash(offer.request.payment_hash).to_hex();
                quote.refusal = match self.transport_allows_paying(&url, &origin) {
                    Err(e) => Some(e),
                    Ok(()) => match crate::session::check_session_offer(
                        &offer,
                        &self.network().await?,
                        max_price,
                        self.config.expiry_margin,
                        now_unix(),
                    ) {
                        Ok(c) => {
                            quote.expires_at = c.expires_at;
                            self.budget_precheck(&origin, c.amount).await.err()
                        }
                        Err(e) => Some(e),
                    },
                };
                quote
            }
        };
        Ok(Quote::Payment(quote))
    }

    /// A quote of an invoice, not yet judged.
    fn quote_of(
        &self,
        origin: &str,
        info: &l402_proto::InvoiceInfo,
        scheme: &str,
        offers: Vec<String>,
    ) -> PaymentQuote {
        let amount = info.amount.unwrap_or(Msat(0));
        PaymentQuote {
            origin: origin.to_owned(),
            scheme: scheme.to_owned(),
            offers,
            service: String::new(),
            challenge_id: None,
            payment_hash: info.payment_hash.to_hex(),
            amount_msat: info.amount.map(|a| a.0),
            fee_limit_msat: self.config.initial_fee_limit(amount).0,
            max_fee_msat: self.config.max_fee.0,
            expires_at: info.expires_at,
            destination: info.payee.clone(),
            description: info.description.clone(),
            network: l402_proto::invoice::network_name(&info.currency).to_owned(),
            refusal: None,
        }
    }

    /// Whether the budgets would allow paying `amount` (and its first fee limit) to `origin`, without paying.
    async fn budget_precheck(&self, origin: &str, amount: Msat) -> Result<(), Error> {
        let needed = amount.0.saturating_add(self.config.initial_fee_limit(amount).0);
        let o = origin.to_owned();
        self.store
            .call(move |c| {
                let tx = c.transaction()?;
                let limits = Limits::load(&tx)?;
                crate::budget::check(&tx, &limits, &o, needed, now_unix(), "")
            })
            .await?;
        self.session_check(needed)
    }

    /// Parses the macaroon's payment hash and checks the invoice against it and the policy (with `max_price` as
    /// the cap). Returns the amount, the payment hash and the invoice's expiry.
    pub(crate) async fn check_challenge(
        &self,
        challenge: &Challenge,
        max_price: Msat,
    ) -> Result<(Msat, PaymentHash, u64), Error> {
        let id = challenge.macaroon.l402_identifier().map_err(|e| Error::Challenge(format!("macaroon: {e}")))?;
        let policy = l402_proto::InvoicePolicy {
            currency: self.network().await?,
            max_amount: max_price,
            expiry_margin: self.config.expiry_margin,
        };
        let now = Duration::from_secs(now_unix());
        let (_, info) = l402_proto::invoice::check_invoice(&challenge.invoice, &id.payment_hash, &policy, now)?;
        let amount = info.amount.ok_or(l402_proto::InvoiceError::NoAmount)?;
        Ok((amount, id.payment_hash, info.expires_at))
    }

    fn session_check(&self, needed: u64) -> Result<(), Error> {
        let Some(budget) = self.config.session_budget else { return Ok(()) };
        let used = self.session_used.load(Ordering::SeqCst);
        match used.checked_add(needed) {
            Some(after) if after <= budget.0 => Ok(()),
            _ => Err(Error::Budget {
                limit: LimitKind::Session,
                limit_msat: budget.0,
                spent_msat: used,
                needed_msat: needed,
            }),
        }
    }

    /// Reserves `needed` msat of the session budget.
    pub(crate) fn session_reserve(&self, needed: u64) -> Result<(), Error> {
        let Some(budget) = self.config.session_budget else { return Ok(()) };
        self.session_used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                used.checked_add(needed).filter(|after| *after <= budget.0)
            })
            .map(drop)
            .map_err(|used| Error::Budget {
                limit: LimitKind::Session,
                limit_msat: budget.0,
                spent_msat: used,
                needed_msat: needed,
            })
    }

    /// Gives back `amount` msat of the session budget.
    pub(crate) fn session_release(&self, amount: u64) {
        if self.config.session_budget.is_some() {
            let _ =
                self.session_used.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| Some(u.saturating_sub(amount)));
        }
    }

    /// Reports progress.
    pub(crate) fn progress(&self, p: Progress) {
        self.report(p);
    }

    pub(crate) fn leases(&self) -> &Leases {
        &self.leases
    }

    /// The budget limits in force (stored in the data directory; defaults for those never set).
    pub async fn limits(&self) -> Result<Limits, Error> {
        self.store.call(|c| Limits::load(c)).await
    }

    /// Spend and reservations counted against the limits now, for `origin` (or for none: `""`).
    pub async fn usage(&self, origin: &str) -> Result<Usage, Error> {
        let o = origin.to_owned();
        self.store.call(move |c| Usage::read(c, &o, now_unix(), "")).await
    }

    /// The ledger, newest first.
    pub async fn ledger(&self, since: Option<u64>) -> Result<Vec<LedgerEntry>, Error> {
        self.store.call(move |c| journal::ledger(c, since)).await
    }
}
