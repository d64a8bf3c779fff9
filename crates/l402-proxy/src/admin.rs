//! The operations listener: `/metrics` (Prometheus), and the admin API behind its own bearer credential:
//! `GET /admin/tokens?limit=N&service=S&after=CURSOR`, `POST /admin/tokens/{token_id}/revoke`,
//! `GET /admin/revenue`; and the services at runtime: `GET /admin/services` (the live services, in matching
//! order), `POST /admin/services` (a JSON object with the keys of a `[[service]]` table: 201, or 409 if the name
//! is taken), `PUT /admin/services/{name}` (replaces it: 200, or 404; the body's `name` must be the path's or
//! absent) and `DELETE /admin/services/{name}` (204, or 404).
//!
//! A service is checked as the config file's are, with the whole set it would join (see the `services` module):
//! a body that is not JSON is answered 400, one that is not a valid service (an unknown key, a wrong type, a
//! bad price, a duplicate name...) 422, both with `{"error": "..."}`, a body over 64 KiB 413; then nothing
//! changed. Changes are written to the store (503 if it cannot be written) and applied at once; the other
//! instances sharing the store apply them within twice `[tokens] revocation_poll_ms`. In `GET`, a header's
//! literal `value` is shown as `"<redacted>"` (it is often an upstream credential).
//!
//! `/admin/tokens` answers a JSON array, newest first (at most 10,000, default 100). When a page is full, a
//! `Link: <...>; rel="next"` header gives the next page's URL; its `after` cursor is the last token's
//! `<created_at>.<token id>`.
//!
//! The dashboard at `/` (its login page, its session cookie and CSRF check, and two more JSON endpoints) is the
//! `dashboard` module's.

mod dashboard;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use l402_lightning::InvoiceIssuer;
use l402_proto::TokenId;
use l402_server::Paywall;
use l402_server::store::{TokenCursor, TokenQuery};
use serde_json::json;

use crate::config::ServiceConfig;
use crate::metrics::ProxyMetrics;
use crate::services::{Registry, ServiceError};

/// The largest service body the admin API reads.
const MAX_SERVICE_BODY: usize = 64 << 10;

#[derive(Clone)]
struct Admin {
    paywall: Arc<Paywall>,
    metrics: Arc<ProxyMetrics>,
    services: Arc<Registry>,
    token: Option<Arc<String>>,
    node: Arc<dyn InvoiceIssuer>,
    sessions: Arc<dashboard::Sessions>,
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
    if dashboard::same(given, expected) { Ok(()) } else { Err(Denied::BadCredential) }
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

#[derive(serde::Deserialize)]
struct SessionsQuery {
    limit: Option<u32>,
}

/// The sessions (newest first): balances, what was spent and refunded, where each stands. Never the deposit's
/// preimage (the store does not have it) nor the client's return invoice.
async fn list_sessions(State(a): State<Admin>, headers: HeaderMap, Query(q): Query<SessionsQuery>) -> Response {
    if let Err(r) = authorized(&a, &headers) {
        return r.into_response();
    }
    match a.paywall.store().sessions(q.limit.unwrap_or(100).clamp(1, 10_000)).await {
        Ok(list) => axum::Json(
            list.iter()
                .map(|s| {
                    json!({
                        "session_id": hex::encode(s.id.0),
                        "service": s.service,
                        "state": s.state.as_str(),
                        "deposit_msat": s.deposit.0,
                        "credited_msat": s.credited.0,
                        "balance_msat": s.balance.0,
                        "spent_msat": s.spent.0,
                        "requests": s.requests,
                        "refund_msat": s.refund.0,
                        "refunded_msat": s.refunded.0,
                        "opened_at": s.opened_at,
                        "updated_at": s.updated_at,
                    })
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => store_error(e),
    }
}

fn json_error(status: StatusCode, why: impl std::fmt::Display) -> Response {
    (status, axum::Json(json!({ "error": why.to_string() }))).into_response()
}

/// A service body: 400 if it is not JSON, 422 if it is not a service. A header taken from a file or an
/// environment variable is the config file's to give: through the API it would let the admin credential
/// read the proxy's files (its master key) by sending them upstream.
fn service_body(body: &[u8]) -> Result<ServiceConfig, (StatusCode, String)> {
    let s = ServiceConfig::from_json(body).map_err(|e| {
        let status =
            if e.is_syntax() || e.is_eof() { StatusCode::BAD_REQUEST } else { StatusCode::UNPROCESSABLE_ENTITY };
        (status, format!("service: {e}"))
    })?;
    if let Some(name) = s.headers.iter().find(|(_, h)| h.env.is_some() || h.file.is_some()).map(|(n, _)| n) {
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "service {}: header {name}: through the admin API give a value (env and file are the config file's)",
                s.name
            ),
        ));
    }
    Ok(s)
}

fn service_error(e: &ServiceError) -> Response {
    let status = match e {
        ServiceError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ServiceError::Exists(_) => StatusCode::CONFLICT,
        ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
        ServiceError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    json_error(status, e)
}

/// A service as `GET` shows it: literal header values redacted.
fn shown(mut s: ServiceConfig) -> ServiceConfig {
    for h in s.headers.values_mut() {
        if h.value.is_some() {
            h.value = Some("<redacted>".into());
        }
    }
    s
}

async fn list_services(State(a): State<Admin>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&a, &headers) {
        return r.into_response();
    }
    axum::Json(a.services.configs().into_iter().map(shown).collect::<Vec<_>>()).into_response()
}

async fn create_service(State(a): State<Admin>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if let Err(r) = authorized(&a, &headers) {
        return r.into_response();
    }
    let service = match service_body(&body) {
        Ok(s) => s,
        Err((status, why)) => return json_error(status, why),
    };
    let name = service.name.clone();
    match a.services.change(&name, Some(service.clone()), false).await {
        Ok(()) => {
            tracing::info!(service = %name, "service created through the admin API");
            (StatusCode::CREATED, axum::Json(shown(service))).into_response()
        }
        Err(e) => service_error(&e),
    }
}

async fn update_service(
    State(a): State<Admin>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = authorized(&a, &headers) {
        return r.into_response();
    }
    // The name may be left out of the body: it is the path's.
    let mut value: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, format!("service: {e}")),
    };
    if let Some(obj) = value.as_object_mut() {
        match obj.get("name") {
            None => {
                obj.insert("name".into(), serde_json::Value::String(name.clone()));
            }
            Some(serde_json::Value::String(n)) if *n == name => {}
            Some(_) => {
                return json_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("service {name}: the body's name must be the path's (a rename is a DELETE and a POST)"),
                );
            }
        }
    }
    let service = match service_body(&serde_json::to_vec(&value).unwrap_or_default()) {
        Ok(s) => s,
        Err((status, why)) => return json_error(status, why),
    };
    match a.services.change(&name, Some(service.clone()), true).await {
        Ok(()) => {
            tracing::info!(service = %name, "service replaced through the admin API");
            axum::Json(shown(service)).into_response()
        }
        Err(e) => service_error(&e),
    }
}

async fn delete_service(State(a): State<Admin>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    if let Err(r) = authorized(&a, &headers) {
        return r.into_response();
    }
    match a.services.change(&name, None, true).await {
        Ok(()) => {
            tracing::info!(service = %name, "service deleted through the admin API");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => service_error(&e),
    }
}

async fn metrics(State(a): State<Admin>) -> Response {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], a.metrics.render()).into_response()
}

pub(crate) fn router(
    paywall: Arc<Paywall>,
    metrics_: Arc<ProxyMetrics>,
    services: Arc<Registry>,
    token: Option<String>,
    node: Arc<dyn InvoiceIssuer>,
) -> Router {
    let sessions = Arc::default();
    let admin = Admin { paywall, metrics: metrics_, services, token: token.map(Arc::new), node, sessions };
    Router::new()
        .merge(dashboard::routes())
        .route("/metrics", get(metrics))
        .route("/admin/tokens", get(tokens))
        .route("/admin/tokens/{token_id}/revoke", post(revoke))
        .route("/admin/revenue", get(revenue))
        .route("/admin/sessions", get(list_sessions))
        .route("/admin/services", get(list_services).post(create_service))
        .route("/admin/services/{name}", put(update_service).delete(delete_service))
        .layer(DefaultBodyLimit::max(MAX_SERVICE_BODY))
        .layer(axum::middleware::from_fn_with_state(admin.clone(), dashboard::sessions_and_headers))
        .with_state(admin)
}
