//! `l402 token mint` and `l402 token verify`: what an operator does with a root key, offline; and `l402 token
//! list|show|rm`: the client's token store (no secret is ever printed: a token is named by its id).

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow};
use clap::{Args, Subcommand};
use l402_proto::caveat::parse_services;
use l402_proto::{
    Access, Caveat, Credential, Identifier, Macaroon, MacaroonKey, PaymentHash, Preimage, TokenId, verify,
};
use serde_json::json;

use crate::Failure;
use crate::keys::{RootKeyArgs, random32};

#[derive(Subcommand, Debug)]
pub(crate) enum TokenCommand {
    /// Mint a macaroon offline from a root key, identifier parts and caveats; prints it as base64.
    Mint(MintArgs),
    /// Verify a credential (`L402 <macaroon>:<preimage>`) against a root key and a clock.
    Verify(VerifyArgs),
    /// List the client's stored tokens (valid and refused).
    List(crate::token_store::ListArgs),
    /// Show one stored token (by id or unique id prefix); never its macaroon or preimage.
    Show(crate::token_store::ShowArgs),
    /// Remove a stored token (by id or unique id prefix). A refused token is the proof of payment: keep a copy.
    Rm(crate::token_store::RmArgs),
}

#[derive(Args, Debug)]
pub(crate) struct MintArgs {
    #[command(flatten)]
    key: RootKeyArgs,
    /// The payment hash the token is paid under (64 hex digits).
    #[arg(long, value_name = "HEX", required_unless_present = "preimage", conflicts_with = "preimage")]
    payment_hash: Option<String>,
    /// Derive the payment hash from this preimage (64 hex digits), for testing without an invoice.
    #[arg(long, value_name = "HEX")]
    preimage: Option<String>,
    /// The token id (64 hex digits); random if absent.
    #[arg(long, value_name = "HEX")]
    token_id: Option<String>,
    /// Services granted, `name[:tier]`, comma-separated or repeated.
    #[arg(long = "service", value_name = "NAME[:TIER]", value_delimiter = ',')]
    services: Vec<String>,
    /// Capabilities granted on a service: `SERVICE=cap1,cap2` (empty list: none).
    #[arg(long = "capabilities", value_name = "SERVICE=CAPS")]
    capabilities: Vec<String>,
    /// Expiry on a service: `SERVICE=UNIX_SECONDS`.
    #[arg(long = "valid-until", value_name = "SERVICE=UNIX")]
    valid_until: Vec<String>,
    /// Any other caveat, `condition=value`, appended last.
    #[arg(long = "caveat", value_name = "COND=VALUE")]
    caveats: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    key: RootKeyArgs,
    /// The service being accessed.
    #[arg(long)]
    service: String,
    /// The capability required, if any.
    #[arg(long)]
    capability: Option<String>,
    /// The time to verify at, Unix seconds (default: now).
    #[arg(long, value_name = "UNIX")]
    now: Option<u64>,
    /// The credential: an Authorization value (`L402 <macaroon>:<preimage>`) or a hex `Macaroon` header value.
    /// Read from standard input if absent, so it stays out of the process list.
    credential: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(cmd: TokenCommand) -> Result<(), Failure> {
    match cmd {
        TokenCommand::Mint(args) => mint(args).map_err(Failure::Input),
        TokenCommand::Verify(args) => verify_cmd(args),
        TokenCommand::List(args) => crate::token_store::list(args),
        TokenCommand::Show(args) => crate::token_store::show(args),
        TokenCommand::Rm(args) => crate::token_store::rm(args),
    }
}

fn mint(args: MintArgs) -> anyhow::Result<()> {
    let root = args.key.load()?;
    let payment_hash = match (&args.payment_hash, &args.preimage) {
        (Some(h), _) => PaymentHash::from_hex(h).context("--payment-hash")?,
        (None, Some(p)) => Preimage::from_hex(p).context("--preimage")?.payment_hash(),
        (None, None) => return Err(anyhow!("pass --payment-hash or --preimage")),
    };
    let token_id = match &args.token_id {
        Some(hex) => TokenId::from_hex(hex).context("--token-id")?,
        None => TokenId(random32()?),
    };
    let mut caveats = Vec::new();
    if !args.services.is_empty() {
        let joined = args
            .services
            .iter()
            .map(|s| if s.contains(':') { s.clone() } else { format!("{s}:0") })
            .collect::<Vec<_>>()
            .join(",");
        let services = parse_services(&joined).ok_or_else(|| anyhow!("--service must be NAME[:TIER]"))?;
        caveats.push(Caveat::services(&services));
    }
    for c in &args.capabilities {
        let (svc, caps) = c.split_once('=').ok_or_else(|| anyhow!("--capabilities must be SERVICE=CAPS"))?;
        let caps: Vec<&str> = caps.split(',').filter(|s| !s.is_empty()).collect();
        caveats.push(Caveat::capabilities(svc, &caps));
    }
    for v in &args.valid_until {
        let (svc, t) = v.split_once('=').ok_or_else(|| anyhow!("--valid-until must be SERVICE=UNIX"))?;
        let t: u64 = t.parse().context("--valid-until time")?;
        caveats.push(Caveat::valid_until(svc, t));
    }
    for c in &args.caveats {
        caveats.push(Caveat::parse(c.as_bytes()).context("--caveat")?);
    }
    let id = Identifier::new(payment_hash, token_id);
    let mac = Macaroon::mint(&root, &id, &caveats);
    if args.json {
        let out = json!({
            "macaroon": mac.to_base64(),
            "token_id": token_id.to_hex(),
            "payment_hash": payment_hash.to_hex(),
            "identifier_sha256": hex::encode(mac.identifier_hash()),
            "caveats": caveats.iter().map(ToString::to_string).collect::<Vec<_>>(),
        });
        println!("{out}");
    } else {
        println!("{}", mac.to_base64());
        eprintln!("token id {token_id}");
    }
    Ok(())
}

fn verify_cmd(args: VerifyArgs) -> Result<(), Failure> {
    let root = args.key.load()?;
    let input = match args.credential {
        Some(c) => c,
        None => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).context("reading standard input")?;
            s
        }
    };
    let input = input.trim();
    let input = input.strip_prefix("Authorization:").map(str::trim).unwrap_or(input);
    let cred = Credential::from_authorization([input.as_bytes()])
        .or_else(|e| Credential::from_macaroon_header(input.as_bytes()).map_err(|_| e))
        .map_err(|e| Failure::Refused(format!("credential does not parse: {e}")))?;
    let now = match args.now {
        Some(t) => t,
        None => SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| anyhow!(e))?.as_secs(),
    };
    let access = Access { service: &args.service, capability: args.capability.as_deref(), now_unix: now };
    let token_id = cred.macaroon.l402_identifier().ok().map(|id| id.token_id.to_hex());
    match verify(&cred.macaroon, &cred.preimage, &MacaroonKey::derive(&root), &access) {
        Ok(ok) => {
            if args.json {
                let out = json!({ "valid": true, "token_id": ok.token_id.to_hex(), "valid_until": ok.valid_until });
                println!("{out}");
            } else {
                let until = ok.valid_until.map_or("never expires".to_owned(), |t| format!("valid until {t}"));
                println!("valid: token {} for service {} ({until})", ok.token_id, args.service);
            }
            Ok(())
        }
        Err(e) => {
            if args.json {
                let out =
                    json!({ "valid": false, "token_id": token_id, "reason": e.reason(), "message": e.to_string() });
                println!("{out}");
            }
            Err(Failure::Refused(format!("{e} ({})", e.reason())))
        }
    }
}
