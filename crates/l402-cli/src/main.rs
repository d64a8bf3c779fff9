//! `l402`: the command-line front of the toolkit.
//!
//! Each subcommand lives in its own module; this file only parses arguments and maps errors to exit codes:
//! 0 success, 1 refused (a credential that does not verify), 2 bad input or usage. `fetch`, `spend` and `mcp`
//! add the client's codes (3-6 transport/wallet/challenge/store, 10-19 refused before paying, 20-22 after
//! paying, 23-24 reading the response), listed in `fetch.rs`; `regtest pay` uses 4, 20 and 21 in the same sense;
//! `admin` uses 1 for a refusal by the admin API and 3 for a transport error.

mod admin;
mod decode;
mod demo;
mod fetch;
mod keys;
mod mcp;
mod mcp_admin;
mod proxy;
mod regtest;
mod sample_api;
mod session;
mod spend;
mod token;
mod token_store;
mod wallet;

use std::process::ExitCode;

/// mimalloc: cheaper than glibc malloc for the proxy's small per-request allocations across worker threads.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

/// Lightning-paid APIs (L402): put a price on an API (proxy, admin), pay for one (fetch, mcp, spend, session), read and mint
/// tokens (decode, token), and try it all on a local regtest network (demo, regtest).
#[derive(Parser, Debug)]
#[command(name = "l402", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Decode a challenge, credential, macaroon or invoice and show what is inside (never its secrets).
    Decode(decode::DecodeArgs),
    /// Tokens: the client's store (list, show, rm); operator tools (mint offline, verify a credential).
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Send an HTTP request, paying an L402 token, a Payment charge or a Payment session if asked (curl-like; exit codes in `l402 fetch --help`).
    #[command(after_help = FETCH_EXIT_CODES)]
    Fetch(Box<fetch::FetchArgs>),
    /// The client's Payment sessions (opened by fetch --prefer-scheme session): list them, close one for its refund.
    #[command(subcommand)]
    Session(session::SessionCommand),
    /// The client's ledger: payments, what counts against each budget limit, and the limits.
    Spend(Box<spend::SpendArgs>),
    /// An MCP server over stdio: a fetch tool for AI agents (per-call price cap, scheme, budgets) and budget/ledger tools;
    /// with --admin, the proxy's admin API as tools.
    Mcp(Box<mcp::McpArgs>),
    /// A local regtest Lightning network for trying things out: bitcoind, LDK nodes, a sample API and, with --lnd,
    /// real LND nodes that l402 proxy and l402 fetch can use (regtest env; regtest pay for other clients).
    #[command(subcommand)]
    Regtest(regtest::RegtestCommand),
    /// Run the L402 reverse proxy: a Lightning price on any HTTP or gRPC API.
    Proxy(proxy::ProxyArgs),
    /// Drive a running proxy's admin API: services at runtime (list, add, update, delete), tokens, revenue.
    Admin(Box<admin::AdminArgs>),
    /// The whole system on a local regtest network, step by step: 402, payment, 200, reuse, expiry, refusal.
    Demo(demo::DemoArgs),
}

/// A failure with the exit code it maps to.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The input was understood and refused (exit 1).
    Refused(String),
    /// The input or the invocation is wrong (exit 2).
    Input(anyhow::Error),
    /// A failure with its own exit code (the client's, see `fetch.rs`).
    Code(u8, String),
}

const FETCH_EXIT_CODES: &str = "Exit codes: 0 a response was received; 2 usage; 3 HTTP transport error (or a redirect \
that cannot be followed); 4 wallet unavailable; 5 402 without a usable L402 or Payment challenge; 6 local store \
error; refused before paying (an L402 offer or a Payment charge alike): 10 price over --max-cost, 11 amountless \
invoice, 12 wrong network, 13 invoice or charge challenge expired, 14 invoice payment hash differs from the \
macaroon's or the charge's paymentHash, 15 budget exhausted, 16 body not replayable, 17 plain http without \
--allow-http, 18 address refused, 19 a charge's invoice amount differs from its stated amount; 20 payment failed \
(no money moved), 21 payment outcome unknown (not paid again; looked up on the next run), 22 paid but refused \
(token kept, see `l402 token list`; a charge kept in the ledger, see `l402 spend`; a session marked refused, see \
`l402 session list`); 23 body over --max-body, 24 \
--read-timeout passed (a token paid for stays stored); 28 --max-time ran out (before paying, or after paying with the token stored).";

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Input(e)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Decode(args) => decode::run(args),
        Command::Token(cmd) => token::run(cmd),
        Command::Regtest(cmd) => regtest::run(cmd),
        Command::Proxy(args) => proxy::run(args),
        Command::Admin(args) => admin::run(*args),
        Command::Demo(args) => demo::run(args),
        Command::Fetch(args) => fetch::run(*args),
        Command::Spend(args) => spend::run(*args),
        Command::Session(cmd) => session::run(cmd),
        Command::Mcp(args) => mcp::run(*args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Refused(why)) => {
            eprintln!("l402: refused: {why}");
            ExitCode::from(1)
        }
        Err(Failure::Input(e)) => {
            eprintln!("l402: error: {e:#}");
            ExitCode::from(2)
        }
        Err(Failure::Code(code, why)) => {
            eprintln!("l402: {why}");
            ExitCode::from(code)
        }
    }
}
