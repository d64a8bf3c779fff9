//! `l402 mcp`: an MCP server over stdio that lets an AI agent fetch L402-paid URLs within limits it cannot
//! raise.
//!
//! Tools:
//! - `fetch` (url, method, headers, body, `max_cost_sat`, `prefer_scheme`): the request, paid for if needed.
//!   `max_cost_sat` is the agent's per-call maximum; it can only lower the cap set on the command line (`--max-cost`),
//!   never raise it (a higher value is refused before any request). `prefer_scheme` (`l402`, `payment` or `session`;
//!   default `--prefer-scheme`, itself `l402`) picks the offer paid when a 402 offers several: an L402 token, a
//!   `Payment` charge, a `Payment` session (one is paid, never two; a charge buys one request; a session's deposit is
//!   drawn down by later calls and refunded by `l402 session close`). The stored budget limits and `--budget` (this
//!   server's whole life) apply as always. The result names the payment (scheme, hash, amount, fee, token id or a
//!   charge's challenge id and receipt; a session's id and balance) but never the preimage or the macaroon: the token
//!   stays in the store. At most `--max-body` bytes of the body are read and returned (`body_truncated` says there was
//!   more); a server silent for `--read-timeout` seconds ends the call. A URL handed to an agent is not trusted: the
//!   tool connects to public addresses only (loopback, private, link-local, unique-local, CGNAT and unspecified
//!   addresses are refused, checked on the addresses a name resolves to, which are the ones connected to, and on every
//!   redirect) unless the operator passes `--allow-private`, and pays over plain http only with `--allow-http`.
//! - `budget`: the limits, what counts against them, and what is left of `--budget`.
//! - `ledger`: the most recent payments.
//!
//! With `--admin` it offers the proxy's admin API instead (see `mcp_admin.rs`) and uses no wallet.
//!
//! Refusals come back as tool errors whose text starts with the reason (`price_over_cap`, `budget_exhausted`,
//! `paid_but_refused`, ...), the same names as `l402 fetch` prints.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use l402_client::budget::Usage;
use l402_client::reqwest::Method;
use l402_client::{Client, Destinations, Error, LimitKind, Limits, PreferScheme};
use l402_proto::Msat;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, ServerCapabilities, ServerConfig};
use rmcp::{ErrorData, ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use crate::Failure;
use crate::fetch::Knobs;
use crate::wallet::{StoreArgs, WalletArgs};

/// Default `--max-body`: the most of a response body read and returned to the agent.
const DEFAULT_MAX_BODY: usize = 256 * 1024;
/// A fetch call's time limit when the caller names none, and the most it may name, in seconds.
const DEFAULT_TIMEOUT_SECS: u64 = 120;
const MAX_TIMEOUT_SECS: u64 = 600;

#[derive(Args, Debug)]
pub(crate) struct McpArgs {
    /// Serve the proxy's admin API as tools instead (list/add/update/delete services, list/revoke tokens,
    /// revenue); no wallet is used.
    #[arg(long)]
    admin: bool,
    /// With --admin: the proxy's admin listener.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9090")]
    admin_url: String,
    /// With --admin: a file holding the admin token (else the environment variable L402_ADMIN_TOKEN).
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<std::path::PathBuf>,
    /// The most one token may cost, in sat; the agent's `max_cost_sat` can only lower it.
    #[arg(long, value_name = "SAT", default_value_t = 100)]
    max_cost: u64,
    /// The most one payment may spend on routing fees, in sat.
    #[arg(long, value_name = "SAT", default_value_t = 20)]
    max_fee: u64,
    /// The most this server may spend while it runs (amount + fees), in sat, on top of the stored limits.
    #[arg(long, value_name = "SAT")]
    budget: Option<u64>,
    /// Let the fetch tool connect to loopback, private, link-local, unique-local and CGNAT addresses (refused
    /// by default, on the resolved addresses and every redirect).
    #[arg(long)]
    allow_private: bool,
    /// Let the fetch tool pay over plain http (refused before paying otherwise).
    #[arg(long)]
    allow_http: bool,
    /// The most of a response body read and returned, in bytes; the rest is not read (`body_truncated`).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_BODY, value_parser = max_body_bytes)]
    max_body: usize,
    /// The longest a server may send nothing during a call, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = crate::fetch::timeout_secs())]
    read_timeout: u64,
    /// The offer paid when a 402 offers several, unless a call names one: `l402` (a reusable token), `payment`
    /// (a `Payment` scheme Lightning charge: one payment per request) or `session` (a `Payment` session: a
    /// deposit drawn down by later calls; `l402 session close` refunds the rest).
    #[arg(long, value_name = "SCHEME", default_value = "l402", value_parser = crate::fetch::prefer_scheme)]
    prefer_scheme: PreferScheme,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    wallet: WalletArgs,
}

/// The `fetch` tool's arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct FetchParams {
    /// The URL (http or https).
    url: String,
    /// The HTTP method (default GET).
    #[serde(default)]
    method: Option<String>,
    /// Request headers.
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// The request body (text).
    #[serde(default)]
    body: Option<String>,
    /// The most to pay for a token for this call, in sat. At most the server's configured cap.
    max_cost_sat: u64,
    /// The most this call may take, in seconds (default 120, at most 600).
    #[serde(default)]
    timeout_secs: Option<u64>,
    /// Which offer to pay when the server offers several: "l402" (a token, reused by later calls), "payment"
    /// (a Payment-scheme Lightning charge, paid again by every call) or "session" (a Payment-scheme session: a
    /// deposit that later calls draw down). Default: the server's setting ("l402").
    #[serde(default)]
    prefer_scheme: Option<String>,
}

/// The `ledger` tool's arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct LedgerParams {
    /// How many of the most recent payments (default 20).
    #[serde(default)]
    limit: Option<usize>,
}

fn max_body_bytes(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?} is not a positive number of bytes")),
    }
}

#[derive(Clone)]
pub(crate) struct L402Mcp {
    client: Arc<Client>,
    cap_sat: u64,
    max_body: usize,
    prefer_scheme: PreferScheme,
    tool_router: ToolRouter<Self>,
}

fn text(s: String) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(s)])
}

fn tool_error(s: String) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(s)])
}

#[tool_router(router = tool_router)]
impl L402Mcp {
    /// Fetch a URL, paying for an L402 token or a Payment charge if the server asks, within `max_cost_sat` and
    /// the budgets.
    #[tool(description = "Fetch an HTTP(S) URL. If the server asks for a Lightning payment (HTTP 402: an L402 token \
                          or a Payment-scheme charge), pay one offer only if the price is at most max_cost_sat \
                          (itself capped by the operator) and within the budgets, then return the response. \
                          prefer_scheme (\"l402\", \"payment\" or \"session\") picks the offer when several are \
                          offered; L402 tokens are reused automatically, a charge pays for one request, a session's \
                          deposit is drawn down by later calls. The call gives up \
                          after timeout_secs (default 120) without ever losing or repeating a payment. Loopback \
                          and private addresses, and payments over plain http, are refused unless the operator \
                          allowed them.")]
    async fn fetch(&self, Parameters(p): Parameters<FetchParams>) -> Result<CallToolResult, ErrorData> {
        if p.max_cost_sat > self.cap_sat {
            return Ok(tool_error(format!(
                "price_over_cap: max_cost_sat {} is above the configured cap of {} sat; nothing was requested",
                p.max_cost_sat, self.cap_sat
            )));
        }
        let prefer = match p.prefer_scheme.as_deref() {
            None => self.prefer_scheme,
            Some(name) => match PreferScheme::from_name(name) {
                Some(s) => s,
                None => {
                    return Ok(tool_error(format!(
                        "request: prefer_scheme {name:?} is not \"l402\", \"payment\" or \"session\"; nothing was \
                         requested"
                    )));
                }
            },
        };
        let method = match p.method.as_deref().map(str::to_ascii_uppercase) {
            None => Method::GET,
            Some(m) => match Method::from_bytes(m.as_bytes()) {
                Ok(m) => m,
                Err(_) => return Ok(tool_error(format!("request: invalid method {m:?}"))),
            },
        };
        let mut req = self.client.request(method, &p.url);
        for (k, v) in &p.headers {
            req = req.header(k, v);
        }
        if let Some(b) = p.body {
            req = req.body(b);
        }
        let req = match req.build() {
            Ok(r) => r,
            Err(e) => return Ok(tool_error(format!("request: {e}"))),
        };
        let secs = p.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS).clamp(1, MAX_TIMEOUT_SECS);
        let call = async {
            let mut answer =
                self.client.execute_with(req, Msat::from_sat(p.max_cost_sat), prefer).await.map_err(|e| (e, None))?;
            let status = answer.response.status().as_u16();
            let read = l402_client::body::read_prefix(&mut answer.response, self.max_body).await;
            let kept = answer.token_id;
            let (body, complete) = read.map_err(|e| (e, kept))?;
            let done = (status, answer.token_id, answer.payment, answer.session, body, complete);
            Ok::<_, (Error, Option<l402_proto::TokenId>)>(done)
        };
        // Dropping a call mid-payment is what a crash does to it, and the journal is made for that.
        let outcome = tokio::time::timeout(Duration::from_secs(secs), call).await;
        let (status, token_id, payment, session, body, complete) = match outcome {
            Ok(Ok(done)) => done,
            Ok(Err((e, Some(id)))) => {
                return Ok(tool_error(format!(
                    "{}: {e} (token {id} was used or paid for; it is stored and the next call uses it)",
                    e.reason()
                )));
            }
            Ok(Err((e, None))) => return Ok(tool_error(format!("{}: {e}", e.reason()))),
            Err(_) => {
                return Ok(tool_error(format!(
                    "timeout: no complete answer within {secs} s. A payment started for this call, if any, is \
                     journaled: it is never paid twice, and the next call to this service uses its token or looks \
                     it up (see the ledger tool)."
                )));
            }
        };
        let v = json!({
            "status": status,
            "body": String::from_utf8_lossy(&body),
            "body_truncated": !complete,
            "token_id": token_id.map(|t| t.to_hex()),
            "payment": payment.as_ref().map(crate::fetch::payment_json),
            "session": session,
        });
        Ok(text(v.to_string()))
    }

    /// The budget limits, what counts against them, and what is left.
    #[tool(description = "Show the spending limits (per request, per origin, per hour, per day, total, and this \
                          session), what has been spent or reserved against each, and the per-call price cap.")]
    async fn budget(&self) -> Result<CallToolResult, ErrorData> {
        let (limits, usage): (Limits, Usage) = match self.client.limits().await {
            Ok(l) => match self.client.usage("").await {
                Ok(u) => (l, u),
                Err(e) => return Ok(tool_error(format!("{}: {e}", e.reason()))),
            },
            Err(e) => return Ok(tool_error(format!("{}: {e}", e.reason()))),
        };
        let limits_json: serde_json::Map<String, serde_json::Value> =
            LimitKind::STORED.iter().map(|k| (k.name().to_owned(), json!(limits.get(*k)))).collect();
        let left = |limit: u64, used: u64| limit.saturating_sub(used);
        let v = json!({
            "max_cost_sat_cap": self.cap_sat,
            "limits_msat": limits_json,
            "counted_msat": { "hour": usage.hour, "day": usage.day, "total": usage.total },
            "remaining_msat": {
                "hour": left(limits.per_hour, usage.hour),
                "day": left(limits.per_day, usage.day),
                "total": left(limits.total, usage.total),
            },
            "session_budget_msat": self.client.config().session_budget.map(|b| b.0),
        });
        Ok(text(v.to_string()))
    }

    /// The most recent payments.
    #[tool(description = "List the most recent payments made by this client (state, amount, fee, origin, service, \
                          payment hash, scheme; for a Payment charge its challenge id, state and receipt).")]
    async fn ledger(&self, Parameters(p): Parameters<LedgerParams>) -> Result<CallToolResult, ErrorData> {
        let n = p.limit.unwrap_or(20);
        match self.client.ledger(None).await {
            Ok(mut rows) => {
                rows.truncate(n);
                Ok(text(json!({ "payments": rows }).to_string()))
            }
            Err(e) => Ok(tool_error(format!("{}: {e}", e.reason()))),
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for L402Mcp {
    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::new(ServerCapabilities::builder().enable_tools().build());
        info.instructions = Some(
            "Fetch URLs that may ask for a Lightning payment (L402 or the Payment scheme). Payments are capped per call \
             (max_cost_sat) and by budgets the operator set; refusals name their reason."
                .into(),
        );
        info
    }
}

pub(crate) fn run(args: McpArgs) -> Result<(), Failure> {
    crate::wallet::init_logging();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    if args.admin {
        let token = crate::admin::token(args.admin_token_file.as_deref())?;
        let server = crate::mcp_admin::AdminMcp::new(args.admin_url.clone(), token);
        return rt.block_on(async {
            let running = server.serve(rmcp::transport::stdio()).await.context("MCP handshake")?;
            running.waiting().await.map(drop).context("MCP session").map_err(Failure::Input)
        });
    }
    rt.block_on(async {
        let knobs = Knobs {
            max_cost: args.max_cost,
            max_fee: args.max_fee,
            budget: args.budget,
            payment_timeout: 60,
            recovery_timeout: 60,
            read_timeout: args.read_timeout,
            allow_http: args.allow_http,
            destinations: if args.allow_private {
                Destinations::Any
            } else {
                Destinations::PublicOnly { except: Vec::new() }
            },
            prefer_scheme: args.prefer_scheme,
            phase: None,
        };
        let (client, wallet) = crate::fetch::client(&args.store, &args.wallet, &knobs)?;
        let server = L402Mcp {
            client: Arc::new(client),
            cap_sat: args.max_cost,
            max_body: args.max_body,
            prefer_scheme: args.prefer_scheme,
            tool_router: L402Mcp::tool_router(),
        };
        let served = server.serve(rmcp::transport::stdio()).await.context("MCP handshake");
        let result = match served {
            Ok(running) => running.waiting().await.map(drop).context("MCP session"),
            Err(e) => Err(e),
        };
        wallet.shutdown().await;
        result.map_err(Failure::Input)
    })
}
