//! `l402 fetch URL`: a curl-like request that pays for itself (within caps and budgets).
//!
//! A `402` may offer an L402 token and a `Payment` scheme Lightning charge (Aperture with MPP on offers both):
//! one of them is paid, never both, the L402 token by default (it is reusable) or the charge with
//! `--prefer-scheme payment` (a charge buys this one request). A server offering one scheme gets that one.
//! With `--prefer-scheme session`, a `402` offering a `Payment` session opens one (a deposit, checked like a
//! charge, with an amountless refund invoice from the wallet's own node), and later requests to that origin and
//! service draw from its balance without paying, topping it up when the server says it ran out; `l402 session
//! close` refunds what is left.
//!
//! Output: the response body on stdout (or `-o FILE`), with the status line and headers first under `-i`,
//! streamed as it arrives. With `--json`, or when stdout is not a terminal (unless `--raw`), one JSON object
//! instead: status, headers, body (`body`, or `body_base64` if not UTF-8), the token used, and the payment made
//! (scheme, payment hash, amount, fee, token id or a charge's challenge id and receipt; never the preimage,
//! which stays in the store). While a payment is in
//! flight a progress line goes to stderr.
//!
//! The body is read up to `--max-body` bytes (default 64 MiB), and the server may send nothing for at most
//! `--read-timeout` seconds (default 60) at any point; past either the command stops (exits 23 and 24), and a
//! token paid for on the way stays stored for the next run. A payment over plain `http://` needs
//! `--allow-http`; it is refused before anything is paid otherwise. Redirects are followed (at most 10) by the
//! client itself: a token is only sent to the origin it was bought from.
//!
//! Exit codes (see also `main.rs`): 0 a response was received (whatever its status); 2 usage; 3 HTTP
//! transport error (or a redirect that cannot be followed); 4 wallet unavailable; 5 a 402 without a usable
//! L402 or Payment challenge; 6 local store error; refused before paying: 10 price over the cap, 11 amountless
//! invoice, 12 wrong network, 13 invoice (or charge challenge) expired or expiring within the margin, 14 invoice
//! payment hash differs from the macaroon's (or the charge's `paymentHash`), 15 budget exhausted, 16 request
//! body not replayable, 17 plain http without `--allow-http`, 18 address refused, 19 a charge's invoice amount
//! differs from its stated amount; after trying to pay: 20 payment failed (no money moved), 21 payment outcome
//! unknown (reservation kept; the next run looks it up), 22 paid but refused (token or charge kept as proof of
//! payment; a refused charge is not paid again in the same run); reading
//! the response: 23 body over `--max-body`, 24 `--read-timeout` passed with nothing from the server (a token
//! paid for stays stored); 28 `--max-time` ran out (before paying, or after paying with the token stored; if
//! it runs out while a payment is in flight the exit is 21).
//!
//! Test hook: `L402_TEST_PAUSE_AT=journal_written|payment_in_flight|payment_succeeded` makes the process print
//! `l402: test pause at <name>` on stderr and stop there (for crash tests, which SIGKILL it).

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::Args;
use l402_client::reqwest::{Method, header};
use l402_client::{Client, ClientConfig, Destinations, Error, Payment, PreferScheme, Progress, Quote};
use l402_lightning::PaymentEvent;
use l402_proto::Msat;
use serde_json::{Value, json};

use crate::Failure;
use crate::wallet::{StoreArgs, WalletArgs};

#[derive(Args, Debug)]
pub(crate) struct FetchArgs {
    /// The URL.
    url: String,
    /// The method (default GET, or POST with -d).
    #[arg(short = 'X', long = "request", value_name = "METHOD")]
    method: Option<String>,
    /// A request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    headers: Vec<String>,
    /// The request body; `@FILE` reads a file, `@-` standard input.
    #[arg(short = 'd', long = "data", value_name = "DATA")]
    data: Option<String>,
    /// Write the body to FILE instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Show the status line and response headers.
    #[arg(short = 'i', long = "include")]
    include: bool,
    /// The most one payment may cost, in sat (the invoice amount: a token, a charge, a session's deposit or
    /// top-up); more is refused (exit 10).
    #[arg(long, value_name = "SAT", default_value_t = 1_000)]
    max_cost: u64,
    /// The most one payment may spend on routing fees, in sat (a retry may raise the first limit up to it).
    #[arg(long, value_name = "SAT", default_value_t = 50)]
    max_fee: u64,
    /// The most this command may spend in total (amount + fees), in sat, on top of the stored limits.
    #[arg(long, value_name = "SAT")]
    budget: Option<u64>,
    /// Show the price, fee estimate, expiry, destination and description of the offer that would be paid, and
    /// pay nothing.
    #[arg(long)]
    dry_run: bool,
    /// Which offer to pay when a 402 offers several: `l402` (a token, reusable: the default), `payment` (a
    /// `Payment` scheme Lightning charge, one payment per request) or `session` (a `Payment` session: a deposit
    /// that later requests draw down, topped up when it runs out, the rest refunded by `l402 session close`; an
    /// open session of the origin and service is reused). A 402 offering one of them gets that one.
    #[arg(long, value_name = "SCHEME", default_value = "l402", value_parser = prefer_scheme)]
    prefer_scheme: PreferScheme,
    /// Print JSON (the default when stdout is not a terminal).
    #[arg(long, conflicts_with = "raw")]
    json: bool,
    /// Print the raw body (or the dry run's text) even when stdout is not a terminal.
    #[arg(long)]
    raw: bool,
    /// Pay over plain http (an http:// URL's 402 is refused before paying otherwise: anyone on the path could
    /// read the credential). For local tests and demos.
    #[arg(long)]
    allow_http: bool,
    /// The most of the response body read, in bytes; a longer body stops the command (exit 23).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_BODY, value_parser = clap::value_parser!(u64).range(1..))]
    max_body: u64,
    /// The longest the server may send nothing, in seconds (exit 24).
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = timeout_secs())]
    read_timeout: u64,
    /// The payment timeout, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = timeout_secs())]
    payment_timeout: u64,
    /// How long to follow an interrupted payment found in flight before reporting its outcome as unknown.
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = timeout_secs())]
    recovery_timeout: u64,
    /// The most the whole command may take, in seconds (exit 28). A payment is never abandoned unrecorded:
    /// if time runs out while one is in flight, the exit is 21 and the next run looks it up.
    #[arg(short = 'm', long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    max_time: Option<u64>,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    wallet: WalletArgs,
}

/// Default `--max-body`: 64 MiB.
const DEFAULT_MAX_BODY: u64 = 64 << 20;

/// A timeout option's range: 1 s to [`l402_client::config::MAX_TIMEOUT`] (a larger one would overflow the
/// clock's arithmetic further down).
pub(crate) fn timeout_secs() -> clap::builder::RangedU64ValueParser {
    clap::value_parser!(u64).range(1..=l402_client::config::MAX_TIMEOUT.as_secs())
}

/// Parses `--prefer-scheme`.
pub(crate) fn prefer_scheme(s: &str) -> Result<PreferScheme, String> {
    PreferScheme::from_name(s).ok_or_else(|| format!("{s:?} is not a scheme: l402, payment or session"))
}

/// A payment as the JSON outputs show it (never the preimage).
pub(crate) fn payment_json(p: &Payment) -> Value {
    let mut v = json!({
        "scheme": p.scheme(),
        "payment_hash": p.payment_hash.to_hex(),
        "amount_msat": p.amount.0,
        "fee_msat": p.fee.0,
        "token_id": p.token_id.map(|t| t.to_hex()),
    });
    if let Some(c) = &p.charge {
        v["challenge_id"] = json!(c.challenge_id);
        v["receipt"] = json!(c.receipt);
    }
    if let Some(intent) = p.intent() {
        v["intent"] = json!(intent);
    }
    if let Some(id) = &p.session_id {
        v["session_id"] = json!(id);
    }
    v
}

/// A client error as a [`Failure`], with a message that says what happened to the money.
pub(crate) fn failure(e: Error) -> Failure {
    let note = match &e {
        Error::Invoice(_) | Error::AmountMismatch { .. } | Error::Budget { .. } | Error::NotReplayable => {
            " (nothing was paid)"
        }
        Error::PlainHttp { .. } => " (pass --allow-http to pay over plain http)",
        Error::AddressRefused(_) => " (nothing was sent)",
        Error::PaymentFailed { .. } | Error::PaymentRejected { .. } => " (no money moved; reservation released)",
        Error::OutcomeUnknown { .. } => {
            " (the payment may have gone through: it will not be paid again; the next run looks it up)"
        }
        Error::PaidButRefused { .. } => " (see `l402 token list`; remove it with `l402 token rm` to pay again)",
        Error::ChargeRefused { .. } => {
            " (the charge, its challenge and preimage are kept in the ledger: see `l402 spend`; not paid again)"
        }
        Error::SessionRefused { .. } => {
            " (what was paid into the session is in the ledger: see `l402 spend` and `l402 session list`)"
        }
        _ => "",
    };
    Failure::Code(e.exit_code(), format!("{} [{}]{note}", e, e.reason()))
}

fn progress_line(p: &Progress) -> Option<String> {
    match p {
        Progress::Paying { payment_hash, amount, fee_limit, .. } => {
            Some(format!("paying {amount} (fee limit {fee_limit}) for payment {payment_hash}"))
        }
        Progress::Payment { payment_hash, event } => match event {
            PaymentEvent::InFlight => Some(format!("payment {payment_hash} in flight…")),
            PaymentEvent::Succeeded(s) => Some(format!("paid {} + {} fee", s.amount, s.fee)),
            PaymentEvent::Failed(f) => Some(format!("payment failed: {f}")),
            _ => None,
        },
        Progress::Recovering { payment_hash } => Some(format!("looking up interrupted payment {payment_hash}")),
        _ => None,
    }
}

/// How far a command got with paying, as its progress reports it (for `--max-time`).
#[derive(Debug, Default)]
pub(crate) struct Phase(AtomicU8);

impl Phase {
    const PAYING: u8 = 1;
    const PAID: u8 = 2;

    fn see(&self, p: &Progress) {
        match p {
            Progress::Paying { .. } | Progress::Recovering { .. } => {
                let _ = self.0.compare_exchange(0, Self::PAYING, Ordering::SeqCst, Ordering::SeqCst);
            }
            Progress::Payment { event: PaymentEvent::Succeeded(_), .. } => self.0.store(Self::PAID, Ordering::SeqCst),
            Progress::Payment { event: PaymentEvent::Failed(_), .. } => {
                let _ = self.0.compare_exchange(Self::PAYING, 0, Ordering::SeqCst, Ordering::SeqCst);
            }
            _ => {}
        }
    }

    /// What running out of time means, given how far the payment got.
    fn timed_out(&self, secs: u64) -> Failure {
        match self.0.load(Ordering::SeqCst) {
            Self::PAYING => Failure::Code(
                21,
                format!(
                    "--max-time of {secs} s ran out while a payment was in flight [outcome_unknown] (the payment \
                     may have gone through: it will not be paid again; the next run looks it up)"
                ),
            ),
            Self::PAID => Failure::Code(
                28,
                format!(
                    "--max-time of {secs} s ran out after paying [timeout] (the token is stored: the next request \
                     uses it; see `l402 token list`)"
                ),
            ),
            _ => Failure::Code(28, format!("--max-time of {secs} s ran out [timeout] (nothing was paid)")),
        }
    }
}

/// The per-command settings of a client (sat and seconds, as the options take them).
pub(crate) struct Knobs {
    pub(crate) max_cost: u64,
    pub(crate) max_fee: u64,
    pub(crate) budget: Option<u64>,
    pub(crate) payment_timeout: u64,
    pub(crate) recovery_timeout: u64,
    pub(crate) read_timeout: u64,
    pub(crate) allow_http: bool,
    pub(crate) destinations: Destinations,
    pub(crate) prefer_scheme: PreferScheme,
    /// Told of every progress report, if set.
    pub(crate) phase: Option<Arc<Phase>>,
}

impl Knobs {
    /// For a client that pays nothing (recovery, a session's close): caps of 1 msat, a minute for each wait.
    pub(crate) fn paying_nothing(allow_http: bool, prefer_scheme: PreferScheme) -> Self {
        Self {
            max_cost: 1,
            max_fee: 1,
            budget: None,
            payment_timeout: 60,
            recovery_timeout: 60,
            read_timeout: 60,
            allow_http,
            destinations: Destinations::Any,
            prefer_scheme,
            phase: None,
        }
    }
}

/// Builds the client for `fetch`, `spend --recover` and `mcp`.
pub(crate) fn client(
    store: &StoreArgs,
    wallet: &WalletArgs,
    knobs: &Knobs,
) -> anyhow::Result<(Client, Arc<crate::wallet::LazyWallet>)> {
    let lazy = wallet.wallet()?;
    let mut config = ClientConfig::new(store.dir()?);
    config.max_price = Msat::from_sat(knobs.max_cost);
    if knobs.max_fee == 0 {
        return Err(anyhow!("--max-fee must be at least 1 sat (a zero fee limit only finds zero-fee routes)"));
    }
    config.max_fee = Msat::from_sat(knobs.max_fee);
    config.session_budget = knobs.budget.map(Msat::from_sat);
    config.payment_timeout = Duration::from_secs(knobs.payment_timeout);
    config.recovery_timeout = Duration::from_secs(knobs.recovery_timeout);
    config.read_timeout = Duration::from_secs(knobs.read_timeout);
    config.allow_http = knobs.allow_http;
    config.destinations = knobs.destinations.clone();
    config.prefer_scheme = knobs.prefer_scheme;
    config.network = wallet.currency()?;
    config.checkpoint = l402_client::config::pause_hook_from_env();
    let phase = knobs.phase.clone();
    config.progress = Some(Arc::new(move |p: &Progress| {
        if let Some(phase) = &phase {
            phase.see(p);
        }
        if let Some(line) = progress_line(p) {
            eprintln!("l402: {line}");
        }
    }));
    // The wallet's node also issues invoices: a session's refund invoice, and the check that the refund came.
    let client = Client::new(lazy.clone(), config).context("opening the client")?.with_invoice_issuer(lazy.clone());
    Ok((client, lazy))
}

fn build_request(client: &Client, args: &FetchArgs) -> anyhow::Result<l402_client::reqwest::Request> {
    let body = match args.data.as_deref() {
        None => None,
        Some("@-") => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).context("reading standard input")?;
            Some(buf)
        }
        Some(d) if d.starts_with('@') => Some(std::fs::read(&d[1..]).with_context(|| format!("reading {}", &d[1..]))?),
        Some(d) => Some(d.as_bytes().to_vec()),
    };
    let method = match &args.method {
        Some(m) => Method::from_bytes(m.to_ascii_uppercase().as_bytes()).context("-X")?,
        None if body.is_some() => Method::POST,
        None => Method::GET,
    };
    let mut req = client.request(method, &args.url);
    let mut has_type = false;
    for h in &args.headers {
        let (name, value) = h.split_once(':').ok_or_else(|| anyhow!("-H must be 'Name: value', got {h:?}"))?;
        has_type |= name.trim().eq_ignore_ascii_case("content-type");
        req = req.header(name.trim(), value.trim());
    }
    if let Some(body) = body {
        if !has_type {
            req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        req = req.body(body);
    }
    req.build().with_context(|| format!("invalid request to {}", args.url))
}

pub(crate) fn run(args: FetchArgs) -> Result<(), Failure> {
    crate::wallet::init_logging();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    rt.block_on(async {
        let phase = Arc::new(Phase::default());
        // A payment attempt started within --max-time also stops within it.
        let bounded = |secs: u64| args.max_time.map_or(secs, |m| secs.min(m));
        let knobs = Knobs {
            max_cost: args.max_cost,
            max_fee: args.max_fee,
            budget: args.budget,
            payment_timeout: bounded(args.payment_timeout),
            recovery_timeout: bounded(args.recovery_timeout),
            read_timeout: args.read_timeout,
            allow_http: args.allow_http,
            destinations: Destinations::Any,
            prefer_scheme: args.prefer_scheme,
            phase: Some(phase.clone()),
        };
        let (client, wallet) = client(&args.store, &args.wallet, &knobs)?;
        let json = args.json || (!args.raw && !std::io::stdout().is_terminal());
        let work = async {
            if args.dry_run { dry_run(&client, &args, json).await } else { fetch(&client, &args, json).await }
        };
        let out = match args.max_time {
            None => work.await,
            // Dropping the request mid-payment is what a crash does to it, and the journal is made for that:
            // the payment was recorded before it was sent, and the next run finds it by hash.
            Some(secs) => tokio::time::timeout(Duration::from_secs(secs), work)
                .await
                .unwrap_or_else(|_| Err(phase.timed_out(secs))),
        };
        wallet.shutdown().await;
        out
    })
}

async fn dry_run(client: &Client, args: &FetchArgs, json: bool) -> Result<(), Failure> {
    let req = build_request(client, args)?;
    let quote = client.quote(req).await.map_err(failure)?;
    match quote {
        Quote::Token(t) => {
            let v = json!({ "dry_run": true, "payment_required": false, "token_id": t.token_id, "service": t.service });
            print_quote(json, &v, &format!("a stored token would be sent: {} (service {:?})", t.token_id, t.service));
            Ok(())
        }
        Quote::Session(s) => {
            let v = json!({ "dry_run": true, "payment_required": false, "session_id": s.session_id,
                "service": s.service, "balance_msat": s.balance_msat });
            let text = format!("an open session would be used: {} (service {:?})", s.session_id, s.service);
            print_quote(json, &v, &text);
            Ok(())
        }
        Quote::NotRequired { status } => {
            let v = json!({ "dry_run": true, "payment_required": false, "status": status });
            print_quote(json, &v, &format!("no payment required (the server answered {status})"));
            Ok(())
        }
        Quote::Payment(q) => {
            let mut v = serde_json::to_value(&q).map_err(|e| Failure::Input(e.into()))?;
            v["dry_run"] = json!(true);
            v["payment_required"] = json!(true);
            v["would_pay"] = json!(q.refusal.is_none());
            if let Some(e) = &q.refusal {
                v["refusal"] = json!({ "reason": e.reason(), "message": e.to_string() });
            }
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let price = q.amount_msat.map_or("no amount (never paid)".to_owned(), |a| Msat(a).to_string());
            let offer = match &q.challenge_id {
                Some(id) if q.scheme == "Session" => {
                    format!("Payment session (the price is its deposit), challenge {id}")
                }
                Some(id) => format!("{} charge (one request), challenge {id}", q.scheme),
                None => format!("{} token (reusable)", q.scheme),
            };
            let text = format!(
                "offer:       {offer} (offered: {})\nprice:       {price}\n\
                 fee:         at most {} (a retry after 'no route' may use up to {})\n\
                 expires:     in {} s (unix {})\ndestination: {}\ndescription: {}\nservice:     {}\nnetwork:     {}\n\
                 would pay:   {}",
                q.offers.join(", "),
                Msat(q.fee_limit_msat),
                Msat(q.max_fee_msat),
                q.expires_at.saturating_sub(now),
                q.expires_at,
                q.destination,
                q.description,
                q.service,
                q.network,
                q.refusal.as_ref().map_or("yes".to_owned(), |e| format!("no: {e}")),
            );
            print_quote(json, &v, &text);
            match q.refusal {
                Some(e) => Err(failure(e)),
                None => Ok(()),
            }
        }
    }
}

fn print_quote(json: bool, v: &Value, text: &str) {
    if json {
        println!("{v}");
    } else {
        println!("{text}");
    }
}

/// A failure while reading the response, saying what became of a token paid for on the way.
fn reading_failure(e: Error, token_id: Option<l402_proto::TokenId>) -> Failure {
    let f = failure(e);
    match (f, token_id) {
        (Failure::Code(code, why), Some(id)) => Failure::Code(
            code,
            format!("{why} (token {id} is stored and stays valid: the next request uses it; see `l402 token list`)"),
        ),
        (f, _) => f,
    }
}

/// Where the body goes: a file, standard output, or memory (for the JSON object).
enum Sink {
    File(std::fs::File),
    Stdout,
    Memory(Vec<u8>),
}

async fn fetch(client: &Client, args: &FetchArgs, json: bool) -> Result<(), Failure> {
    let req = build_request(client, args)?;
    let mut answer = client.execute(req).await.map_err(failure)?;
    let status = answer.response.status();
    let version = answer.response.version();
    let headers = answer.response.headers().clone();
    let token_id = answer.token_id;
    l402_client::body::check_declared(&answer.response, args.max_body).map_err(|e| reading_failure(e, token_id))?;
    if !json && args.include {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{version:?} {status}");
        for (k, val) in &headers {
            let _ = writeln!(stdout, "{k}: {}", String::from_utf8_lossy(val.as_bytes()));
        }
        let _ = writeln!(stdout);
        let _ = stdout.flush();
    }
    let mut sink = match &args.output {
        Some(path) => Sink::File(std::fs::File::create(path).with_context(|| format!("writing {}", path.display()))?),
        None if json => Sink::Memory(Vec::new()),
        None => Sink::Stdout,
    };
    let streamed = stream_body(&mut answer.response, args.max_body, &mut sink).await;
    if let Err(e) = streamed {
        if let Some(path) = &args.output {
            let _ = std::fs::remove_file(path); // a cut body is not left looking like the whole one
        }
        return Err(match e {
            Streamed::Client(e) => reading_failure(e, token_id),
            Streamed::Write(e) => Failure::Input(e),
        });
    }
    if !json {
        return Ok(());
    }
    let mut v = json!({
        "status": status.as_u16(),
        "token_id": token_id.map(|t| t.to_hex()),
        "payment": answer.payment.as_ref().map(payment_json),
    });
    if let Some(s) = &answer.session {
        v["session"] = json!(s);
    }
    if args.include {
        let h: serde_json::Map<String, Value> = headers
            .iter()
            .map(|(k, val)| (k.as_str().to_owned(), json!(String::from_utf8_lossy(val.as_bytes()))))
            .collect();
        v["headers"] = Value::Object(h);
    }
    if let Sink::Memory(body) = sink {
        match String::from_utf8(body) {
            Ok(text) => v["body"] = json!(text),
            Err(e) => {
                use base64::Engine as _;
                v["body_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(e.as_bytes()));
            }
        }
    }
    println!("{v}");
    Ok(())
}

/// Why streaming a body stopped.
enum Streamed {
    /// Reading it: too large, the server silent, the connection lost.
    Client(Error),
    /// Writing it to the output file.
    Write(anyhow::Error),
}

/// Streams the body into `sink`, at most `max` bytes (more is [`Error::BodyTooLarge`]). Standard output closed
/// early (`| head`) ends the stream quietly.
async fn stream_body(response: &mut l402_client::reqwest::Response, max: u64, sink: &mut Sink) -> Result<(), Streamed> {
    let mut total: u64 = 0;
    while let Some(chunk) = l402_client::body::next_chunk(response).await.map_err(Streamed::Client)? {
        total = total.saturating_add(chunk.len() as u64);
        if total > max {
            return Err(Streamed::Client(Error::BodyTooLarge { limit: max }));
        }
        match sink {
            Sink::File(f) => f.write_all(&chunk).context("writing the output file").map_err(Streamed::Write)?,
            Sink::Memory(buf) => buf.extend_from_slice(&chunk),
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                if out.write_all(&chunk).and_then(|()| out.flush()).is_err() {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}
