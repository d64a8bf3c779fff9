//! Answering a `402` with a `Payment` charge: pay it (or present one paid earlier and never accepted), send the
//! request with `Authorization: Payment <credential>`, and record what the server made of it.
//!
//! A charge buys one request: its credential is never stored as a token nor sent with another request. Under
//! the lease of its origin and realm (held until the response's head arrives, so that no two requests present
//! one charge), the journal is settled first ([`Client::recover_key`]): an earlier charge whose outcome is
//! unknown stops the request (nothing is paid twice), and a charge paid for the same path and never accepted
//! (the request failed after paying, or the process died) is presented instead of paying again; the server
//! accepts a re-presented charge it never spent. Otherwise the offer is checked ([`crate::offer`]) and paid
//! through the journal like a token ([`Client::pay_new`]), the echoed challenge journaled with it so that the
//! credential can be rebuilt from the journal alone.
//!
//! The server's answer: a `401`/`402` with a fresh challenge (or an `error` parameter) is its refusal, recorded
//! as `refused` and reported as [`Error::ChargeRefused`] (paid but refused: nothing more is paid in this call);
//! anything else spends the charge (`spent`), with the `Payment-Receipt` if the server sent one. If no answer
//! comes (a transport error), the charge stays `unspent`, for the next request to present.

use l402_proto::mpp::{PAYMENT_RECEIPT_HEADER, PaymentChallenge, PaymentCredential, Receipt};
use l402_proto::{Msat, PaymentHash};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{Request, StatusCode};

use crate::client::{ChargeInfo, ChargeReceipt, Client, L402Response, Payment};
use crate::config::Progress;
use crate::error::Error;
use crate::journal::{self, CHARGE_SCHEME, ChargeOutcome, NewPayment, PaidCharge, Purchase};
use crate::offer::{Charge, challenge_expiry};
use crate::refusal;
use crate::store::now_unix;

/// The lease a realm's charges are paid and presented under (apart from any L402 service's).
pub(crate) fn lease_name(realm: &str) -> String {
    format!("{CHARGE_SCHEME} {realm}")
}

/// The `Authorization` value presenting a paid charge (a secret: never logged).
fn credential(paid: &PaidCharge) -> Result<HeaderValue, Error> {
    let challenge = PaymentChallenge::parse_all([paid.challenge.as_bytes()])
        .into_iter()
        .next()
        .ok_or_else(|| Error::Store(format!("journaled challenge of charge {} does not parse", paid.payment_hash)))?;
    let mut value = HeaderValue::from_str(&PaymentCredential::charge(challenge, &paid.preimage).header_value())
        .map_err(|_| Error::Store("charge credential is not a valid header value".into()))?;
    value.set_sensitive(true);
    Ok(value)
}

/// The response's `Payment-Receipt`, if it sent one that decodes.
fn receipt_of(resp: &reqwest::Response, paid: &PaidCharge) -> Option<Receipt> {
    let value = resp.headers().get(PAYMENT_RECEIPT_HEADER)?.to_str().ok()?;
    match Receipt::decode(value.trim()) {
        Ok(r) => {
            if r.challenge_id != paid.challenge_id {
                tracing::warn!(payment_hash = %paid.payment_hash, "the receipt names another challenge id");
            }
            Some(r)
        }
        Err(e) => {
            tracing::warn!(payment_hash = %paid.payment_hash, error = %e, "a Payment-Receipt that does not decode");
            None
        }
    }
}

impl Client {
    /// Whether a paid charge of `origin`, `realm` and `path` waits to be presented.
    pub(crate) async fn has_unspent_charge(&self, origin: &str, realm: &str, path: &str) -> Result<bool, Error> {
        Ok(self.unspent(origin, realm, path).await?.is_some())
    }

    /// Answers a `402` with `charge` (see the module doc). `replay` is the request to send again; the caller
    /// has checked that it may pay over this transport.
    pub(crate) async fn charge_exchange(
        &self,
        replay: Request,
        origin: &str,
        path: &str,
        charge: Charge,
        max_price: Msat,
    ) -> Result<L402Response, Error> {
        let realm = charge.challenge.realm.clone();
        self.progress(Progress::WaitingForLease { origin: origin.to_owned(), service: realm.clone() });
        let _lease = self.leases().acquire(origin, &lease_name(&realm), self.config().lease_timeout).await?;
        let recovery = self.recover_key(origin, &realm, true).await?;
        if let Some(hash) = recovery.unknown.first() {
            return Err(Error::OutcomeUnknown {
                payment_hash: *hash,
                detail: "an earlier charge to this realm is still unresolved; not paying again".into(),
            });
        }
        let paid = match self.unspent(origin, &realm, path).await? {
            Some(paid) => {
                tracing::info!(payment_hash = %paid.payment_hash, challenge_id = %paid.challenge_id,
                    "presenting a charge paid earlier and not yet accepted");
                paid
            }
            None => self.pay_charge(origin, path, &charge, max_price).await?,
        };
        let mut request = replay;
        request.headers_mut().insert(AUTHORIZATION, credential(&paid)?);
        tracing::info!(payment_hash = %paid.payment_hash, challenge_id = %paid.challenge_id, "sending with a charge");
        // No answer: the charge stays unspent, for the next request to present.
        let resp = self.send(request).await?;
        let status = resp.status();
        let hash = paid.payment_hash;
        if matches!(status, StatusCode::PAYMENT_REQUIRED | StatusCode::UNAUTHORIZED)
            && refusal::charge_refused(resp.headers())
        {
            tracing::warn!(payment_hash = %hash, challenge_id = %paid.challenge_id, status = status.as_u16(),
                "paid charge refused by the server; kept as proof of payment");
            let code = status.as_u16();
            self.store()
                .call(move |c| journal::charge_outcome(c, &hash, ChargeOutcome::Refused(code), now_unix()))
                .await?;
            return Err(Error::ChargeRefused {
                payment_hash: hash,
                challenge_id: paid.challenge_id,
                status: code,
                paid: Msat(paid.amount.0.saturating_add(paid.fee.0)),
            });
        }
        let receipt = receipt_of(&resp, &paid);
        let kept = receipt.clone();
        self.store().call(move |c| journal::charge_outcome(c, &hash, ChargeOutcome::Spent(kept), now_unix())).await?;
        let payment = Payment {
            payment_hash: hash,
            preimage: paid.preimage,
            amount: paid.amount,
            fee: paid.fee,
            token_id: None,
            charge: Some(ChargeInfo {
                challenge_id: paid.challenge_id.clone(),
                receipt: receipt.map(|r| ChargeReceipt {
                    status: r.status,
                    method: r.method,
                    timestamp: r.timestamp,
                    reference: r.reference,
                    challenge_id: r.challenge_id,
                }),
            }),
            session_id: None,
        };
        self.done(resp, None, Some(payment)).await
    }

    /// The oldest paid charge of `origin`, `realm` and `path` not yet accepted and still presentable; those
    /// whose challenge expired meanwhile are marked `expired` on the way.
    async fn unspent(&self, origin: &str, realm: &str, path: &str) -> Result<Option<PaidCharge>, Error> {
        loop {
            let (o, r, p) = (origin.to_owned(), realm.to_owned(), path.to_owned());
            let Some(paid) = self.store().call(move |c| journal::unspent_charge(c, &o, &r, &p)).await? else {
                return Ok(None);
            };
            let expires = PaymentChallenge::parse_all([paid.challenge.as_bytes()])
                .first()
                .map(challenge_expiry)
                .transpose()
                .ok()
                .flatten()
                .flatten();
            match expires {
                Some(t) if t <= now_unix() => {
                    let hash = paid.payment_hash;
                    tracing::warn!(payment_hash = %hash, "a paid charge's challenge expired before it was accepted");
                    self.store()
                        .call(move |c| journal::charge_outcome(c, &hash, ChargeOutcome::Expired, now_unix()))
                        .await?;
                }
                _ => return Ok(Some(paid)),
            }
        }
    }

    /// Checks, journals and pays `charge`; returns it paid (and recorded `unspent`).
    async fn pay_charge(
        &self,
        origin: &str,
        path: &str,
        charge: &Charge,
        max_price: Msat,
    ) -> Result<PaidCharge, Error> {
        let checked = self.check_charge(charge, max_price).await?;
        let challenge = charge.challenge.header_value();
        let entry = NewPayment {
            payment_hash: checked.payment_hash,
            origin: origin.to_owned(),
            service: charge.challenge.realm.clone(),
            path: path.to_owned(),
            purchase: Purchase::Charge { challenge: challenge.clone(), challenge_id: charge.challenge.id.clone() },
            invoice: charge.request.method_details.invoice.trim().to_owned(),
            amount: checked.amount,
            fee_limit: self.config().initial_fee_limit(checked.amount),
        };
        tracing::info!(payment_hash = %checked.payment_hash, challenge_id = %charge.challenge.id, "paying a charge");
        let paid = self.pay_new(entry, checked.expires_at).await?;
        let hash: PaymentHash = checked.payment_hash;
        self.finish(hash, paid).await?;
        Ok(PaidCharge {
            payment_hash: hash,
            challenge,
            challenge_id: charge.challenge.id.clone(),
            preimage: paid.preimage,
            amount: paid.amount,
            fee: paid.fee,
        })
    }
}
