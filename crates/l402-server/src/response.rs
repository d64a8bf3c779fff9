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

use crate::paywall::{Minted, Refusal};

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
    let b =
        Response::builder().header(CACHE_CONTROL, "no-store").header(ACCESS_CONTROL_EXPOSE_HEADERS, "WWW-Authenticate");
    if grpc { b.status(StatusCode::OK).header(CONTENT_TYPE, "application/grpc") } else { b.status(status) }
}

fn finish(builder: http::response::Builder, body: Bytes) -> Response<Full<Bytes>> {
    builder.body(Full::new(body)).unwrap_or_else(|_| {
        let mut r = Response::new(Full::new(Bytes::from_static(b"internal error")));
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

/// A 402 with the challenge.
pub fn challenge(minted: &Minted, service: &str, grpc: bool) -> Response<Full<Bytes>> {
    let mut b = base(StatusCode::PAYMENT_REQUIRED, grpc);
    for line in minted.header_values() {
        if let Ok(v) = HeaderValue::from_str(&line) {
            b = b.header(WWW_AUTHENTICATE, v);
        }
    }
    if grpc {
        let b = b.header("grpc-status", "13").header("grpc-message", "payment required");
        return finish(b, Bytes::new());
    }
    let body = format!(
        "{{\"error\":\"payment required\",\"service\":\"{}\",\"price_msat\":{},\"token_id\":\"{}\"}}",
        json_escape(service),
        minted.price.0,
        minted.token_id
    );
    finish(b.header(CONTENT_TYPE, "application/json"), Bytes::from(body))
}

/// A refusal that is not a challenge (401, 403, 503).
pub fn refusal(r: &Refusal, grpc: bool) -> Response<Full<Bytes>> {
    let status = r.status();
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
        return finish(
            b.header("grpc-status", code).header("grpc-message", grpc_message(&r.to_string())),
            Bytes::new(),
        );
    }
    let body = format!("{{\"error\":\"{}\",\"reason\":\"{}\"}}", json_escape(&r.to_string()), r.reason());
    finish(b.header(CONTENT_TYPE, "application/json"), Bytes::from(body))
}
