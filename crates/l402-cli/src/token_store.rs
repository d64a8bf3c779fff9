//! `l402 token list|show|rm`: the client's token store, named by token id. Neither the macaroon nor the
//! preimage is ever printed (by any command: `l402 fetch --json` names a payment by its hash and token id).

use anyhow::{Context, anyhow, bail};
use clap::Args;
use l402_client::StoredToken;
use l402_client::tokens;
use l402_proto::Msat;
use serde_json::json;

use crate::Failure;
use crate::wallet::StoreArgs;

#[derive(Args, Debug)]
pub(crate) struct ListArgs {
    /// Only tokens of this origin (`scheme://host:port`).
    #[arg(long)]
    origin: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args, Debug)]
pub(crate) struct ShowArgs {
    /// The token id, or a unique prefix of it.
    id: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args, Debug)]
pub(crate) struct RmArgs {
    /// The token id, or a unique prefix of it.
    id: String,
    /// Also remove a token the server refused (the only proof that it was paid for).
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    store: StoreArgs,
}

fn describe(t: &StoredToken) -> String {
    let refused = match (t.refused_at, t.refused_status) {
        (Some(at), status) => format!(" PAID BUT REFUSED (status {} at {at})", status.unwrap_or(0)),
        _ => String::new(),
    };
    let until = t.valid_until.map_or("no expiry".to_owned(), |v| format!("valid until {v}"));
    format!(
        "{}  {:<7} {} service {:?} path {} paid {} + {} fee, {until}{refused}",
        t.token_id,
        t.state,
        t.origin,
        t.service,
        t.path_prefix,
        Msat(t.amount_msat),
        Msat(t.fee_msat)
    )
}

fn one(store: &StoreArgs, id: &str) -> anyhow::Result<(l402_client::Store, StoredToken)> {
    let store = store.open()?;
    let id = id.to_owned();
    let found = store.blocking(|c| tokens::find(c, &id)).context("reading the token store")?;
    match found.len() {
        0 => bail!("no token with id {id:?}"),
        1 => Ok((store, found.into_iter().next().ok_or_else(|| anyhow!("token vanished"))?)),
        n => bail!("{n} tokens start with {id:?}; give more of the id"),
    }
}

pub(crate) fn list(args: ListArgs) -> Result<(), Failure> {
    let store = args.store.open()?;
    let origin = args.origin.clone();
    let all = store.blocking(|c| tokens::list(c, origin.as_deref())).context("reading the token store")?;
    if args.json {
        println!("{}", json!({ "tokens": all }));
    } else if all.is_empty() {
        println!("no tokens");
    } else {
        for t in &all {
            println!("{}", describe(t));
        }
    }
    Ok(())
}

pub(crate) fn show(args: ShowArgs) -> Result<(), Failure> {
    let (_, t) = one(&args.store, &args.id)?;
    if args.json {
        println!("{}", json!(t));
    } else {
        println!("{}", describe(&t));
        println!("payment hash {}", t.payment_hash);
        println!("scheme {}; services {:?}; stored at {}", t.scheme, t.services, t.created_at);
    }
    Ok(())
}

pub(crate) fn rm(args: RmArgs) -> Result<(), Failure> {
    let (store, t) = one(&args.store, &args.id)?;
    if t.state == "refused" && !args.force {
        return Err(Failure::Input(anyhow!(
            "token {} was paid for and refused by the server; it is the proof of payment. Pass --force to remove it",
            t.token_id
        )));
    }
    let id = t.token_id.clone();
    store.blocking(|c| tokens::remove(c, &id)).context("removing the token")?;
    eprintln!("removed token {}", t.token_id);
    Ok(())
}
