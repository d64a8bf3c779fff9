//! A client error as a Python exception: an instance of the class of `l402.errors` named for its reason (one
//! class per reason, all under `L402Error`), made with the message and keyword arguments that carry what
//! `l402 fetch`'s exit code carries: `reason`, `exit_code`, and the error's typed fields. No field holds a
//! secret.

use l402_client::Error;
use l402_proto::InvoiceError;
use l402_proto::TokenId;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// A client error, with the token a request had paid for (or used) before it failed, if any: a body too large
/// or a server gone silent after paying leaves that token stored.
pub(crate) struct Failure {
    pub(crate) error: Error,
    pub(crate) token_id: Option<TokenId>,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Self { error, token_id: None }
    }
}

/// The class name in `l402.errors` for an error.
fn class_name(e: &Error) -> &'static str {
    match e {
        Error::Request(_) => "RequestError",
        Error::Http(_) => "HttpError",
        Error::Redirect(_) => "RedirectError",
        Error::Challenge(_) => "ChallengeError",
        Error::Invoice(InvoiceError::OverCap { .. }) => "PriceOverCap",
        Error::Invoice(InvoiceError::NoAmount) => "AmountlessInvoice",
        Error::Invoice(InvoiceError::WrongNetwork { .. }) => "WrongNetwork",
        Error::Invoice(InvoiceError::Expired { .. }) => "InvoiceExpired",
        Error::Invoice(InvoiceError::HashMismatch { .. }) => "PaymentHashMismatch",
        Error::Invoice(_) => "InvoiceInvalid",
        Error::AmountMismatch { .. } => "AmountMismatch",
        Error::Budget { .. } => "BudgetExhausted",
        Error::NotReplayable => "NotReplayable",
        Error::PlainHttp { .. } => "PlainHttp",
        Error::AddressRefused(_) => "AddressRefused",
        Error::PaymentFailed { .. } => "PaymentFailed",
        Error::PaymentRejected { .. } => "PaymentRejected",
        Error::OutcomeUnknown { .. } => "OutcomeUnknown",
        Error::PaidButRefused { .. } => "PaidButRefused",
        Error::ChargeRefused { .. } => "ChargeRefused",
        Error::BodyTooLarge { .. } => "BodyTooLarge",
        Error::ReadTimeout(_) => "ReadTimeout",
        Error::Wallet(_) => "WalletError",
        Error::Store(_) => "StoreError",
        Error::LeaseTimeout(_) => "LeaseTimeout",
        _ => "L402Error",
    }
}

/// The typed fields of an error, as keyword arguments.
fn fields(e: &Error, kw: &Bound<'_, PyDict>) -> PyResult<()> {
    match e {
        Error::Invoice(InvoiceError::OverCap { amount, cap }) => {
            kw.set_item("price_msat", amount.0)?;
            kw.set_item("cap_msat", cap.0)?;
        }
        Error::Invoice(InvoiceError::WrongNetwork { expected, found }) => {
            kw.set_item("expected", expected)?;
            kw.set_item("found", found)?;
        }
        Error::Invoice(InvoiceError::Expired { expires_at, margin_secs }) => {
            kw.set_item("expires_at", expires_at)?;
            kw.set_item("margin_secs", margin_secs)?;
        }
        Error::Invoice(InvoiceError::HashMismatch { expected, found }) => {
            kw.set_item("expected", expected.to_hex())?;
            kw.set_item("found", found.to_hex())?;
        }
        Error::Budget { limit, limit_msat, spent_msat, needed_msat } => {
            kw.set_item("limit", limit.name())?;
            kw.set_item("limit_msat", limit_msat)?;
            kw.set_item("spent_msat", spent_msat)?;
            kw.set_item("needed_msat", needed_msat)?;
        }
        Error::PlainHttp { origin } => kw.set_item("origin", origin)?,
        Error::AddressRefused(r) => {
            kw.set_item("host", &r.host)?;
            kw.set_item("address", r.address.to_string())?;
            kw.set_item("address_class", r.class)?;
        }
        Error::PaymentFailed { payment_hash, failure } => {
            kw.set_item("payment_hash", payment_hash.to_hex())?;
            kw.set_item("failure", failure.to_string())?;
        }
        Error::PaymentRejected { payment_hash, reason } => {
            kw.set_item("payment_hash", payment_hash.to_hex())?;
            kw.set_item("failure", reason)?;
        }
        Error::OutcomeUnknown { payment_hash, .. } => kw.set_item("payment_hash", payment_hash.to_hex())?,
        Error::PaidButRefused { token_id, status, paid } => {
            kw.set_item("token_id", token_id.to_hex())?;
            kw.set_item("status", status)?;
            kw.set_item("paid_msat", paid.0)?;
        }
        Error::ChargeRefused { payment_hash, challenge_id, status, paid } => {
            kw.set_item("payment_hash", payment_hash.to_hex())?;
            kw.set_item("challenge_id", challenge_id)?;
            kw.set_item("status", status)?;
            kw.set_item("paid_msat", paid.0)?;
        }
        Error::AmountMismatch { stated, invoice } => {
            kw.set_item("stated_msat", stated.0)?;
            kw.set_item("invoice_msat", invoice.0)?;
        }
        Error::BodyTooLarge { limit } => kw.set_item("limit", limit)?,
        Error::LeaseTimeout(what) => kw.set_item("service", what)?,
        _ => {}
    }
    Ok(())
}

/// The Python exception for a failure.
pub(crate) fn to_pyerr(py: Python<'_>, f: &Failure) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let module = py.import("l402.errors")?;
        let class = module.getattr(class_name(&f.error))?;
        let kw = PyDict::new(py);
        kw.set_item("reason", f.error.reason())?;
        kw.set_item("exit_code", f.error.exit_code())?;
        if let Some(t) = f.token_id {
            kw.set_item("token_id", t.to_hex())?;
        }
        fields(&f.error, &kw)?;
        let instance = class.call((f.error.to_string(),), Some(&kw))?;
        Ok(PyErr::from_value(instance))
    };
    // A failure to build the exception (the module missing) is raised instead, with the original message.
    build().unwrap_or_else(|e| {
        pyo3::exceptions::PyRuntimeError::new_err(format!("{} (and l402.errors failed: {e})", f.error))
    })
}
