//! Answering a `402` with a `Payment` session (the Lightning `session` intent, as Aperture words it): open one
//! with a deposit, draw requests from its balance, top it up when the server says it ran out, close it for the
//! refund.
//!
//! Opening (under the lease of the origin and the session's service, so that two requests never open two):
//! an open session of that origin and service is reused if another request opened one meanwhile; otherwise the
//! offer is checked like a charge ([`check_session_offer`]: currency `sat`, the deposit invoice parses, is for
//! the wallet's network, pays the stated `paymentHash`, is for exactly `depositAmount`, does not expire within
//! the margin, is within the price cap; the challenge unexpired), an amountless refund invoice is made on the
//! wallet's own node (30 days), the session is written `opening`, and the deposit is paid through the journal
//! (counted against the budgets like any payment). The request is then sent with `open {preimage,
//! returnInvoice}`; the server's 2xx makes the session `open`.
//!
//! Further requests to that origin and service send `bearer {sessionId, preimage}` with the echoed challenge;
//! a session is only ever sent to the origin it was opened with. Each 2xx says the balance left
//! (`X-L402-Balance-Msat`), kept with the session. A `402` that says the balance (it no longer covers the
//! request) carries a fresh session challenge whose invoice is a top-up: it is checked and paid like the
//! deposit (or a top-up paid earlier and never credited is presented instead) and the request is resent with
//! `topUp {sessionId, topUpPreimage}` echoing that challenge. A `402` without a balance (Aperture: the echoed
//! challenge expired) is answered once, paying nothing, with the same credential echoing the fresh challenge.
//! Anything else the paywall answers with a challenge is its refusal ([`Error::SessionRefused`]): the session
//! is marked `refused` and nothing more is paid in that call.
//!
//! Closing ([`Client::close_session`]) sends `close {sessionId, preimage}` to the URL the session was last used
//! at, reads the server's `{"sessionId","refundMsat","refundStatus"}`, looks the return invoice up on the
//! wallet's node, and writes down what it actually received; the ledger credits that back to the deposit.

use std::time::Duration;

use l402_lightning::{InvoiceRequest, InvoiceState};
use l402_proto::lightning_invoice::Currency;
use l402_proto::mpp::{PAYMENT_RECEIPT_HEADER, PaymentChallenge, PaymentCredential, Receipt, SessionAction};
use l402_proto::{InvoiceError, Msat, PaymentHash};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{Request, Response, StatusCode};
use serde::Serialize;

use crate::client::{CallLimits, Client, L402Response, Payment, SessionUse, origin_of};
use crate::config::Progress;
use crate::error::Error;
use crate::journal::{self, ChargeOutcome, NewPayment, Purchase, SESSION_SCHEME};
use crate::offer::{Offers, SessionOffer, challenge_expiry};
use crate::refusal;
use crate::sessions::{self, NewSession, StoredSession};
use crate::store::now_unix;
use crate::tokens;

/// How long the refund invoice handed to the server stays payable: 30 days.
pub const RETURN_INVOICE_EXPIRY: Duration = Duration::from_secs(30 * 86_400);
/// How long a close waits for the refund to show on the wallet's node.
pub const REFUND_WAIT: Duration = Duration::from_secs(20);
/// How long to wait before presenting an `open` or `topUp` again that the server answered with a fresh
/// challenge and no balance (its invoice not seen settled yet).
const UNSETTLED_RETRY: Duration = Duration::from_secs(1);
/// The largest close answer read.
const CLOSE_BODY_LIMIT: usize = 64 * 1024;

/// The lease a service's sessions are opened and topped up under (apart from its L402 tokens and charges).
pub(crate) fn lease_name(service: &str) -> String {
    format!("{SESSION_SCHEME} {service}")
}

/// What a session offer that passed the checks will cost.
#[derive(Clone, Debug)]
pub(crate) struct CheckedSession {
    /// The deposit (or top-up) to pay.
    pub(crate) amount: Msat,
    /// Its payment hash.
    pub(crate) payment_hash: PaymentHash,
    /// The price per request.
    pub(crate) price: Msat,
    /// The earlier of the invoice's and the challenge's expiry (Unix seconds).
    pub(crate) expires_at: u64,
    /// The invoice to pay.
    pub(crate) invoice: String,
}

/// The checks of the module doc, for the wallet's network `wallet`, the price cap `max_price`, the expiry
/// margin and the time `now` (Unix seconds). Nothing is paid when this refuses.
pub(crate) fn check_session_offer(
    offer: &SessionOffer,
    wallet: &Currency,
    max_price: Msat,
    margin: Duration,
    now: u64,
) -> Result<CheckedSession, Error> {
    let request = &offer.request;
    if request.currency != "sat" {
        return Err(Error::Challenge(format!(
            "the session's currency is {:?}, not sat",
            request.currency.chars().take(16).collect::<String>()
        )));
    }
    let invoice = request
        .deposit_invoice
        .as_deref()
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .ok_or_else(|| Error::Challenge("the session offer has no depositInvoice".into()))?;
    let deposit_sat =
        request.deposit_amount.ok_or_else(|| Error::Challenge("the session offer has no depositAmount".into()))?;
    let policy = l402_proto::InvoicePolicy { currency: wallet.clone(), max_amount: max_price, expiry_margin: margin };
    let stated_hash = PaymentHash(request.payment_hash);
    let (_, info) = l402_proto::invoice::check_invoice(invoice, &stated_hash, &policy, Duration::from_secs(now))?;
    let amount = info.amount.ok_or(InvoiceError::NoAmount)?;
    let stated = deposit_sat.checked_mul(1000).map(Msat);
    if stated != Some(amount) {
        return Err(Error::AmountMismatch { stated: stated.unwrap_or(Msat(u64::MAX)), invoice: amount });
    }
    let price = request.amount.checked_mul(1000).map(Msat).unwrap_or(Msat(u64::MAX));
    if price.0 == 0 || price > amount {
        return Err(Error::Challenge(format!(
            "the session's price per request ({price}) is zero or more than its deposit ({amount})"
        )));
    }
    let mut expires_at = info.expires_at;
    if let Some(t) = challenge_expiry(&offer.challenge)? {
        let m = margin.as_secs();
        if now.saturating_add(m) >= t {
            return Err(Error::Invoice(InvoiceError::Expired { expires_at: t, margin_secs: m }));
        }
        expires_at = expires_at.min(t);
    }
    Ok(CheckedSession { amount, payment_hash: stated_hash, price, expires_at, invoice: invoice.to_owned() })
}

/// The `Authorization` value of a session action echoing `challenge` (a header value as received). A secret:
/// never logged.
fn credential(challenge: &str, action: SessionAction) -> Result<HeaderValue, Error> {
    let challenge = PaymentChallenge::parse_all([challenge.as_bytes()])
        .into_iter()
        .next()
        .ok_or_else(|| Error::Store("a stored session challenge does not parse".into()))?;
    let cred = PaymentCredential { challenge, source: None, payload: action.to_json() };
    let mut value = HeaderValue::from_str(&cred.header_value())
        .map_err(|_| Error::Store("session credential is not a valid header value".into()))?;
    value.set_sensitive(true);
    Ok(value)
}

/// What a credential sent on a session proves.
#[derive(Clone)]
enum Sent {
    /// `open` (the deposit) or `bearer`.
    Session,
    /// `topUp` with the top-up paid for `payment_hash`.
    TopUp { payment_hash: String, preimage: l402_proto::Preimage },
}

/// The action for `sent` on `session`.
fn action(session: &StoredSession, sent: &Sent) -> Result<SessionAction, Error> {
    let preimage = session
        .preimage
        .as_ref()
        .ok_or_else(|| Error::Store(format!("session {} has no deposit preimage", session.session_id)))?
        .to_hex();
    let session_id = session.session_id.clone();
    Ok(match sent {
        Sent::Session if session.is_open() => SessionAction::Bearer { session_id, preimage },
        Sent::Session => SessionAction::Open { preimage, return_invoice: session.return_invoice.clone() },
        Sent::TopUp { preimage, .. } => SessionAction::TopUp { session_id, top_up_preimage: preimage.to_hex() },
    })
}

/// What a close answered.
#[derive(Clone, Debug, Serialize)]
pub struct SessionClose {
    /// The session closed.
    pub session_id: String,
    /// The origin it was closed at.
    pub origin: String,
    /// What the server says it refunded, msat.
    pub refund_msat: u64,
    /// What the server says of the refund: `succeeded`, `skipped` (nothing to refund), or `failed` / `pending`
    /// (still owed: the session stays `closing` and closing it again asks again).
    pub refund_status: String,
    /// What the wallet's node received on the return invoice, msat (`None`: the node does not show it paid).
    pub received_msat: Option<u64>,
    /// What was paid into the session (deposit and top-ups), msat.
    pub deposited_msat: u64,
}

impl Client {
    /// Opens a session for `offer` (the module doc) and sends `replay` on it.
    pub(crate) async fn session_open(
        &self,
        replay: Request,
        origin: &str,
        path: &str,
        offer: SessionOffer,
        call: CallLimits,
    ) -> Result<L402Response, Error> {
        let service = offer.service();
        let (o, p, s) = (origin.to_owned(), path.to_owned(), service.clone());
        self.store().call(move |c| tokens::learn_route(c, &o, &p, &s, now_unix())).await?;
        self.progress(Progress::WaitingForLease { origin: origin.to_owned(), service: service.clone() });
        let lease = self.leases().acquire(origin, &lease_name(&service), self.config().lease_timeout).await?;
        let (o, s) = (origin.to_owned(), service.clone());
        if let Some(open) = self.store().call(move |c| sessions::usable_for_service(c, &o, &s)).await? {
            drop(lease);
            tracing::info!(session_id = %open.session_id, "another request opened a session meanwhile; using it");
            return self.session_request(replay, open, call, None, false).await;
        }
        let checked = check_session_offer(
            &offer,
            &self.network().await?,
            call.max_price,
            self.config().expiry_margin,
            now_unix(),
        )?;
        let issuer = self.issuer().ok_or_else(|| {
            Error::Wallet(l402_lightning::LightningError::new(
                l402_lightning::LightningErrorKind::Config,
                "opening a session needs a wallet that can issue invoices (for the refund); nothing was paid",
            ))
        })?;
        let refund = issuer
            .create_invoice(&InvoiceRequest {
                amount: Msat(0),
                memo: format!("l402 session refund: {}", service.chars().take(64).collect::<String>()),
                expiry: RETURN_INVOICE_EXPIRY,
            })
            .await?;
        let session_id = checked.payment_hash.to_hex();
        let challenge = offer.challenge.header_value();
        let new = NewSession {
            session_id: session_id.clone(),
            origin: origin.to_owned(),
            service: service.clone(),
            url: replay.url().to_string(),
            challenge: challenge.clone(),
            price: checked.price,
            deposit: checked.amount,
            return_invoice: refund.bolt11,
            return_hash: refund.payment_hash.to_hex(),
        };
        self.store().call(move |c| sessions::insert_opening(c, &new, now_unix())).await?;
        let entry = NewPayment {
            payment_hash: checked.payment_hash,
            origin: origin.to_owned(),
            service,
            path: path.to_owned(),
            purchase: Purchase::Session {
                challenge,
                challenge_id: offer.challenge.id.clone(),
                session_id: session_id.clone(),
            },
            invoice: checked.invoice.clone(),
            amount: checked.amount,
            fee_limit: self.config().initial_fee_limit(checked.amount),
        };
        tracing::info!(session_id = %session_id, amount_msat = checked.amount.0, "paying a session deposit");
        let paid = match self.pay_new(entry, checked.expires_at).await {
            Ok(paid) => paid,
            Err(e) => {
                // A deposit that was never paid leaves no session behind (one whose outcome is unknown stays
                // `opening`: recovery gives it its preimage if it went through).
                if !matches!(e, Error::OutcomeUnknown { .. }) {
                    let id = session_id.clone();
                    self.store().call(move |c| sessions::forget_unpaid(c, &id)).await?;
                }
                return Err(e);
            }
        };
        self.finish(checked.payment_hash, paid).await?;
        let payment = Payment {
            payment_hash: checked.payment_hash,
            preimage: paid.preimage,
            amount: paid.amount,
            fee: paid.fee,
            token_id: None,
            charge: None,
            session_id: Some(session_id.clone()),
        };
        let id = session_id.clone();
        let session = self
            .store()
            .call(move |c| sessions::get(c, &id))
            .await?
            .ok_or_else(|| Error::Store(format!("session {session_id} vanished")))?;
        let answer = self.session_request(replay, session, call, Some(payment), true).await;
        drop(lease);
        answer
    }

    /// The usable session for `origin` + `path`, if any (see [`sessions::select`]).
    pub(crate) async fn session_for(&self, origin: &str, path: &str) -> Result<Option<StoredSession>, Error> {
        let (o, p) = (origin.to_owned(), path.to_owned());
        self.store().call(move |c| sessions::select(c, &o, &p)).await
    }

    /// Sends `request` on `session` (`open` or `bearer`), then answers what the server says: a balance too
    /// low is topped up (once), a stale challenge refreshed (once, paying nothing); see the module doc.
    /// `payment` is the deposit paid for this request, if one was; `leased`: the caller holds the session
    /// service's lease already.
    pub(crate) async fn session_request(
        &self,
        request: Request,
        mut session: StoredSession,
        call: CallLimits,
        mut payment: Option<Payment>,
        leased: bool,
    ) -> Result<L402Response, Error> {
        let url = request.url().clone();
        if origin_of(&url)? != session.origin {
            return Err(Error::Request("a session is only sent to the origin it was opened with".into()));
        }
        let mut sent = Sent::Session;
        let mut challenge = session.challenge.clone();
        let mut refreshed = false;
        let mut topped_up = false;
        let mut rode_along = false;
        let mut next = Some(request);
        loop {
            let Some(request) = next.take() else { return Err(Error::NotReplayable) };
            let spare = request.try_clone();
            let mut request = request;
            request.headers_mut().insert(AUTHORIZATION, credential(&challenge, action(&session, &sent)?)?);
            tracing::info!(session_id = %session.session_id, open = session.is_open(), "sending on a session");
            let resp = self.send(request).await?;
            let status = resp.status();
            let id = session.session_id.clone();
            if status != StatusCode::PAYMENT_REQUIRED && status != StatusCode::UNAUTHORIZED {
                return self.session_served(resp, &session, &sent, &challenge, payment).await;
            }
            if status == StatusCode::UNAUTHORIZED || !refusal::charge_refused(resp.headers()) {
                if refusal::charge_refused(resp.headers()) {
                    return Err(self.session_refused(&id, status.as_u16()).await);
                }
                // Not the paywall's word (no challenge): the API behind it answered.
                return self.session_served(resp, &session, &sent, &challenge, payment).await;
            }
            let offers = Offers::read(resp.headers());
            let fresh = offers.usable_session().cloned();
            match (refusal::balance(resp.headers()), fresh) {
                (Some(left), Some(offer)) if !topped_up => {
                    topped_up = true;
                    let now = now_unix();
                    let sid = id.clone();
                    self.store().call(move |c| sessions::note_balance(c, &sid, left, now)).await?;
                    tracing::info!(session_id = %session.session_id, balance_msat = left, "session balance too low; topping up");
                    if spare.is_none() {
                        return Err(Error::NotReplayable);
                    }
                    self.transport_allows_paying(&url, &session.origin)?;
                    match self.session_topup(&session, &offer, call, leased).await? {
                        Some((topup, paid)) => {
                            challenge = topup.1;
                            sent = Sent::TopUp { payment_hash: topup.0, preimage: topup.2 };
                            if paid.is_some() {
                                payment = paid;
                            }
                        }
                        // Another request topped the session up while this one waited for the lease: the
                        // bearer credential again, paying nothing (once).
                        None if !rode_along => {
                            rode_along = true;
                            topped_up = false;
                            sent = Sent::Session;
                        }
                        None => return Err(self.session_refused(&id, status.as_u16()).await),
                    }
                }
                (None, Some(offer)) if !refreshed => {
                    refreshed = true;
                    if matches!(sent, Sent::Session) && session.is_open() {
                        // Aperture: the echoed challenge expired. The same bearer credential, echoing the fresh one.
                        tracing::info!(session_id = %session.session_id, "session challenge refreshed; sending again");
                        challenge = offer.challenge.header_value();
                    } else {
                        // An `open` or `topUp` proves the payment of its own challenge's invoice, which the
                        // server may not have seen settle yet: the same credential once more, a moment later.
                        tracing::info!(session_id = %session.session_id, "payment not seen by the server yet; sending again");
                        tokio::time::sleep(UNSETTLED_RETRY).await;
                    }
                }
                _ => return Err(self.session_refused(&id, status.as_u16()).await),
            }
            let sid = session.session_id.clone();
            session = self
                .store()
                .call(move |c| sessions::get(c, &sid))
                .await?
                .ok_or_else(|| Error::Store("the session vanished".into()))?;
            next = spare;
        }
    }

    /// Pays the top-up `offer` for `session` (or finds one paid earlier and never credited); returns its hash,
    /// the challenge to echo and its preimage, and the payment made (if this call made one). `None`: another
    /// request topped the session up since `session` was read (send the bearer credential again).
    async fn session_topup(
        &self,
        session: &StoredSession,
        offer: &SessionOffer,
        call: CallLimits,
        leased: bool,
    ) -> Result<Option<((String, String, l402_proto::Preimage), Option<Payment>)>, Error> {
        let _lease = if leased {
            None
        } else {
            let name = lease_name(&session.service);
            Some(self.leases().acquire(&session.origin, &name, self.config().lease_timeout).await?)
        };
        let id = session.session_id.clone();
        let (now, unspent) =
            self.store().call(move |c| Ok((sessions::get(c, &id)?, sessions::unspent_topup(c, &id)?))).await?;
        if let Some(t) = unspent {
            tracing::info!(session_id = %session.session_id, payment_hash = %t.payment_hash,
                "presenting a top-up paid earlier and not yet credited");
            return Ok(Some(((t.payment_hash, t.challenge, t.preimage), None)));
        }
        if now.is_some_and(|n| n.topups > session.topups) {
            tracing::info!(session_id = %session.session_id, "the session was topped up meanwhile; not paying again");
            return Ok(None);
        }
        let checked = check_session_offer(
            offer,
            &self.network().await?,
            call.max_price,
            self.config().expiry_margin,
            now_unix(),
        )?;
        if checked.payment_hash.to_hex() == session.session_id {
            return Err(Error::Challenge("the top-up invoice is the session's own deposit".into()));
        }
        let challenge = offer.challenge.header_value();
        let path = reqwest::Url::parse(&session.url).map(|u| u.path().to_owned()).unwrap_or_default();
        let entry = NewPayment {
            payment_hash: checked.payment_hash,
            origin: session.origin.clone(),
            service: session.service.clone(),
            path,
            purchase: Purchase::Session {
                challenge: challenge.clone(),
                challenge_id: offer.challenge.id.clone(),
                session_id: session.session_id.clone(),
            },
            invoice: checked.invoice.clone(),
            amount: checked.amount,
            fee_limit: self.config().initial_fee_limit(checked.amount),
        };
        tracing::info!(session_id = %session.session_id, payment_hash = %checked.payment_hash,
            amount_msat = checked.amount.0, "paying a session top-up");
        let paid = self.pay_new(entry, checked.expires_at).await?;
        self.finish(checked.payment_hash, paid).await?;
        let payment = Payment {
            payment_hash: checked.payment_hash,
            preimage: paid.preimage,
            amount: paid.amount,
            fee: paid.fee,
            token_id: None,
            charge: None,
            session_id: Some(session.session_id.clone()),
        };
        Ok(Some(((checked.payment_hash.to_hex(), challenge, paid.preimage), Some(payment))))
    }

    /// Records a request the server served on `session` and returns its response.
    async fn session_served(
        &self,
        resp: Response,
        session: &StoredSession,
        sent: &Sent,
        challenge: &str,
        payment: Option<Payment>,
    ) -> Result<L402Response, Error> {
        let ok = resp.status().is_success();
        let balance = if ok { refusal::balance(resp.headers()) } else { None };
        let receipt = resp
            .headers()
            .get(PAYMENT_RECEIPT_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Receipt::decode(v.trim()).ok());
        let (id, url, now) = (session.session_id.clone(), resp.url().to_string(), now_unix());
        let fresher = (challenge != session.challenge).then(|| challenge.to_owned());
        let credited = match sent {
            Sent::Session if !session.is_open() => Some(session.session_id.clone()),
            Sent::Session => None,
            Sent::TopUp { payment_hash, .. } => Some(payment_hash.clone()),
        };
        if ok {
            self.store()
                .call(move |c| {
                    sessions::served(c, &id, &url, balance, fresher.as_deref(), now)?;
                    if let Some(hash) = credited.and_then(|h| PaymentHash::from_hex(&h).ok()) {
                        journal::charge_outcome(c, &hash, ChargeOutcome::Spent(receipt), now)?;
                    }
                    Ok(())
                })
                .await?;
        }
        let mut answer = self.done(resp, None, payment).await?;
        answer.session = Some(SessionUse { session_id: session.session_id.clone(), balance_msat: balance });
        Ok(answer)
    }

    /// Marks a session refused by the paywall and builds the error that reports it.
    async fn session_refused(&self, session_id: &str, status: u16) -> Error {
        tracing::warn!(session_id, status, "session refused by the server; kept as proof of payment");
        let (id, now) = (session_id.to_owned(), now_unix());
        if let Err(e) = self
            .store()
            .call(move |c| {
                let state = sessions::get(c, &id)?.map(|s| s.state);
                if matches!(state.as_deref(), Some("opening" | "open")) {
                    sessions::set_state(c, &id, "refused", now)?;
                }
                Ok(())
            })
            .await
        {
            return e;
        }
        Error::SessionRefused { session_id: session_id.to_owned(), status }
    }

    /// Closes the session whose id starts with `id_prefix`: sends `close` to the URL it was last used at (its
    /// own origin), records the refund the server reports, and checks it against the wallet's node (the
    /// return invoice looked up by hash); what the node received is credited back in the ledger.
    pub async fn close_session(&self, id_prefix: &str) -> Result<SessionClose, Error> {
        let p = id_prefix.to_owned();
        let found = self.store().call(move |c| sessions::find(c, &p)).await?;
        let session = match found.as_slice() {
            [one] => one.clone(),
            [] => return Err(Error::Request(format!("no session with id {id_prefix:?}"))),
            _ => {
                return Err(Error::Request(format!(
                    "{id_prefix:?} names {} sessions: give more of the id",
                    found.len()
                )));
            }
        };
        // A refused session may still hold a balance (a server that does not say the balance refuses a used-up
        // session with a 402): its close is the server's to answer, and sends no money.
        if !matches!(session.state.as_str(), "open" | "opening" | "closing" | "refused") || session.preimage.is_none() {
            return Err(Error::Request(format!(
                "session {} is {}: nothing to close",
                session.session_id, session.state
            )));
        }
        let url = reqwest::Url::parse(&session.url).map_err(|e| Error::Store(format!("session URL: {e}")))?;
        if origin_of(&url)? != session.origin {
            return Err(Error::Store("a session's URL is not at its origin".into()));
        }
        // The close carries the bearer secret and brings the refund: plain http only if allowed, as paying.
        self.transport_allows_paying(&url, &session.origin)?;
        let preimage = session.preimage.as_ref().map(|p| p.to_hex()).unwrap_or_default();
        let close = SessionAction::Close { session_id: session.session_id.clone(), preimage };
        let mut request = self.request(reqwest::Method::GET, url.as_str()).build().map_err(Error::Http)?;
        request.headers_mut().insert(AUTHORIZATION, credential(&session.challenge, close)?);
        // The server pays the refund while it answers the close: the wallet's node must be up to receive it
        // (a node started on first use, as the CLI's, is started here, its channels usable).
        if let (Some(issuer), Ok(hash)) = (self.issuer(), PaymentHash::from_hex(&session.return_hash)) {
            issuer.lookup_invoice(&hash).await?;
        }
        let (id, now) = (session.session_id.clone(), now_unix());
        self.store().call(move |c| sessions::set_state(c, &id, "closing", now)).await?;
        tracing::info!(session_id = %session.session_id, "closing a session");
        let mut resp = self.send(request).await?;
        let status = resp.status();
        if !status.is_success() {
            let refused = refusal::charge_refused(resp.headers()) || status == StatusCode::UNAUTHORIZED;
            let (id, now) = (session.session_id.clone(), now_unix());
            let state = if refused { "refused" } else { "open" };
            self.store().call(move |c| sessions::set_state(c, &id, state, now)).await?;
            return Err(Error::SessionRefused { session_id: session.session_id.clone(), status: status.as_u16() });
        }
        let receipt = close_receipt(resp.headers());
        let body = crate::body::read_capped(&mut resp, CLOSE_BODY_LIMIT).await?;
        // Ours answers `{"sessionId", "refundMsat", "refundStatus"}`. Aperture forwards the close upstream and
        // answers with the upstream's body; its master says the refund in the receipt (`refundSats`,
        // `refundStatus`), v0.5.0 nowhere: then the refund is "unknown" and the node is what tells.
        let json: Option<serde_json::Value> =
            serde_json::from_slice::<serde_json::Value>(&body).ok().filter(|j| !j["refundMsat"].is_null());
        let (refund, refund_status) = match (&json, &receipt) {
            (Some(j), _) => {
                let refund = j["refundMsat"]
                    .as_u64()
                    .or_else(|| j["refundMsat"].as_str().and_then(|v| v.parse().ok()))
                    .map(Msat)
                    .ok_or_else(|| Error::Challenge("the close answer's refundMsat is not a number".into()))?;
                if j["sessionId"].as_str().is_some_and(|s| !s.eq_ignore_ascii_case(&session.session_id)) {
                    tracing::warn!(session_id = %session.session_id, "the close answer names another session");
                }
                (refund, j["refundStatus"].as_str().unwrap_or("unknown").to_owned())
            }
            (None, Some(r)) if r["refundSats"].is_u64() => (
                Msat(r["refundSats"].as_u64().unwrap_or(0).saturating_mul(1000)),
                r["refundStatus"].as_str().unwrap_or("unknown").to_owned(),
            ),
            (None, _) => (Msat(0), "unknown".to_owned()),
        };
        let refund_status: String = refund_status.chars().take(32).collect();
        let received = self.refund_received(&session, refund, refund_status == "unknown").await;
        // `failed` or `pending`: the server still owes the refund, and a close presented again tries again. A
        // server that did not say (`unknown`): done once the node shows the refund, and it is what arrived.
        let unknown_but_received = refund_status == "unknown" && received.is_some();
        let refund = if unknown_but_received { received.unwrap_or(refund) } else { refund };
        let done = matches!(refund_status.as_str(), "succeeded" | "skipped") || unknown_but_received;
        let (id, status_kept, now) = (session.session_id.clone(), refund_status.clone(), now_unix());
        self.store().write(move |tx| sessions::closed(tx, &id, &status_kept, refund, received, done, now)).await?;
        tracing::info!(session_id = %session.session_id, refund_msat = refund.0, refund_status,
            received_msat = received.map(|m| m.0), "session closed");
        Ok(SessionClose {
            session_id: session.session_id.clone(),
            origin: session.origin.clone(),
            refund_msat: refund.0,
            refund_status,
            received_msat: received.map(|m| m.0),
            deposited_msat: session.deposited_msat(),
        })
    }

    /// What the wallet's node received on the session's return invoice (waiting a little if the server says it
    /// refunded something); `None` if it shows nothing received or cannot be asked.
    async fn refund_received(&self, session: &StoredSession, refund: Msat, unknown: bool) -> Option<Msat> {
        let issuer = self.issuer()?;
        let hash = PaymentHash::from_hex(&session.return_hash).ok()?;
        let wait = if refund.0 > 0 || unknown { REFUND_WAIT } else { Duration::ZERO };
        match issuer.wait_invoice(&hash, wait).await {
            Ok(InvoiceState::Settled(s)) => Some(s.amount_received),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(session_id = %session.session_id, error = %e, "the refund could not be looked up");
                None
            }
        }
    }
}

/// The JSON of a close's `Payment-Receipt`, if it has a readable one.
fn close_receipt(headers: &reqwest::header::HeaderMap) -> Option<serde_json::Value> {
    let v = headers.get(l402_proto::mpp::PAYMENT_RECEIPT_HEADER)?.to_str().ok()?;
    let bytes = l402_proto::mpp::b64url_decode(v).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests;
