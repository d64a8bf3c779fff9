//! `l402 spend`: the ledger (every payment the client journaled, with its state, amount, fee and scheme; for a
//! `Payment` charge its state, challenge id and the server's receipt; for a session's deposit or top-up the
//! session and what its refund credited back), what counts
//! against each budget limit now, and the limits themselves (`--set-limit NAME=SAT`, stored in the data
//! directory and shared by every process using it). `--recover` asks the wallet what became of interrupted
//! payments (completing their tokens or releasing their reservations).

use anyhow::{Context, anyhow};
use clap::Args;
use l402_client::budget::Usage;
use l402_client::{LimitKind, Limits, journal};
use l402_proto::Msat;
use serde_json::json;

use crate::Failure;
use crate::wallet::{StoreArgs, WalletArgs};

#[derive(Args, Debug)]
pub(crate) struct SpendArgs {
    /// Set a limit, in sat: per-request, per-origin, per-hour, per-day or total (repeatable).
    #[arg(long = "set-limit", value_name = "NAME=SAT")]
    set: Vec<String>,
    /// Only payments journaled in the last SECS seconds.
    #[arg(long, value_name = "SECS")]
    since: Option<u64>,
    /// Resolve interrupted payments with the wallet first.
    #[arg(long)]
    recover: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    wallet: WalletArgs,
}

pub(crate) fn run(args: SpendArgs) -> Result<(), Failure> {
    if args.recover {
        recover(&args)?;
    }
    let store = args.store.open()?;
    for s in &args.set {
        let (name, sat) = s.split_once('=').ok_or_else(|| anyhow!("--set-limit must be NAME=SAT, got {s:?}"))?;
        let kind = LimitKind::from_name(name.trim())
            .filter(|k| *k != LimitKind::Session)
            .ok_or_else(|| anyhow!("unknown limit {name:?} (per-request, per-origin, per-hour, per-day, total)"))?;
        let sat: u64 = sat.trim().parse().with_context(|| format!("--set-limit {name}: not a number of sat"))?;
        store.blocking(|c| Limits::save(c, kind, sat.saturating_mul(1000))).context("saving the limit")?;
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let since = args.since.map(|s| now.saturating_sub(s));
    let (limits, usage, ledger) = store
        .blocking(|c| Ok((Limits::load(c)?, Usage::read(c, "", now, "")?, journal::ledger(c, since)?)))
        .context("reading the ledger")?;
    let spent: u64 = ledger.iter().filter(|e| e.state == "succeeded").map(|e| e.counted_msat()).sum();
    let fees: u64 = ledger.iter().filter(|e| e.state == "succeeded").filter_map(|e| e.fee_msat).sum();
    let reserved: u64 = ledger.iter().filter(|e| e.state != "succeeded").map(|e| e.counted_msat()).sum();
    if args.json {
        let limits_json: serde_json::Map<String, serde_json::Value> =
            LimitKind::STORED.iter().map(|k| (k.name().to_owned(), json!(limits.get(*k)))).collect();
        let v = json!({
            "limits_msat": limits_json,
            "counted_msat": { "hour": usage.hour, "day": usage.day, "total": usage.total },
            "spent_msat": spent,
            "fees_msat": fees,
            "reserved_msat": reserved,
            "payments": ledger,
        });
        println!("{v}");
        return Ok(());
    }
    println!("limits (amount + fee):");
    for k in LimitKind::STORED {
        let counted = match k {
            LimitKind::PerHour => format!("  ({} counted in the last hour)", Msat(usage.hour)),
            LimitKind::PerDay => format!("  ({} counted in the last day)", Msat(usage.day)),
            LimitKind::Total => format!("  ({} counted)", Msat(usage.total)),
            _ => String::new(),
        };
        println!("  {:<12} {}{counted}", k.name(), Msat(limits.get(k)));
    }
    println!("spent {} (of which fees {}), reserved {}", Msat(spent), Msat(fees), Msat(reserved));
    if ledger.is_empty() {
        println!("no payments");
    }
    for e in &ledger {
        let fee = e.fee_msat.map_or("-".to_owned(), |f| Msat(f).to_string());
        let why = e.failure.as_deref().map(|f| format!(" ({f})")).unwrap_or_default();
        println!(
            "{}  {:<9} {:>12} fee {:>9}  {} {} {}  {}{why}{}",
            e.created_at,
            e.state,
            Msat(e.amount_msat).to_string(),
            fee,
            e.scheme,
            e.origin,
            e.service,
            e.payment_hash,
            charge_note(e) + &bundle_note(e) + &session_note(e),
        );
    }
    Ok(())
}

/// What the ledger line says of a metered bundle: its balance as the server last said it, and whether it said
/// the bundle was used up.
fn bundle_note(e: &journal::LedgerEntry) -> String {
    match (e.balance_msat, e.exhausted_at) {
        (Some(b), Some(_)) => format!("\n    bundle: {b} msat left (used up)"),
        (Some(b), None) => format!("\n    bundle: {b} msat left when last used"),
        _ => String::new(),
    }
}

/// What the ledger line says of a `Payment` session's deposit or top-up: the session, and the refund credited
/// back to this payment (it no longer counts against the budgets).
fn session_note(e: &journal::LedgerEntry) -> String {
    let Some(id) = &e.session_id else { return String::new() };
    let what = if *id == e.payment_hash { "deposit of" } else { "top-up of" };
    let refunded = e.refunded_msat.map(|r| format!("; {r} msat refunded")).unwrap_or_default();
    format!("\n    session {what} {}{refunded} (see `l402 session list`)", id.get(..16).unwrap_or(id))
}

/// What the ledger line says of a `Payment` charge: its state, challenge id and receipt.
fn charge_note(e: &journal::LedgerEntry) -> String {
    if e.session_id.is_some() {
        return String::new();
    }
    let Some(state) = &e.charge_state else { return String::new() };
    let mut note = format!("\n    charge {state}, challenge {}", e.challenge_id.as_deref().unwrap_or("-"));
    if let Some(reference) = &e.receipt_reference {
        note.push_str(&format!(
            "; receipt {} reference {reference} challenge {}",
            e.receipt_status.as_deref().unwrap_or("-"),
            e.receipt_challenge_id.as_deref().unwrap_or("-")
        ));
    }
    note
}

fn recover(args: &SpendArgs) -> Result<(), Failure> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    rt.block_on(async {
        let knobs = crate::fetch::Knobs::paying_nothing(false, l402_client::PreferScheme::L402); // recovery pays nothing
        let (client, wallet) = crate::fetch::client(&args.store, &args.wallet, &knobs)?;
        let r = client.recover().await;
        wallet.shutdown().await;
        let r = r.map_err(crate::fetch::failure)?;
        eprintln!(
            "l402: recovery: {} completed, {} released, {} still unknown",
            r.completed.len(),
            r.released.len(),
            r.unknown.len()
        );
        Ok(())
    })
}
