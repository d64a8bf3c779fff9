//! `l402 regtest pay NODE INVOICE`: pays a regtest invoice from an LND node of the network (over gRPC, with
//! its pay-only macaroon) and prints the preimage, so that any L402 client can be tried against `l402 proxy`
//! with the network's payer as its wallet.
//!
//! The invoice is checked before anything else (a BOLT11 string, on regtest, with an amount, not expired): a
//! refusal exits 2 and nothing is paid. The preimage, the command's whole purpose, goes to stdout and nowhere
//! else; a line saying what was paid goes to stderr.

use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use l402_lightning::{PayError, PayRequest, Payer as _};
use l402_proto::Msat;
use l402_proto::invoice::{decode_invoice, network_name};
use l402_proto::lightning_invoice::Currency;

use super::{DirArgs, lnd_node_named, running_state};
use crate::Failure;

pub(crate) const AFTER_HELP: &str = "Exit codes: 0 paid (the preimage on stdout); 2 usage, or an invoice refused \
before paying (not BOLT11, not regtest, no amount, expired), or no such node; 4 the node cannot be reached; 20 the \
payment failed (no money moved); 21 its outcome is unknown (it may have gone through: run the same command again \
to learn it, it does not pay twice).";

#[derive(Args, Debug)]
pub(crate) struct PayArgs {
    /// The LND node that pays: payer (it holds the channel's funds).
    node: String,
    /// The BOLT11 invoice (a regtest one: lnbcrt...).
    invoice: String,
    /// The most to pay in routing fees, in sat (the payer's channel goes straight to the operator: no fee).
    #[arg(long, value_name = "SAT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    max_fee: u64,
    /// How long to keep trying to pay, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = crate::fetch::timeout_secs())]
    timeout: u64,
    #[command(flatten)]
    dir: DirArgs,
}

/// `s` cut to a length fit for an error message (it comes from the command line, maybe from a server).
fn shown(s: &str) -> String {
    let cut: String = s.chars().take(24).collect();
    if cut.len() < s.len() { format!("{cut}…") } else { cut }
}

pub(crate) fn run(args: &PayArgs) -> Result<(), Failure> {
    let (_, info) = decode_invoice(&args.invoice)
        .map_err(|e| anyhow!("{:?} is not a BOLT11 invoice ({e}); nothing was paid", shown(&args.invoice)))?;
    if info.currency != Currency::Regtest {
        return Err(anyhow!(
            "the invoice is for {}, not regtest: this network's nodes pay regtest invoices (lnbcrt...) only; nothing \
             was paid",
            network_name(&info.currency)
        )
        .into());
    }
    let amount = info
        .amount
        .ok_or_else(|| anyhow!("the invoice names no amount: only invoices with one are paid; nothing was paid"))?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    if info.expires_at <= now {
        return Err(anyhow!("the invoice expired {} s ago; nothing was paid", now - info.expires_at).into());
    }
    let dir = &args.dir.dir;
    let state = running_state(dir)?;
    let node = lnd_node_named(&state, dir, &args.node)?;
    let field = |k: &str| node[k].as_str().unwrap_or_default().to_owned();
    let config = l402_lnd::LndConfig::new(&field("rpc_address"), &field("tls_cert"), &field("pay_macaroon"))
        .map_err(|e| anyhow!("the LND node {}: {e}", args.node))?;
    let request = PayRequest {
        bolt11: args.invoice.trim().to_owned(),
        payment_hash: info.payment_hash,
        amount,
        max_fee: Msat::from_sat(args.max_fee),
        timeout: Duration::from_secs(args.timeout),
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| anyhow!(e))?;
    let paid = rt.block_on(async {
        let lnd = l402_lnd::LndNode::connect(config)
            .await
            .map_err(|e| Failure::Code(4, format!("cannot reach the LND node {}: {e}", args.node)))?;
        lnd.pay(&request, &|_| {}).await.map_err(|e| match e {
            PayError::Rejected(_) | PayError::Failed(_) => Failure::Code(20, format!("{e} (no money moved)")),
            PayError::OutcomeUnknown(_) => Failure::Code(
                21,
                format!("{e} (it may have gone through: the same command again follows it, and does not pay twice)"),
            ),
            // Any other error: the node could not be asked to pay (nothing was sent).
            _ => Failure::Code(4, format!("the LND node {}: {e}", args.node)),
        })
    })?;
    if paid.preimage.payment_hash() != info.payment_hash {
        return Err(Failure::Code(
            21,
            "LND reports the payment done, but its preimage does not hash to the invoice's payment hash".into(),
        ));
    }
    eprintln!("l402: paid {} + {} fee from {} for payment {}", paid.amount, paid.fee, args.node, info.payment_hash);
    println!("{}", paid.preimage.to_hex());
    Ok(())
}
