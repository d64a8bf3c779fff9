//! `l402 session list|close`: the client's `Payment` sessions (opened by `l402 fetch --prefer-scheme session`),
//! named by session id (the deposit's payment hash). No preimage is ever printed.
//!
//! `close` sends the `close` action to the origin the session was opened with, at the URL it was last used
//! at; the server refunds the unspent balance to the session's return invoice (an amountless invoice of the
//! wallet's own node). The refund is then checked on that node (the return invoice looked up by its hash) and
//! what it received is written to the ledger, where it no longer counts against the budgets.

use anyhow::Context;
use clap::{Args, Subcommand};
use l402_client::StoredSession;
use l402_client::sessions;
use l402_proto::Msat;
use serde_json::json;

use crate::Failure;
use crate::wallet::{StoreArgs, WalletArgs};

#[derive(Subcommand, Debug)]
pub(crate) enum SessionCommand {
    /// List the client's sessions: id (shortened), origin, service, state, deposited, balance, refunded.
    List(ListArgs),
    /// Close a session (by id or unique id prefix) at its own origin, print the refund the server reports and
    /// what the wallet's node actually received; the ledger credits that back.
    Close(Box<CloseArgs>),
}

#[derive(Args, Debug)]
pub(crate) struct ListArgs {
    /// Print JSON (every field, full ids; never the preimage).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args, Debug)]
pub(crate) struct CloseArgs {
    /// The session id, or a unique prefix of it.
    id: String,
    /// Send the close over plain http (the credential is a secret: anyone on the path could read it). For local
    /// tests and demos.
    #[arg(long)]
    allow_http: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    wallet: WalletArgs,
}

pub(crate) fn run(cmd: SessionCommand) -> Result<(), Failure> {
    match cmd {
        SessionCommand::List(args) => list(&args),
        SessionCommand::Close(args) => close(&args),
    }
}

fn msat(v: Option<u64>) -> String {
    v.map_or("-".to_owned(), |m| Msat(m).to_string())
}

fn short(id: &str) -> &str {
    id.get(..16).unwrap_or(id)
}

fn list(args: &ListArgs) -> Result<(), Failure> {
    let store = args.store.open()?;
    let all: Vec<StoredSession> = store.blocking(|c| sessions::list(c)).map_err(crate::fetch::failure)?;
    if args.json {
        println!("{}", serde_json::to_value(&all).context("json")?);
        return Ok(());
    }
    println!(
        "{:<16}  {:<28}  {:<12}  {:<8}  {:>14}  {:>14}  {:>14}",
        "ID", "ORIGIN", "SERVICE", "STATE", "DEPOSITED", "BALANCE", "REFUNDED"
    );
    for s in &all {
        println!(
            "{:<16}  {:<28}  {:<12}  {:<8}  {:>14}  {:>14}  {:>14}",
            short(&s.session_id),
            s.origin,
            s.service,
            s.state,
            Msat(s.deposited_msat()).to_string(),
            msat(s.balance_msat),
            msat(s.refund_received_msat),
        );
    }
    if all.is_empty() {
        eprintln!("l402: no sessions (l402 fetch --prefer-scheme session opens one)");
    }
    Ok(())
}

fn close(args: &CloseArgs) -> Result<(), Failure> {
    crate::wallet::init_logging();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    rt.block_on(async {
        let knobs = crate::fetch::Knobs::paying_nothing(args.allow_http, l402_client::PreferScheme::Session);
        let (client, wallet) = crate::fetch::client(&args.store, &args.wallet, &knobs)?;
        let closed = client.close_session(&args.id).await;
        wallet.shutdown().await;
        let c = closed.map_err(crate::fetch::failure)?;
        if args.json {
            println!(
                "{}",
                json!({
                    "session_id": c.session_id,
                    "origin": c.origin,
                    "refund_msat": c.refund_msat,
                    "refund_status": c.refund_status,
                    "received_msat": c.received_msat,
                    "deposited_msat": c.deposited_msat,
                })
            );
        } else {
            println!(
                "session {} closed at {}: the server refunded {} ({}); the wallet's node received {}; {} was paid in",
                c.session_id,
                c.origin,
                Msat(c.refund_msat),
                c.refund_status,
                msat(c.received_msat),
                Msat(c.deposited_msat),
            );
        }
        Ok(())
    })
}
