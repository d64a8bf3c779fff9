//! The answers the paywall gives instead of the inner service's: a 402 challenge, a 401/403 refusal, a 503.
//!
//! HTTP: the status, a small JSON body naming the reason, `Cache-Control: no-store`, and CORS exposing
//! `WWW-Authenticate`. gRPC (`content-type: application/grpc*`): HTTP 200 with an empty body and the status in
//! the headers (a trailers-only response), `grpc-status: 13` (INTERNAL, as Aperture sends) for payment
//! required, 16 for a refused credential, 7 for forbidden, 14 when unavailable.

use bytes::Bytes;
use http::header::{ACCESS_CONTROL_EXPOSE_HEADERS, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::Full;

use crate::paywall::{Offers, Refusal};

/// The header a 2xx paid with a `Payment` charge carries.
pub const PAYMENT_RECEIPT: http::HeaderName = http::HeaderName::from_static("payment-receipt");

/// Whether a request is gRPC.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| ct.starts_with("application/grpc"))
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a grpc-message (printable ASCII except `%` passes).
fn grpc_message(s: &str) -> HeaderValue {
    let mut out = String::new();
    for b in s.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static("refused"))
}

fn base(status: StatusCode, grpc: bool) -> http::response::Builder {
    let b = Response::builder()
        .header(CACHE_CONTROL, "no-store")
        .header(ACCESS_CONTROL_EXPOSE_HEADERS, "WWW-Authenticate, Payment-Receipt");
    if grpc { b.status(StatusCode::OK).header(CONTENT_TYPE, "application/grpc") } else { b.status(status) }
}

fn finish(builder: http::response::Builder, body: Bytes) -> Response<Full<Bytes>> {
    builder.body(Full::new(body)).unwrap_or_else(|_| {
        let mut r = Response::new(Full::new(Bytes::from_static(b"internal error")));
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

/// A 402 with the offers: the `LSAT` and `L402` lines of a token, then the `Payment` line of a charge. With
/// a `Payment` line the body is the problem+json Aperture sends; without, a small JSON naming the service, the
/// price and the token id.
pub fn challenge(offers: &Offers, service: &str, grpc: bool) -> Response<Full<Bytes>> {
    let mut b = base(StatusCode::PAYMENT_REQUIRED, grpc);
    for line in offers.header_values() {
        if let Ok(v) = HeaderValue::from_str(&line) {
            b = b.header(WWW_AUTHENTICATE, v);
        }
    }
    if grpc {
        let b = b.header("grpc-status", "13").header("grpc-message", "payment required");
        return finish(b, Bytes::new());
    }
    match &offers.l402 {
        Some(minted) if offers.payment.is_none() && offers.session.is_none() => {
            let body = format!(
                "{{\"error\":\"payment required\",\"service\":\"{}\",\"price_msat\":{},\"token_id\":\"{}\"}}",
                json_escape(service),
                minted.price.0,
                minted.token_id
            );
            finish(b.header(CONTENT_TYPE, "application/json"), Bytes::from(body))
        }
        _ => finish(
            b.header(CONTENT_TYPE, "application/problem+json"),
            Bytes::from_static(l402_proto::mpp::PROBLEM_PAYMENT_REQUIRED.as_bytes()),
        ),
    }
}

/// The balance left, msat: of a session after this request, or (on a 402) what a session had left.
pub const X_L402_BALANCE_MSAT: http::HeaderName = http::HeaderName::from_static("x-l402-balance-msat");

/// The answer to a session's close (200, never forwarded): the refund as JSON, the session receipt, private.
pub fn session_closed(closed: &crate::session::SessionClosed, grpc: bool) -> Response<Full<Bytes>> {
    let mut b = base(StatusCode::OK, grpc).header(http::header::CACHE_CONTROL, "private");
    if let Ok(v) = HeaderValue::from_str(&closed.receipt) {
        b = b.header(PAYMENT_RECEIPT, v);
    }
    if grpc {
        return finish(b.header("grpc-status", "0"), Bytes::new());
    }
    finish(b.header(CONTENT_TYPE, "application/json"), Bytes::from(closed.body()))
}

/// What a client is told of a refusal: the reason for its own credential (401, 403), but of a 5xx only that
/// the service is unavailable. The detail of a store or Lightning failure (error chains naming hosts,
/// databases, node state) is for the operator's log, never for an anonymous client.
fn client_message(r: &Refusal) -> std::borrow::Cow<'static, str> {
    if r.status().is_server_error() { "service temporarily unavailable".into() } else { r.to_string().into() }
}

/// A refusal that is not a challenge (401, 403, 503). A 503 is logged here with its detail (which the
/// client does not get).
pub fn refusal(r: &Refusal, grpc: bool) -> Response<Full<Bytes>> {
    let status = r.status();
    if status.is_server_error() {
        tracing::warn!(reason = r.reason(), error = %r, "answered {} (detail not sent to the client)", status.as_u16());
    }
    let message = client_message(r);
    let mut b = base(status, grpc);
    if status == StatusCode::UNAUTHORIZED {
        b = b.header(WWW_AUTHENTICATE, "L402 error=\"invalid_credential\"");
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        b = b.header(RETRY_AFTER, "1");
    }
    if grpc {
        let code = match status {
            StatusCode::UNAUTHORIZED => "16",
            StatusCode::FORBIDDEN => "7",
            StatusCode::SERVICE_UNAVAILABLE => "14",
            _ => "13",
        };
        return finish(b.header("grpc-status", code).header("grpc-message", grpc_message(&message)), Bytes::new());
    }
    let body = format!("{{\"error\":\"{}\",\"reason\":\"{}\"}}", json_escape(&message), r.reason());
    finish(b.header(CONTENT_TYPE, "application/json"), Bytes::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;
    use l402_lightning::{LightningError, LightningErrorKind};

    fn body(r: &Response<Full<Bytes>>) -> String {
        use http_body_util::BodyExt as _;
        let full = r.body().clone();
        let bytes = futures_util::FutureExt::now_or_never(full.collect()).expect("ready").expect("body").to_bytes();
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }

    #[test]
    fn a_503_tells_anonymous_clients_nothing_of_the_internal_error() {
        let secret = "connection to 10.1.2.3:5432 user=l402 dbname=tokens refused: pg_hba.conf";
        for r in [
            Refusal::Store(StoreError(secret.into())),
            Refusal::Lightning(LightningError::new(LightningErrorKind::Unavailable, secret)),
        ] {
            for grpc in [false, true] {
                let resp = refusal(&r, grpc);
                let text = format!("{:?} {}", resp.headers(), body(&resp));
                assert!(!text.contains("10.1.2.3") && !text.contains("pg_hba"), "leaked: {text}");
                assert!(text.contains("unavailable"), "{text}");
            }
            let resp = refusal(&r, false);
            assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert!(body(&resp).contains(&format!("\"reason\":\"{}\"", r.reason())), "the stable reason stays");
        }
        // A refusal of the client's own credential still says why.
        let resp = refusal(&Refusal::Revoked, false);
        assert!(body(&resp).contains("token revoked"));
    }
}
