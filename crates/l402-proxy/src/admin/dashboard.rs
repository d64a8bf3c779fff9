//! The dashboard at `/` of the admin listener: a static page (HTML, CSS and JS embedded in the binary, nothing
//! fetched from elsewhere) that draws what the admin API's JSON endpoints answer.
//!
//! Every route takes the `Authorization: Bearer <admin token>` header. A browser logs in instead at `/login`
//! with the token: the answer sets a session cookie (`HttpOnly; SameSite=Strict; Path=/`) holding a random
//! session id kept in memory for [`SESSION_TTL`], never the token. A request carrying that cookie is let through
//! as if it carried the token, except that a state-changing one (not `GET`/`HEAD`) must also carry the session's
//! CSRF token in `X-CSRF-Token` and must not be marked cross-site by `Sec-Fetch-Site`: else 403. Failed logins
//! are limited to [`LOGIN_FAILURES`] a minute (then 429 until the minute is over) and logged as "login failed".
//!
//! Every answer of the listener carries a strict `Content-Security-Policy`, `X-Frame-Options: DENY`,
//! `Cache-Control: no-store`, `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`.
//!
//! Beside the page, two JSON endpoints: `GET /admin/revenue/series?bucket=minute|hour|day` (paid tokens and
//! their amount per bucket, oldest first, from the store's token rows) and `GET /admin/summary` (by service,
//! from the store's token rows: tokens stored (every challenge's, or with master keys only those used), tokens
//! paid, revenue; this instance's counters since it started; the node's identity and height).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::rejection::FormRejection;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use l402_server::store::{TokenCursor, TokenQuery};
use serde_json::json;

use super::{Admin, authorized, store_error};

/// How long a session lasts after its login.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// The most sessions kept at once: a new login beyond them ends the oldest.
const MAX_SESSIONS: usize = 1024;
/// Failed logins allowed a minute, over all clients.
pub(crate) const LOGIN_FAILURES: u32 = 10;
/// The session cookie's name.
pub(crate) const COOKIE: &str = "l402_admin_session";
/// The most token rows the series and the summary read.
const MAX_ROWS: usize = 100_000;

const PAGE: &str = include_str!("dashboard/index.html");
const LOGIN: &str = include_str!("dashboard/login.html");
const SCRIPT: &str = include_str!("dashboard/dashboard.js");
const STYLE: &str = include_str!("dashboard/dashboard.css");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

struct Session {
    csrf: String,
    expires: Instant,
}

/// The logged-in sessions and the failed-login window.
#[derive(Default)]
pub(crate) struct Sessions {
    live: Mutex<HashMap<String, Session>>,
    failures: Mutex<(Option<Instant>, u32)>,
}

fn random_hex() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the OS random source");
    hex::encode(b)
}

/// Constant-time comparison of equal-length strings; the length itself is not secret.
pub(super) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

impl Sessions {
    fn open(&self) -> (String, String) {
        let (id, csrf) = (random_hex(), random_hex());
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        live.retain(|_, s| s.expires > now);
        if live.len() >= MAX_SESSIONS
            && let Some(oldest) = live.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| k.clone())
        {
            live.remove(&oldest);
        }
        live.insert(id.clone(), Session { csrf: csrf.clone(), expires: now + SESSION_TTL });
        (id, csrf)
    }

    /// The CSRF token of a live session.
    fn csrf(&self, id: &str) -> Option<String> {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        // Looked up by hash, then compared in constant time.
        live.get(id).filter(|s| s.expires > Instant::now()).map(|s| s.csrf.clone())
    }

    fn close(&self, id: &str) {
        self.live.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }

    /// Whether another failed login may be tried now.
    fn may_try(&self) -> bool {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if f.0.is_none_or(|start| start.elapsed() >= Duration::from_secs(60)) {
            *f = (None, 0);
        }
        f.1 < LOGIN_FAILURES
    }

    fn failed(&self) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        f.0.get_or_insert_with(Instant::now);
        f.1 += 1;
    }
}

/// The session id in the request's cookie, if any.
fn cookie_session(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| *n == COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// The CSRF token of the request's live session, if it has one.
fn session_csrf(a: &Admin, headers: &HeaderMap) -> Option<String> {
    cookie_session(headers).and_then(|id| a.sessions.csrf(&id))
}

/// Lets a request with a live session cookie through as if it carried the admin token (after the CSRF check
/// for a state-changing one), and puts the security headers on every answer.
pub(crate) async fn sessions_and_headers(State(a): State<Admin>, mut req: Request, next: Next) -> Response {
    if !req.headers().contains_key(header::AUTHORIZATION)
        && let (Some(csrf), Some(token)) = (session_csrf(&a, req.headers()), a.token.as_deref())
    {
        // A login is checked by its token, not by a session's.
        let safe = matches!(*req.method(), Method::GET | Method::HEAD) || req.uri().path() == "/login";
        if !safe {
            let given = req.headers().get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or_default();
            let cross =
                req.headers().get("sec-fetch-site").is_some_and(|v| !matches!(v.as_bytes(), b"same-origin" | b"none"));
            if cross || !same(given, &csrf) {
                tracing::warn!(path = %req.uri().path(), "admin request refused: missing or wrong CSRF token");
                return secured((StatusCode::FORBIDDEN, "CSRF token missing or wrong").into_response());
            }
        }
        if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
            req.headers_mut().insert(header::AUTHORIZATION, v);
        }
    }
    secured(next.run(req).await)
}

fn secured(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    r
}

fn html(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

fn see_other(to: &'static str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
}

async fn page(State(a): State<Admin>, headers: HeaderMap) -> Response {
    if authorized(&a, &headers).is_err() {
        return see_other("/login");
    }
    // The page's CSRF token (none when the Bearer header was used: a script cannot send that one anyway).
    let csrf = session_csrf(&a, &headers).unwrap_or_default();
    html(PAGE.replace("{{csrf}}", &csrf))
}

fn login_page(message: &str) -> String {
    LOGIN.replace("{{message}}", message)
}

async fn login_form(State(a): State<Admin>) -> Response {
    if a.token.is_none() {
        return super::Denied::NotConfigured.into_response();
    }
    html(login_page(""))
}

#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(a): State<Admin>, headers: HeaderMap, form: Result<Form<LoginForm>, FormRejection>) -> Response {
    let Some(expected) = a.token.as_deref() else {
        return super::Denied::NotConfigured.into_response();
    };
    if headers.get("sec-fetch-site").is_some_and(|v| v.as_bytes() == b"cross-site") {
        return (StatusCode::FORBIDDEN, "cross-site login refused").into_response();
    }
    let given = match form {
        Ok(f) => f.0.token,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return e.into_response(),
        Err(_) => String::new(),
    };
    if !a.sessions.may_try() {
        return (StatusCode::TOO_MANY_REQUESTS, html(login_page("Too many failed logins: wait a minute.")))
            .into_response();
    }
    if !same(given.trim(), expected) {
        a.sessions.failed();
        tracing::warn!("login failed");
        return (StatusCode::UNAUTHORIZED, html(login_page("That is not the admin token."))).into_response();
    }
    let (id, _) = a.sessions.open();
    tracing::info!("dashboard login");
    let cookie = format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}", SESSION_TTL.as_secs());
    (StatusCode::SEE_OTHER, [(header::LOCATION, "/".to_owned()), (header::SET_COOKIE, cookie)]).into_response()
}

/// Ends the session (the CSRF check ran in [`sessions_and_headers`]).
async fn logout(State(a): State<Admin>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie_session(&headers) {
        a.sessions.close(&id);
    }
    let cookie = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    (StatusCode::SEE_OTHER, [(header::LOCATION, "/login".to_owned()), (header::SET_COOKIE, cookie)]).into_response()
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

/// Every token row, newest first, up to [`MAX_ROWS`].
async fn all_tokens(a: &Admin) -> Result<Vec<l402_server::store::TokenInfo>, Response> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let query = TokenQuery { limit: 10_000, after, service: None };
        let page = a.paywall.store().list(&query).await.map_err(store_error)?;
        let full = page.len() == query.limit as usize;
        after = page.last().map(TokenCursor::after);
        out.extend(page);
        if !full || out.len() >= MAX_ROWS || after.is_none() {
            return Ok(out);
        }
    }
}

#[derive(serde::Deserialize)]
struct SeriesQuery {
    bucket: Option<String>,
}

async fn series(State(a): State<Admin>, headers: HeaderMap, Query(q): Query<SeriesQuery>) -> Response {
    if let Err(r) = authorized(&a, &headers) {
        return r.into_response();
    }
    let secs: u64 = match q.bucket.as_deref().unwrap_or("hour") {
        "minute" => 60,
        "hour" => 3600,
        "day" => 86_400,
        _ => return (StatusCode::BAD_REQUEST, "bucket must be minute, hour or day").into_response(),
    };
    let rows = match all_tokens(&a).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let mut buckets: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for t in rows.iter().filter(|t| t.paid_at.is_some()) {
        let at = t.paid_at.unwrap_or_default();
        let b = buckets.entry(at - at % secs).or_default();
        b.0 += 1;
        b.1 += t.price.0;
    }
    axum::Json(json!({
        "bucket_secs": secs,
        "points": buckets
            .iter()
            .map(|(start, (n, msat))| json!({ "start": start, "tokens_paid": n, "amount_msat": msat }))
            .collect::<Vec<_>>(),
    }))
    .into_response()
}

async fn summary(State(a): State<Admin>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&a, &headers) {
        return r.into_response();
    }
    let rows = match all_tokens(&a).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let mut by: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
    for t in &rows {
        let e = by.entry(t.service.as_str()).or_default();
        e.0 += 1;
        if t.paid_at.is_some() {
            e.1 += 1;
            e.2 += t.price.0;
        }
    }
    let m = &a.metrics.paywall;
    let node = match a.node.info().await {
        Ok(i) => json!({
            "reachable": true,
            "pubkey": i.pubkey,
            "alias": i.alias,
            "network": format!("{:?}", i.network),
            "block_height": i.block_height,
        }),
        Err(e) => json!({ "reachable": false, "error": e.to_string() }),
    };
    axum::Json(json!({
        "services": by
            .iter()
            .map(|(s, (c, p, m))| json!({ "service": s, "challenges": c, "tokens_paid": p, "amount_msat": m }))
            .collect::<Vec<_>>(),
        "rows_read": rows.len(),
        "since_start": {
            "challenges_issued": m.challenges_issued.load(Ordering::Relaxed),
            "tokens_verified": m.tokens_verified.get(),
            "invoices_settled": m.invoices_settled.load(Ordering::Relaxed),
            "revenue_msat": m.revenue_msat.load(Ordering::Relaxed),
            "refusals": m.refusals(),
        },
        "node": node,
    }))
    .into_response()
}

/// The dashboard's routes (the session layer is put on the whole admin router by [`super::router`]).
pub(crate) fn routes() -> Router<Admin> {
    Router::new()
        .route("/", get(page))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/dashboard.js", get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }))
        .route("/dashboard.css", get(|| async { asset("text/css; charset=utf-8", STYLE) }))
        .route("/admin/revenue/series", get(series))
        .route("/admin/summary", get(summary))
}
