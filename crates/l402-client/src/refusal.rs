//! Telling the paywall's refusal of a token from anything else a server answers with `401` or `402`.
//!
//! A paid token is marked refused (kept, with its preimage; no more money for that service) only when the L402
//! paywall itself says no: a `WWW-Authenticate` challenge of scheme `L402` or `LSAT` with an `error` parameter
//! (`L402 error="invalid_credential"`), or a `402` with a fresh L402 challenge for a service the token grants.
//! Any other `401` or `402` (the API behind the paywall asking for credentials of its own, a `402` without a
//! challenge) is the caller's response: it is returned as it is, and the token stays valid.
//!
//! A metered bundle that is used up is not refused: the paywall answers its token with a fresh challenge for
//! the same service and says the balance left (`X-L402-Balance-Msat`); the token is spent, and the next
//! bundle may be bought (within the budgets, like any payment).
//!
//! A `Payment` charge credential is refused when a `401`/`402` answered to it carries a fresh challenge of
//! either scheme, or an `error` parameter on an `L402`, `LSAT` or `Payment` challenge ([`charge_refused`]).

use l402_proto::Challenge;
use l402_proto::mpp::PaymentChallenge;
use reqwest::header::{HeaderMap, HeaderValue, WWW_AUTHENTICATE};

use crate::tokens::{StoredToken, TokenScope};

/// What a `401`/`402` answered to a token means for that token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The paywall refused it.
    Refused,
    /// A metered bundle used up: the balance left (too little for the request), msat.
    Exhausted(u64),
    /// The paywall asks for a token of another service (this path costs something else).
    OtherService,
    /// Not the paywall's word on the token: the response goes to the caller, the token stays valid.
    NotThePaywall,
}

/// Judges a `401`/`402` answered to `token`; `challenge` is the response's parsed L402 challenge, if any.
pub(crate) fn judge(token: &StoredToken, headers: &HeaderMap, challenge: Option<&Challenge>) -> Verdict {
    if headers.get_all(WWW_AUTHENTICATE).iter().any(|v| paywall_error(v, false)) {
        return Verdict::Refused;
    }
    match challenge {
        Some(c) if token.grants(TokenScope::of(&c.macaroon).service()) => match balance(headers) {
            Some(left) => Verdict::Exhausted(left),
            None => Verdict::Refused,
        },
        Some(_) => Verdict::OtherService,
        None => Verdict::NotThePaywall,
    }
}

/// A metered service's `X-L402-Balance-Msat` (a whole number of msat), if the response has one.
pub(crate) fn balance(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get("x-l402-balance-msat")?.to_str().ok()?;
    if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// Whether a `401`/`402` answered to a charge credential is the paywall's refusal of it (module doc).
pub(crate) fn charge_refused(headers: &HeaderMap) -> bool {
    let values = || headers.get_all(WWW_AUTHENTICATE).iter().map(HeaderValue::as_bytes);
    headers.get_all(WWW_AUTHENTICATE).iter().any(|v| paywall_error(v, true))
        || !PaymentChallenge::parse_all(values()).is_empty()
        || Challenge::parse(values()).is_ok()
}

/// Splits a header value on commas outside quoted strings.
fn split_items(s: &str) -> Vec<&str> {
    let (mut items, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                items.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&s[start..]);
    items
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Whether a `WWW-Authenticate` value holds an `L402` or `LSAT` (or, with `payment`, a `Payment`) challenge
/// with an `error` parameter. Each comma-separated item either starts a challenge (`scheme [param]`) or is one
/// more parameter of the current one.
fn paywall_error(value: &HeaderValue, payment: bool) -> bool {
    let Ok(text) = value.to_str() else { return false };
    let mut in_l402 = false;
    for item in split_items(text) {
        let item = item.trim_start_matches([' ', '\t']);
        let name_end = item.find(|c| !is_tchar(c)).unwrap_or(item.len());
        let (name, after) = item.split_at(name_end);
        let param = if after.trim_start_matches([' ', '\t']).starts_with('=') {
            name
        } else {
            // A new challenge: `name` is its scheme, and what follows may be its first parameter.
            in_l402 = name.eq_ignore_ascii_case("L402")
                || name.eq_ignore_ascii_case("LSAT")
                || (payment && name.eq_ignore_ascii_case("Payment"));
            let rest = after.trim_start_matches([' ', '\t']);
            let end = rest.find(|c| !is_tchar(c)).unwrap_or(rest.len());
            if rest[end..].trim_start_matches([' ', '\t']).starts_with('=') { &rest[..end] } else { "" }
        };
        if in_l402 && param.eq_ignore_ascii_case("error") {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_balance_header_is_read_only_as_a_whole_number_of_msat() {
        let read = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("x-l402-balance-msat", HeaderValue::from_str(v).expect("value"));
            balance(&h)
        };
        assert_eq!(read("0"), Some(0));
        assert_eq!(read("1998"), Some(1998));
        assert_eq!(read("18446744073709551615"), Some(u64::MAX));
        for bad in ["", "-1", "1.5", " 7", "7 ", "0x10", "18446744073709551616", "99999999999999999999999"] {
            assert_eq!(read(bad), None, "{bad:?}");
        }
        assert_eq!(balance(&HeaderMap::new()), None);
    }

    #[test]
    fn only_an_l402_challenge_with_an_error_parameter_is_the_paywall_refusing() {
        let yes = [
            r#"L402 error="invalid_credential""#,
            r#"LSAT error="invalid_credential""#,
            r#"l402 ERROR = "expired""#,
            r#"Bearer realm="api", L402 error="invalid_credential""#,
            r#"L402 macaroon="AgE=", invoice="lnbcrt1", error="x""#,
            r#"L402 error=invalid_credential"#,
        ];
        let no = [
            r#"Bearer realm="api", error="invalid_token""#,
            r#"Basic realm="L402 error=x""#,
            r#"L402 macaroon="AgE=", invoice="lnbc error=1""#,
            r#"Bearer error="invalid_token", L402 macaroon="AgE=", invoice="lnbcrt1""#,
            "L402",
            "",
        ];
        for v in yes {
            assert!(paywall_error(&HeaderValue::from_str(v).expect("value"), false), "{v}");
        }
        for v in no {
            assert!(!paywall_error(&HeaderValue::from_str(v).expect("value"), false), "{v}");
        }
        let payment = HeaderValue::from_static(r#"Payment error="invalid_credential""#);
        assert!(!paywall_error(&payment, false), "a Payment error is not a word on an L402 token");
        assert!(paywall_error(&payment, true));
    }
}
