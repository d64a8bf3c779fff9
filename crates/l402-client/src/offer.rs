//! The offers of a `402`, the choice of the one to pay, and the checks made on a `Payment` charge before paying.
//!
//! A `402` may offer an L402 token (a macaroon and its invoice: reusable until a caveat says no) and a `Payment`
//! scheme Lightning charge (a challenge whose request holds an invoice: one payment buys one request). Aperture
//! with MPP on sends both: `LSAT`, `L402`, then `Payment ... intent="charge"` with an invoice of its own. Exactly
//! one offer of a `402` is paid: the preferred scheme's ([`PreferScheme`]) if it is usable, else the other's. An
//! offer is usable if it parses: an L402 macaroon and invoice; a `Payment` challenge of method `lightning` and
//! intent `charge` whose request decodes (the first such line, as lnget takes). The choice comes before the
//! checks: an offer refused by a check (price, network, hash, amount, expiry, budget) is refused, and the other
//! offer is not paid instead: a server whose offer fails a check is not one to pay at all.
//!
//! A charge is refused before paying, with the error an L402 invoice would get for the same fault, unless: its
//! currency is `sat`; its stated `network` is the wallet's ([`InvoiceError::WrongNetwork`]); its invoice parses,
//! is for the wallet's network, pays the stated `paymentHash` ([`InvoiceError::HashMismatch`]), has an amount,
//! does not expire within the margin and costs no more than the cap ([`l402_proto::invoice::check_invoice`]); the
//! invoice's amount is the stated `amount` ([`Error::AmountMismatch`]); and the challenge's `expires`, if it has
//! one, parses and is beyond the margin too ([`InvoiceError::Expired`], with the challenge's expiry).

use std::time::Duration;

use l402_proto::lightning_invoice::Currency;
use l402_proto::mpp::{ChargeRequest, PaymentChallenge, SessionRequest};
use l402_proto::{Challenge, ChallengeError, InvoiceError, Msat, PaymentHash};
use reqwest::header::{HeaderMap, HeaderValue, WWW_AUTHENTICATE};

use crate::client::Client;
use crate::config::PreferScheme;
use crate::error::Error;
use crate::store::now_unix;

/// A `Payment` Lightning charge offer, its request decoded.
#[derive(Clone, Debug)]
pub(crate) struct Charge {
    pub(crate) challenge: PaymentChallenge,
    pub(crate) request: ChargeRequest,
}

/// A `Payment` Lightning session offer, its request decoded.
#[derive(Clone, Debug)]
pub(crate) struct SessionOffer {
    pub(crate) challenge: PaymentChallenge,
    pub(crate) request: SessionRequest,
}

impl SessionOffer {
    /// The service a session of this offer is kept for: the request's description (our proxy: the service's
    /// name), else the challenge's realm.
    pub(crate) fn service(&self) -> String {
        match self.request.description.as_deref().map(str::trim) {
            Some(d) if !d.is_empty() => d.chars().take(128).collect(),
            _ => self.challenge.realm.clone(),
        }
    }
}

/// The offer chosen.
#[derive(Debug)]
pub(crate) enum Offer {
    L402(Challenge),
    Charge(Box<Charge>),
    Session(Box<SessionOffer>),
}

/// What a `402` offers.
#[derive(Debug)]
pub(crate) struct Offers {
    /// The L402 challenge (L402 over LSAT), or why there is none.
    pub(crate) l402: Result<Challenge, ChallengeError>,
    /// The first usable Lightning charge, or why the first charge line is not usable; `None` if no `Payment`
    /// challenge of method `lightning` and intent `charge` was sent.
    pub(crate) charge: Option<Result<Charge, String>>,
    /// The first usable Lightning session offer (intent `session`), or why the first such line is not usable.
    pub(crate) session: Option<Result<SessionOffer, String>>,
}

fn values(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers.get_all(WWW_AUTHENTICATE).iter().map(HeaderValue::as_bytes)
}

impl Offers {
    /// Reads the offers of a response's `WWW-Authenticate` lines.
    pub(crate) fn read(headers: &HeaderMap) -> Self {
        let l402 = Challenge::parse(values(headers));
        let mut charge = None;
        let mut session = None;
        for c in PaymentChallenge::parse_all(values(headers)) {
            if !c.method.eq_ignore_ascii_case("lightning") {
                continue;
            }
            if c.intent.eq_ignore_ascii_case("session") {
                if !matches!(session, Some(Ok(_))) {
                    match SessionRequest::decode(&c.request) {
                        Ok(request) => session = Some(Ok(SessionOffer { challenge: c, request })),
                        Err(e) => {
                            session.get_or_insert(Err(format!("Payment session request: {e}")));
                        }
                    }
                }
            } else if c.intent.eq_ignore_ascii_case("charge") && !matches!(charge, Some(Ok(_))) {
                match ChargeRequest::decode(&c.request) {
                    Ok(request) => charge = Some(Ok(Charge { challenge: c, request })),
                    Err(e) => {
                        charge.get_or_insert(Err(format!("Payment charge request: {e}")));
                    }
                }
            }
        }
        Self { l402, charge, session }
    }

    /// The usable charge, if any.
    pub(crate) fn usable_charge(&self) -> Option<&Charge> {
        self.charge.as_ref().and_then(|c| c.as_ref().ok())
    }

    /// The usable session offer, if any.
    pub(crate) fn usable_session(&self) -> Option<&SessionOffer> {
        self.session.as_ref().and_then(|c| c.as_ref().ok())
    }

    /// The schemes offered usably, in the order of preference by default (`L402`, `Payment`, then `Session`
    /// for a `Payment` session).
    pub(crate) fn offered(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.l402.is_ok() {
            v.push("L402");
        }
        if self.usable_charge().is_some() {
            v.push("Payment");
        }
        if self.usable_session().is_some() {
            v.push("Session");
        }
        v
    }

    /// The offer to answer: the preferred one if usable, else L402, else the charge, else the session, else why
    /// none is.
    pub(crate) fn choose(self, prefer: PreferScheme) -> Result<Offer, Error> {
        let Offers { l402, charge, session } = self;
        let (charge, charge_error) = match charge {
            Some(Ok(c)) => (Some(c), None),
            Some(Err(e)) => (None, Some(e)),
            None => (None, None),
        };
        let (session, session_error) = match session {
            Some(Ok(c)) => (Some(c), None),
            Some(Err(e)) => (None, Some(e)),
            None => (None, None),
        };
        match (prefer, l402, charge, session) {
            (PreferScheme::Session, _, _, Some(s)) => Ok(Offer::Session(Box::new(s))),
            (PreferScheme::Payment, _, Some(c), _) | (_, Err(_), Some(c), _) => Ok(Offer::Charge(Box::new(c))),
            (_, Ok(l), _, _) => Ok(Offer::L402(l)),
            (_, Err(_), None, Some(s)) => Ok(Offer::Session(Box::new(s))),
            (_, Err(e), None, None) => Err(Error::Challenge(match (e, charge_error.or(session_error)) {
                (ChallengeError::NotFound, Some(c)) => c,
                (ChallengeError::NotFound, None) => {
                    "no L402, LSAT or Payment (lightning charge or session) challenge in WWW-Authenticate".to_owned()
                }
                (e, _) => e.to_string(),
            })),
        }
    }
}

/// The network of a charge request's `network` name.
pub(crate) fn network_of(name: &str) -> Option<Currency> {
    match name.to_ascii_lowercase().as_str() {
        "mainnet" | "bitcoin" => Some(Currency::Bitcoin),
        "testnet" | "testnet3" | "testnet4" => Some(Currency::BitcoinTestnet),
        "regtest" => Some(Currency::Regtest),
        "signet" => Some(Currency::Signet),
        "simnet" => Some(Currency::Simnet),
        _ => None,
    }
}

/// What a charge that passed the checks will cost.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CheckedCharge {
    pub(crate) amount: Msat,
    pub(crate) payment_hash: PaymentHash,
    /// The earlier of the invoice's and the challenge's expiry (Unix seconds).
    pub(crate) expires_at: u64,
}

/// The challenge's `expires` as Unix seconds (`None` if it has none; an error if it does not parse).
pub(crate) fn challenge_expiry(challenge: &PaymentChallenge) -> Result<Option<u64>, Error> {
    match &challenge.expires {
        None => Ok(None),
        Some(s) => l402_proto::rfc3339::parse(s)
            .map(Some)
            .ok_or_else(|| Error::Challenge("the Payment challenge's expires is not an RFC 3339 time".into())),
    }
}

impl Client {
    /// The checks of the module doc, with `max_price` as the cap.
    pub(crate) async fn check_charge(&self, charge: &Charge, max_price: Msat) -> Result<CheckedCharge, Error> {
        let request = &charge.request;
        if request.currency != "sat" {
            return Err(Error::Challenge(format!(
                "the charge's currency is {:?}, not sat",
                request.currency.chars().take(16).collect::<String>()
            )));
        }
        let wallet = self.network().await?;
        let policy = l402_proto::InvoicePolicy {
            currency: wallet.clone(),
            max_amount: max_price,
            expiry_margin: self.config().expiry_margin,
        };
        let stated_hash = PaymentHash(request.method_details.payment_hash);
        let now = now_unix();
        let (_, info) = l402_proto::invoice::check_invoice(
            &request.method_details.invoice,
            &stated_hash,
            &policy,
            Duration::from_secs(now),
        )?;
        let network = &request.method_details.network;
        if network_of(network).as_ref() != Some(&wallet) {
            return Err(Error::Invoice(InvoiceError::WrongNetwork {
                expected: l402_proto::invoice::network_name(&wallet).to_owned(),
                found: network.chars().take(16).collect(),
            }));
        }
        let amount = info.amount.ok_or(InvoiceError::NoAmount)?;
        let stated = request.amount.checked_mul(1000).map(Msat);
        if stated != Some(amount) {
            return Err(Error::AmountMismatch { stated: stated.unwrap_or(Msat(u64::MAX)), invoice: amount });
        }
        let mut expires_at = info.expires_at;
        if let Some(t) = challenge_expiry(&charge.challenge)? {
            let margin = self.config().expiry_margin.as_secs();
            if now.saturating_add(margin) >= t {
                return Err(Error::Invoice(InvoiceError::Expired { expires_at: t, margin_secs: margin }));
            }
            expires_at = expires_at.min(t);
        }
        Ok(CheckedCharge { amount, payment_hash: stated_hash, expires_at })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_preference_parses_its_names() {
        assert_eq!(PreferScheme::from_name("payment"), Some(PreferScheme::Payment));
        assert_eq!(PreferScheme::from_name("L402"), Some(PreferScheme::L402));
        assert_eq!(PreferScheme::from_name("lsat"), None);
        assert_eq!(PreferScheme::default(), PreferScheme::L402);
    }

    #[test]
    fn network_names_map_to_currencies() {
        assert_eq!(network_of("regtest"), Some(Currency::Regtest));
        assert_eq!(network_of("mainnet"), Some(Currency::Bitcoin));
        assert_eq!(network_of("signet"), Some(Currency::Signet));
        assert_eq!(network_of("testnet"), Some(Currency::BitcoinTestnet));
        assert_eq!(network_of("liquid"), None);
    }
}
