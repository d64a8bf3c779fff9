//! Getting a token for a challenge: under the lease of its origin and service, finish what an earlier run
//! left in the journal, reuse a token someone else bought meanwhile, or check, journal, reserve and pay
//! ([`Client::pay_new`], which a `Payment` charge goes through too).
//!
//! Payment retries follow [`PaymentFailure::retry`]: "no route" once more with a raised (bounded) fee limit,
//! "timeout" once more if the invoice is still valid, anything else never.

use std::time::Duration;

use l402_lightning::{PayError, PayRequest, PaymentEvent, PaymentFailure, PaymentStatus, PaymentSuccess, Retry};
use l402_proto::{Challenge, Msat, PaymentHash, TokenId};

use crate::budget::Limits;
use crate::client::{Client, Payment};
use crate::config::{Checkpoint, Progress};
use crate::error::Error;
use crate::journal::{self, NewPayment, Purchase};
use crate::store::now_unix;
use crate::tokens::{self, StoredToken, TokenScope};

/// How long past the wallet's own timeout the client waits for `pay` before calling the outcome unknown.
const PAY_MARGIN: Duration = Duration::from_secs(120);

/// What recovery did with the journal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Payments found to have succeeded; their tokens are now stored.
    pub completed: Vec<PaymentHash>,
    /// Payments found to have failed or never sent; their reservations are released.
    pub released: Vec<PaymentHash>,
    /// Payments whose outcome is still unknown (reservations kept; never paid again).
    pub unknown: Vec<PaymentHash>,
}

impl Client {
    /// Gets a token for `challenge`, paying only if no valid token for its service exists once the lease is
    /// held. Returns the token and the payment made for it (if this call made or completed one).
    pub(crate) async fn obtain(
        &self,
        origin: &str,
        path: &str,
        challenge: &Challenge,
        max_price: Msat,
    ) -> Result<(StoredToken, Option<Payment>), Error> {
        let service = TokenScope::of(&challenge.macaroon).service().to_owned();
        self.progress(Progress::WaitingForLease { origin: origin.to_owned(), service: service.clone() });
        let _lease = self.leases().acquire(origin, &service, self.config().lease_timeout).await?;

        let recovery = self.recover_key(origin, &service, false).await?;
        if let Some(hash) = recovery.unknown.first() {
            return Err(Error::OutcomeUnknown {
                payment_hash: *hash,
                detail: "an earlier payment to this service is still unresolved; not paying again".into(),
            });
        }
        let (o, s) = (origin.to_owned(), service.clone());
        if let Some(t) = self.store().call(move |c| tokens::valid_for_service(c, &o, &s)).await? {
            let payment = self.payment_for(&t, &recovery).await?;
            return Ok((t, payment));
        }
        if !self.config().repay_after_refusal {
            let (o, s) = (origin.to_owned(), service.clone());
            if let Some(t) = self.store().call(move |c| tokens::refused_for_service(c, &o, &s)).await? {
                return Err(Error::PaidButRefused {
                    token_id: t.id()?,
                    status: t.refused_status.unwrap_or(0),
                    paid: t.paid(),
                });
            }
        }

        let (amount, hash, expires_at) = self.check_challenge(challenge, max_price).await?;
        let entry = NewPayment {
            payment_hash: hash,
            origin: origin.to_owned(),
            service: service.clone(),
            path: path.to_owned(),
            purchase: Purchase::Token {
                scheme: challenge.scheme.as_str().to_owned(),
                macaroon: challenge.macaroon.clone(),
            },
            invoice: challenge.invoice.trim().to_owned(),
            amount,
            fee_limit: self.config().initial_fee_limit(amount),
        };
        let paid = self.pay_new(entry, expires_at).await?;
        let token = self.finish_token(hash, paid).await?;
        let payment = Payment {
            payment_hash: hash,
            preimage: paid.preimage,
            amount: paid.amount,
            fee: paid.fee,
            token_id: Some(token.id()?),
            charge: None,
            session_id: None,
        };
        Ok((token, Some(payment)))
    }

    /// Reserves the budgets, journals `entry` and pays its invoice (retrying as the failure allows); returns the
    /// wallet's success, not yet recorded (the caller records it with [`Client::finish`]). The checks on the
    /// offer were made by the caller.
    pub(crate) async fn pay_new(&self, entry: NewPayment, expires_at: u64) -> Result<PaymentSuccess, Error> {
        let (hash, amount, fee_limit) = (entry.payment_hash, entry.amount, entry.fee_limit);
        let origin = entry.origin.clone();
        let invoice = entry.invoice.clone();
        let needed = amount.0.saturating_add(fee_limit.0);
        self.session_reserve(needed)?;
        let reserved = self
            .store()
            .write(move |tx| {
                let limits = Limits::load(tx)?;
                journal::reserve(tx, &limits, &entry, now_unix())
            })
            .await;
        if let Err(e) = reserved {
            self.session_release(needed);
            return Err(e);
        }
        tracing::info!(payment_hash = %hash, amount_msat = amount.0, fee_limit_msat = fee_limit.0, origin, "paying");
        self.checkpoint(Checkpoint::JournalWritten);

        let (paid, reserved) = match self.pay_journaled(&origin, &hash, &invoice, amount, fee_limit, expires_at).await {
            Ok(v) => v,
            Err((e, reserved)) => {
                if !matches!(e, Error::OutcomeUnknown { .. }) {
                    self.session_release(reserved);
                }
                return Err(e);
            }
        };
        self.checkpoint(Checkpoint::PaymentSucceeded);
        self.session_release(reserved.saturating_sub(paid.amount.0.saturating_add(paid.fee.0)));
        Ok(paid)
    }

    /// Records a success (storing the token it bought, or making a charge `unspent`); returns the token's id.
    pub(crate) async fn finish(&self, hash: PaymentHash, paid: PaymentSuccess) -> Result<Option<TokenId>, Error> {
        let token_id = self.store().write(move |tx| journal::succeed(tx, &hash, &paid, now_unix())).await?;
        match &token_id {
            Some(id) => {
                tracing::info!(payment_hash = %hash, token_id = %id, fee_msat = paid.fee.0, "paid; token stored")
            }
            None => tracing::info!(payment_hash = %hash, fee_msat = paid.fee.0, "paid; charge recorded"),
        }
        Ok(token_id)
    }

    /// [`Client::finish`] for a token; returns the token.
    async fn finish_token(&self, hash: PaymentHash, paid: PaymentSuccess) -> Result<StoredToken, Error> {
        let token_id = self
            .finish(hash, paid)
            .await?
            .ok_or_else(|| Error::Store(format!("payment {hash} was journaled as a charge, not a token")))?;
        let id = token_id.to_hex();
        let found = self.store().call(move |c| tokens::find(c, &id)).await?;
        found.into_iter().next().ok_or_else(|| Error::Store(format!("token {token_id} vanished")))
    }

    /// If `token` was bought by a payment recovery just completed, that payment.
    async fn payment_for(&self, token: &StoredToken, recovery: &Recovery) -> Result<Option<Payment>, Error> {
        let Ok(hash) = PaymentHash::from_hex(&token.payment_hash) else { return Ok(None) };
        if !recovery.completed.contains(&hash) {
            return Ok(None);
        }
        let cred = token.credential()?;
        Ok(Some(Payment {
            payment_hash: hash,
            preimage: cred.preimage,
            amount: Msat(token.amount_msat),
            fee: Msat(token.fee_msat),
            token_id: Some(token.id()?),
            charge: None,
            session_id: None,
        }))
    }

    /// Pays a journaled payment, retrying as the failure allows. On error, also returns what is still
    /// reserved (msat) for the caller's session accounting.
    async fn pay_journaled(
        &self,
        origin: &str,
        hash: &PaymentHash,
        invoice: &str,
        amount: Msat,
        mut fee_limit: Msat,
        expires_at: u64,
    ) -> Result<(PaymentSuccess, u64), (Error, u64)> {
        let mut raised = false;
        let mut retried_timeout = false;
        let reserved = |fee: Msat| amount.0.saturating_add(fee.0);
        loop {
            self.progress(Progress::Paying { payment_hash: *hash, amount, fee_limit, origin: origin.to_owned() });
            let request = PayRequest {
                bolt11: invoice.to_owned(),
                payment_hash: *hash,
                amount,
                max_fee: fee_limit,
                timeout: self.config().payment_timeout,
            };
            let on_event = |event: PaymentEvent| {
                if event == PaymentEvent::InFlight {
                    self.checkpoint(Checkpoint::PaymentInFlight);
                }
                self.progress(Progress::Payment { payment_hash: *hash, event });
            };
            let limit = self.config().payment_timeout.saturating_add(PAY_MARGIN);
            let outcome = tokio::time::timeout(limit, self.payer().pay(&request, &on_event)).await;
            let failure = match outcome {
                Ok(Ok(paid)) => return Ok((paid, reserved(fee_limit))),
                Err(_) => return Err((self.mark_unknown(hash, "no answer from the wallet in time").await, 0)),
                Ok(Err(PayError::OutcomeUnknown(detail))) => return Err((self.mark_unknown(hash, &detail).await, 0)),
                Ok(Err(PayError::Failed(f))) => f,
                Ok(Err(PayError::Rejected(reason))) => {
                    let e = self.mark_failed(hash, &format!("rejected: {reason}")).await;
                    return Err((
                        e.unwrap_or(Error::PaymentRejected { payment_hash: *hash, reason }),
                        reserved(fee_limit),
                    ));
                }
                Ok(Err(PayError::Node(node))) => {
                    // The node could not be asked: nothing was sent.
                    let e = self.mark_failed(hash, &format!("wallet: {node}")).await;
                    return Err((e.unwrap_or(Error::Wallet(node)), reserved(fee_limit)));
                }
                Ok(Err(other)) => return Err((self.mark_unknown(hash, &other.to_string()).await, 0)),
            };
            tracing::info!(payment_hash = %hash, reason = failure.reason(), "payment failed");
            match failure.retry() {
                Retry::WithHigherFee if !raised => {
                    if let Some(higher) = self.config().raised_fee_limit(fee_limit) {
                        raised = true;
                        if self.raise(hash, fee_limit, higher).await.is_ok() {
                            fee_limit = higher;
                            tracing::info!(payment_hash = %hash, fee_limit_msat = higher.0, "retrying with a higher fee limit");
                            continue;
                        }
                    }
                }
                Retry::IfInvoiceValid if !retried_timeout => {
                    retried_timeout = true;
                    if now_unix().saturating_add(self.config().expiry_margin.as_secs()) < expires_at {
                        tracing::info!(payment_hash = %hash, "retrying after a timeout; the invoice is still valid");
                        continue;
                    }
                }
                _ => {}
            }
            let e = self.mark_failed(hash, failure.reason()).await;
            return Err((e.unwrap_or(Error::PaymentFailed { payment_hash: *hash, failure }), reserved(fee_limit)));
        }
    }

    /// Raises the reservation for a retry with a higher fee limit (budgets checked again).
    async fn raise(&self, hash: &PaymentHash, from: Msat, to: Msat) -> Result<(), Error> {
        self.session_reserve(to.0.saturating_sub(from.0))?;
        let h = *hash;
        let r = self
            .store()
            .write(move |tx| {
                let limits = Limits::load(tx)?;
                journal::raise_fee_limit(tx, &limits, &h, to, now_unix())
            })
            .await;
        if let Err(e) = &r {
            tracing::info!(payment_hash = %hash, error = %e, "no retry with a higher fee limit");
            self.session_release(to.0.saturating_sub(from.0));
        }
        r
    }

    /// Marks a payment failed (reservation released). Returns a store error if that could not be recorded.
    async fn mark_failed(&self, hash: &PaymentHash, why: &str) -> Option<Error> {
        let (h, w) = (*hash, why.to_owned());
        self.store().call(move |c| journal::fail(c, &h, &w, now_unix())).await.err()
    }

    /// Marks a payment's outcome unknown (reservation kept) and builds the error that reports it.
    async fn mark_unknown(&self, hash: &PaymentHash, detail: &str) -> Error {
        tracing::warn!(payment_hash = %hash, detail, "payment outcome unknown; it will be looked up again");
        let (h, d) = (*hash, detail.to_owned());
        match self.store().call(move |c| journal::unknown(c, &h, &d, now_unix())).await {
            Ok(()) => Error::OutcomeUnknown { payment_hash: *hash, detail: detail.to_owned() },
            Err(e) => e,
        }
    }

    /// Resolves every unresolved journal entry (after a crash, a timeout or a lost connection), taking each
    /// service's lease in turn. Safe to run while other processes use the same data directory.
    pub async fn recover(&self) -> Result<Recovery, Error> {
        let rows = self.store().call(|c| journal::unresolved(c, None)).await?;
        let mut keys: Vec<(String, String, bool)> =
            rows.into_iter().map(|r| (r.origin, r.service, r.scheme == journal::CHARGE_SCHEME)).collect();
        keys.sort();
        keys.dedup();
        let mut all = Recovery::default();
        for (origin, service, charge) in keys {
            let lease = if charge { crate::charge::lease_name(&service) } else { service.clone() };
            let _lease = self.leases().acquire(&origin, &lease, self.config().lease_timeout).await?;
            let r = self.recover_key(&origin, &service, charge).await?;
            all.completed.extend(r.completed);
            all.released.extend(r.released);
            all.unknown.extend(r.unknown);
        }
        Ok(all)
    }

    /// Resolves the unresolved journal entries of one origin and service (a charge's: its realm; `charge`
    /// says which). The caller holds its lease, so no other request is paying them now.
    pub(crate) async fn recover_key(&self, origin: &str, service: &str, charge: bool) -> Result<Recovery, Error> {
        let (o, s) = (origin.to_owned(), service.to_owned());
        let rows = self.store().call(move |c| journal::unresolved(c, Some((&o, &s, charge)))).await?;
        let mut out = Recovery::default();
        for row in rows {
            let hash = row.hash()?;
            self.progress(Progress::Recovering { payment_hash: hash });
            tracing::info!(payment_hash = %hash, state = %row.state, "looking up an unresolved payment");
            let status = self.payer().payment_status(&hash).await?;
            let resolved = match status {
                PaymentStatus::Succeeded(paid) => Ok(paid),
                PaymentStatus::Failed(f) => Err(Some(f)),
                PaymentStatus::Unknown => Err(None),
                PaymentStatus::InFlight => {
                    let on_event = |event: PaymentEvent| self.progress(Progress::Payment { payment_hash: hash, event });
                    match self.payer().track_payment(&hash, self.config().recovery_timeout, &on_event).await {
                        Ok(paid) => Ok(paid),
                        Err(PayError::Failed(f)) => Err(Some(f)),
                        Err(e) => {
                            self.mark_unknown(&hash, &format!("still in flight: {e}")).await;
                            out.unknown.push(hash);
                            continue;
                        }
                    }
                }
            };
            match resolved {
                Ok(paid) => {
                    self.finish(hash, paid).await?;
                    tracing::info!(payment_hash = %hash, "recovered a completed payment and its token");
                    out.completed.push(hash);
                }
                Err(failure) => {
                    let why = match &failure {
                        Some(f) => format!("found failed: {}", f.reason()),
                        None => "never reached the wallet".to_owned(),
                    };
                    let _: Option<PaymentFailure> = failure;
                    if let Some(e) = self.mark_failed(&hash, &why).await {
                        return Err(e);
                    }
                    tracing::info!(payment_hash = %hash, why, "released the reservation of a payment that did not happen");
                    out.released.push(hash);
                }
            }
        }
        Ok(out)
    }
}
