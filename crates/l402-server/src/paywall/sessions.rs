//! The paywall's side of the session intent ([`crate::session`] says what each action does).

use l402_lightning::{InvoiceRequest, PayError};
use l402_proto::lightning_invoice::Currency;
use l402_proto::mpp::{PaymentCredential, SessionAction};
use l402_proto::{Msat, PaymentHash};

use super::{Authorized, Paywall, Refusal};
use crate::charge::{PaymentScheme, price_sat};
use crate::metrics::LightningOp;
use crate::pricing::Charge;
use crate::session::{
    self, CLOSE_RETRY_AFTER, RefundStatus, SessionClosed, SessionOffer, SessionPaid, SessionRefusal, SessionSpec,
};
use crate::store::{NewSession, SessionClose, SessionCredit, SessionDebit, SessionOpen, SessionState};

fn refused(r: SessionRefusal) -> Refusal {
    Refusal::Session(r)
}

/// The network of the invoice a session challenge carries (its deposit's), which the return invoice must share.
fn deposit_currency(request: &l402_proto::mpp::SessionRequest) -> Result<Currency, SessionRefusal> {
    let bolt11 =
        request.deposit_invoice.as_deref().ok_or_else(|| SessionRefusal::Request("no depositInvoice".into()))?;
    l402_proto::invoice::decode_invoice(bolt11)
        .map(|(_, info)| info.currency)
        .map_err(|e| SessionRefusal::Request(format!("depositInvoice: {e}")))
}

fn not_open(state: Option<SessionState>) -> SessionRefusal {
    match state {
        None => SessionRefusal::UnknownSession,
        Some(_) => SessionRefusal::Closed,
    }
}

impl Paywall {
    /// A fresh session challenge: a deposit invoice of its own, nothing written anywhere.
    pub(super) async fn offer_session(
        &self,
        scheme: &PaymentScheme,
        spec: &SessionSpec,
        charge: &Charge,
    ) -> Result<SessionOffer, Refusal> {
        let name = &charge.service.name;
        let deposit_sat = price_sat(spec.deposit);
        let memo = format!("Session deposit for {name}");
        let request = InvoiceRequest { amount: Msat::from_sat(deposit_sat), memo, expiry: scheme.expiry };
        let invoice = self.priced_invoice(&request).await?;
        let encoded =
            session::request_json(price_sat(charge.price), deposit_sat, &invoice.bolt11, name, &invoice.payment_hash);
        let expires = l402_proto::rfc3339::format_utc(self.now().saturating_add(scheme.expiry.as_secs()));
        let challenge = session::challenge(&scheme.secrets[0], &scheme.realm, &encoded, &expires);
        tracing::debug!(challenge_id = %challenge.id, service = %name, "session offered");
        Ok(SessionOffer {
            header: challenge.header_value(),
            payment_hash: invoice.payment_hash,
            challenge_id: challenge.id.clone(),
        })
    }

    /// Whether the node says this invoice is settled (a node failure: 503).
    async fn session_settled(&self, hash: &PaymentHash) -> Result<(), Refusal> {
        let state = self.issuer.lookup_invoice(hash).await;
        if crate::charge::settled(state).map_err(|e| self.lightning(LightningOp::LookupInvoice, e))? {
            Ok(())
        } else {
            Err(refused(SessionRefusal::Unsettled))
        }
    }

    /// Checks a session credential and acts on it.
    pub(super) async fn check_session(
        &self,
        scheme: &PaymentScheme,
        cred: &PaymentCredential,
        charge: &Charge,
    ) -> Result<Authorized, Refusal> {
        let now = self.now();
        let service = charge.service.name.as_str();
        let price = Msat::from_sat(price_sat(charge.price));
        let pre = session::precheck(&scheme.secrets, cred, service).map_err(refused)?;
        let cid = cred.challenge.id.as_str();
        match &pre.action {
            SessionAction::Open { preimage, return_invoice } => {
                let id = PaymentHash(pre.request.payment_hash);
                session::preimage_for(preimage, &id).map_err(refused)?;
                let currency = deposit_currency(&pre.request).map_err(refused)?;
                session::check_return_invoice(return_invoice, &currency, now).map_err(refused)?;
                let deposit = Msat::from_sat(
                    pre.request
                        .deposit_amount
                        .ok_or_else(|| refused(SessionRefusal::Request("no depositAmount".into())))?,
                );
                self.session_settled(&id).await?;
                let new = NewSession {
                    id,
                    service: service.to_owned(),
                    deposit,
                    return_invoice: return_invoice.clone(),
                    at: now,
                };
                match self.store.open_session(&new).await? {
                    SessionOpen::Opened => {
                        self.metrics.charge_paid(service, deposit);
                        tracing::info!(session = %id, service, deposit = %deposit, "session opened");
                    }
                    SessionOpen::Exists => {}
                    SessionOpen::Foreign => return Err(refused(SessionRefusal::Foreign)),
                }
                self.debit_session(id, service, price, now, "open", cid).await
            }
            SessionAction::Bearer { session_id, preimage } => {
                let id = PaymentHash(session::hex32(session_id, "sessionId").map_err(refused)?);
                session::preimage_for(preimage, &id).map_err(refused)?;
                self.debit_session(id, service, price, now, "bearer", cid).await
            }
            SessionAction::TopUp { session_id, top_up_preimage } => {
                let id = PaymentHash(session::hex32(session_id, "sessionId").map_err(refused)?);
                let hash = PaymentHash(pre.request.payment_hash);
                session::preimage_for(top_up_preimage, &hash).map_err(refused)?;
                let amount = Msat::from_sat(
                    pre.request
                        .deposit_amount
                        .ok_or_else(|| refused(SessionRefusal::Request("no depositAmount".into())))?,
                );
                self.session_settled(&hash).await?;
                match self.store.credit_session(&id, &hash, amount, now).await? {
                    SessionCredit::Applied(balance) => {
                        self.metrics.charge_paid(service, amount);
                        tracing::info!(session = %id, service, amount = %amount, balance = %balance, "session topped up");
                    }
                    SessionCredit::Replayed(_) => {}
                    SessionCredit::Foreign => return Err(refused(SessionRefusal::Foreign)),
                    SessionCredit::NotOpen(state) => return Err(refused(not_open(state))),
                }
                self.debit_session(id, service, price, now, "topUp", cid).await
            }
            SessionAction::Close { session_id, preimage } => {
                let id = PaymentHash(session::hex32(session_id, "sessionId").map_err(refused)?);
                session::preimage_for(preimage, &id).map_err(refused)?;
                let replacement = match cred.payload.get("returnInvoice") {
                    None | Some(serde_json::Value::Null) => None,
                    Some(serde_json::Value::String(s)) => {
                        let currency = deposit_currency(&pre.request).map_err(refused)?;
                        session::check_return_invoice(s, &currency, now).map_err(refused)?;
                        Some(s.as_str())
                    }
                    Some(_) => return Err(refused(SessionRefusal::Request("returnInvoice is not a string".into()))),
                };
                self.close_session(id, service, replacement, now).await.map(Authorized::SessionClosed)
            }
        }
    }

    async fn debit_session(
        &self,
        id: PaymentHash,
        service: &str,
        price: Msat,
        now: u64,
        action: &'static str,
        challenge_id: &str,
    ) -> Result<Authorized, Refusal> {
        match self.store.debit_session(&id, service, price, now).await? {
            SessionDebit::Debited(balance) => Ok(Authorized::Session(SessionPaid {
                id,
                service: service.to_owned(),
                debited: price,
                balance,
                action,
                receipt: session::receipt(now, &id, challenge_id, None),
            })),
            SessionDebit::Insufficient(balance) => Err(refused(SessionRefusal::Insufficient { balance, price })),
            SessionDebit::NotOpen(state) => Err(refused(not_open(state))),
        }
    }

    /// Closes a session and pays its refund.
    async fn close_session(
        &self,
        id: PaymentHash,
        service: &str,
        replacement: Option<&str>,
        now: u64,
    ) -> Result<SessionClosed, Refusal> {
        let info = self.store.session(&id).await?.filter(|s| s.service == service);
        let Some(info) = info else { return Err(refused(SessionRefusal::UnknownSession)) };
        let closed = |refund: Msat, status: RefundStatus| SessionClosed {
            id,
            refund,
            status,
            receipt: session::receipt(now, &id, "", Some((refund, status))),
        };
        match info.state {
            // Closed before: the same answer again (a client whose answer was lost learns it).
            SessionState::Closed => {
                let status = if info.refunded.0 == 0 { RefundStatus::Skipped } else { RefundStatus::Succeeded };
                return Ok(closed(info.refunded, status));
            }
            SessionState::Open | SessionState::RefundFailed | SessionState::Closing => {}
        }
        if info.state == SessionState::Open && info.balance.0 > 0 && self.refunder.is_none() {
            return Err(Refusal::NoRefunder);
        }
        let stale_before = now.saturating_sub(CLOSE_RETRY_AFTER.as_secs());
        let (refund, bolt11) = match self.store.begin_close(&id, replacement, now, stale_before).await? {
            SessionClose::Refund { refund, return_invoice } => (refund, return_invoice),
            SessionClose::NotClosable(Some(SessionState::Closing)) => {
                return Err(refused(SessionRefusal::CloseUnderWay));
            }
            SessionClose::NotClosable(Some(SessionState::Closed)) => {
                let refunded = self.store.session(&id).await?.map_or(Msat(0), |s| s.refunded);
                let status = if refunded.0 == 0 { RefundStatus::Skipped } else { RefundStatus::Succeeded };
                return Ok(closed(refunded, status));
            }
            SessionClose::NotClosable(state) => return Err(refused(not_open(state))),
        };
        if refund.0 == 0 {
            self.store.finish_close(&id, Some(Msat(0)), now).await?;
            tracing::info!(session = %id, service, "session closed, nothing to refund");
            return Ok(closed(refund, RefundStatus::Skipped));
        }
        let Some(refunder) = &self.refunder else {
            self.store.finish_close(&id, None, now).await?;
            return Err(Refusal::NoRefunder);
        };
        let hash = match l402_proto::invoice::decode_invoice(&bolt11) {
            Ok((_, info)) => info.payment_hash,
            Err(e) => {
                // Checked when stored; a refund to it cannot be tried. Owed, and a close with a fresh
                // returnInvoice pays it.
                self.store.finish_close(&id, None, now).await?;
                tracing::warn!(session = %id, service, error = %e, "session's return invoice does not decode");
                return Ok(closed(refund, RefundStatus::Failed));
            }
        };
        let result = refunder.refund(&bolt11, hash, refund, session::refund_max_fee(refund)).await;
        let at = self.now();
        match result {
            Ok(()) => {
                self.store.finish_close(&id, Some(refund), at).await?;
                tracing::info!(session = %id, service, refund = %refund, "session closed and refunded");
                Ok(closed(refund, RefundStatus::Succeeded))
            }
            Err(PayError::OutcomeUnknown(e)) => {
                tracing::warn!(session = %id, service, refund = %refund, error = %e, "session refund outcome unknown");
                Ok(closed(refund, RefundStatus::Pending))
            }
            Err(e) => {
                self.store.finish_close(&id, None, at).await?;
                tracing::warn!(session = %id, service, refund = %refund, error = %e, "session refund failed; still owed");
                Ok(closed(refund, RefundStatus::Failed))
            }
        }
    }
}
