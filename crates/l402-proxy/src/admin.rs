//! The operations listener: `/metrics` (Prometheus), and the admin API behind its own bearer credential:
//! `GET /admin/tokens?limit=N&service=S&after=CURSOR`, `POST /admin/tokens/{token_id}/revoke`,
//! `GET /admin/revenue`.
//!
//! `/admin/tokens` answers a JSON array, newest first (at most 10,000, default 100). When a page is full, a
//! `Link: <...>; rel="next"` header gives the next page's URL; its `after` cursor is the last token's
//! `<created_at>.<token id>`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use l402_proto::TokenId;
use l402_server::Paywall;
use l402_server::store::{TokenCursor, TokenQuery};
use serde_json::json;

use crate::metrics::ProxyMetrics;

#[derive(Clone)]
struct Admin {
    paywall: Arc<Paywall>,
    metrics: Arc<ProxyMetrics>,
    token: Option<Arc<String>>,
}

/// Why the admin API refused a call.
#[derive(Debug, Clone, Copy)]
enum Denied {
    NotConfigured,
    BadCredential,
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Denied::NotConfigured => (StatusCode::NOT_FOUND, "the admin API is not configured").into_response(),
            Denied::BadCredential => (StatusCode::UNAUTHORIZED, "admin credential refused").into_response(),
        }
    }
}

fn authorized(admin: &Admin, headers: &HeaderMap) -> Result<(), Denied> {
    let Some(expected) = &admin.token else {
        return Err(Denied::NotConfigured);
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    // Constant-time comparison of equal-length strings; the length itself is not secret.
    let ok =
        given.len() == expected.len() && given.bytes().zip(expected.bytes()).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0;
    if ok { Ok(()) } else { Err(Denied::BadCredential) }
}

fn store_error(e: impl std::fmt::Display) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, format!("{e}")).into_response()
}

#[derive(serde::Deserialize)]
struct ListQuery {
    limit: Option<u32>,
    service: Option<String>,
    after: Option<String>,
}

async fn tokens(State(a): State<Admin>, headers: HeaderMap, Query(q): Query<ListQuery>) -> Response {
    if let Err(r) = authorized(&a, &headers) {
        return r.into_response();
    }
    let after = match q.after.as_deref().map(TokenCursor::parse) {
        None => None,
        Some(Some(c)) => Some(c),
        Some(None) => {
            return (StatusCode::BAD_REQUEST, "after must be a cursor from a Link header: <created_at>.<token id>")
                .into_response();
        }
    };
    let query = TokenQuery { limit: q.limit.unwrap_or(100).clamp(1, 10_000), after, service: q.service };
    match a.paywall.store().list(&query).await {
        Ok(list) => {
            let next = (list.len() == query.limit as usize).then(|| list.last().map(TokenCursor::after)).flatten();
            let body = axum::Json(
                list.iter()
                    .map(|t| {
                        json!({
                            "token_id": t.token_id.to_hex(),
                            "payment_hash": t.payment_hash.to_hex(),
                            "service": t.service,
                            "price_msat": t.price.0,
                            "created_at": t.created_at,
                            "expires_at": t.expires_at,
                            "paid_at": t.paid_at,
                            "revoked_at": t.revoked_at,
                        })
                    })
                    .collect::<Vec<_>>(),
            );
            match next {
                Some(cursor) => {
                    let mut url = format!("/admin/tokens?limit={}&after={cursor}", query.limit);
                    if let Some(service) = &query.service {
                        url.push_str("&service=");
                        for b in service.bytes() {
                            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                                url.push(char::from(b));
                            } else {
                                url.push_str(&format!("%{b:02X}"));
                            }
                        }
                    }
                    ([(axum::http::header::LINK, format!("<{url}>; rel=\"next\""))], body).into_response()
                }
                None => body.into_response(),
            }
        }
        Err(e) => store_error(e),
    }
}

async fn revoke(State(a): State<Admin>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = authorized(&a, &headers) {
        return r.into_response();
    }
    let Ok(token_id) = TokenId::from_hex(&id) else {
        return (StatusCode::BAD_REQUEST, "token id must be 64 lowercase hex digits").into_response();
    };
    match a.paywall.revoke(&token_id).await {
        Ok(true) => {
            tracing::info!(token_id = %token_id, "token revoked");
            axum::Json(json!({ "revoked": true, "token_id": id })).into_response()
        }
        Ok(false) => (StatusCode::NOT_FOUND, axum::Json(json!({ "revoked": false, "token_id": id }))).into_response(),
        Err(e) => store_error(e),
    }
}

async fn revenue(State(a): State<Admin>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&a, &headers) {
        return r.into_response();
    }
    match a.paywall.store().revenue().await {
        Ok(rows) => axum::Json(
            rows.iter()
                .map(|r| json!({ "service": r.service, "tokens_paid": r.tokens_paid, "amount_msat": r.amount.0 }))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => store_error(e),
    }
}

async fn metrics(State(a): State<Admin>) -> Response {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], a.metrics.render()).into_response()
}

pub(crate) fn router(paywall: Arc<Paywall>, metrics_: Arc<ProxyMetrics>, token: Option<String>) -> Router {
    let admin = Admin { paywall, metrics: metrics_, token: token.map(Arc::new) };
    Router::new()
        .route("/metrics", get(metrics))
        .route("/admin/tokens", get(tokens))
        .route("/admin/tokens/{token_id}/revoke", post(revoke))
        .route("/admin/revenue", get(revenue))
        .with_state(admin)
}
