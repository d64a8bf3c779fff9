//! `l402 decode`: show what a challenge, credential, macaroon or invoice holds, as text or JSON.
//!
//! The input's kind is recognized from its shape (a leading `WWW-Authenticate:` / `Authorization:` header name
//! is allowed), in the L402 scheme or the `Payment` scheme (MPP). Secrets are never printed: for a credential,
//! the output says whether the preimage hashes to the payment hash, not what the preimage is; signatures are not
//! shown.

use std::io::Read as _;

use anyhow::{Context, anyhow};
use clap::Args;
use l402_proto::invoice::{InvoiceInfo, decode_invoice, network_name};
use l402_proto::mpp::{ChargeRequest, PaymentChallenge, PaymentCredential};
use l402_proto::{Challenge, Credential, Macaroon, Msat};
use serde_json::{Value, json};

use crate::Failure;

#[derive(Args, Debug)]
pub(crate) struct DecodeArgs {
    /// A WWW-Authenticate or Authorization value, a macaroon (base64 or hex), or a BOLT-11 invoice; `-` or
    /// nothing reads standard input.
    input: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: DecodeArgs) -> Result<(), Failure> {
    let input = match args.input.as_deref() {
        None | Some("-") => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).context("reading standard input")?;
            s
        }
        Some(s) => s.to_owned(),
    };
    let value = decode(input.trim())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&value).map_err(|e| anyhow!(e))?);
    } else {
        print_text(&value, 0);
    }
    Ok(())
}

/// Recognizes the input and decodes it to a JSON description.
pub(crate) fn decode(input: &str) -> anyhow::Result<Value> {
    let (header, rest) = match input.split_once(':') {
        Some((name, rest)) if name.eq_ignore_ascii_case("www-authenticate") => (Some("challenge"), rest.trim()),
        Some((name, rest)) if name.eq_ignore_ascii_case("authorization") => (Some("credential"), rest.trim()),
        _ => (None, input),
    };
    let lower = rest.to_ascii_lowercase();
    let scheme = lower.starts_with("l402 ") || lower.starts_with("lsat ") || lower.starts_with("payment ");
    let looks_like_challenge = lower.contains("invoice=")
        || lower.contains("macaroon=")
        || lower.contains("token=")
        || lower.contains("request=");
    match header {
        Some("challenge") => challenge(rest),
        Some(_) => credential(rest),
        None if scheme && looks_like_challenge => challenge(rest),
        None if scheme => credential(rest),
        None if lower.starts_with("ln") => Ok(json!({ "kind": "invoice", "invoice": invoice(rest)? })),
        None if rest.bytes().all(|b| b.is_ascii_hexdigit()) => {
            let m = Macaroon::from_hex(rest).context("hex macaroon")?;
            Ok(json!({ "kind": "macaroon", "encoding": "hex", "macaroon": macaroon(&m) }))
        }
        None => {
            let m = Macaroon::from_base64(rest).context("not a challenge, credential, invoice or macaroon")?;
            Ok(json!({ "kind": "macaroon", "encoding": "base64", "macaroon": macaroon(&m) }))
        }
    }
}

fn challenge(value: &str) -> anyhow::Result<Value> {
    let payment: Vec<Value> = PaymentChallenge::parse_all([value.as_bytes()]).iter().map(payment_challenge).collect();
    let all = match Challenge::parse_all([value.as_bytes()]) {
        Ok(all) => all,
        Err(_) if !payment.is_empty() => Vec::new(),
        Err(e) => return Err(anyhow!(e).context("challenge")),
    };
    let mut items: Vec<Value> = all
        .iter()
        .map(|c| {
            let hash = c.macaroon.l402_identifier().ok().map(|id| id.payment_hash);
            let inv = decode_invoice(&c.invoice).map(|(_, info)| info);
            json!({
                "scheme": c.scheme.as_str(),
                "version": c.version,
                "macaroon": macaroon(&c.macaroon),
                "invoice": match &inv { Ok(info) => invoice_json(info), Err(e) => json!({ "error": e.to_string() }) },
                "payment_hash_matches_invoice": match (&inv, hash) {
                    (Ok(info), Some(h)) => Value::Bool(info.payment_hash == h),
                    _ => Value::Null,
                },
            })
        })
        .collect();
    items.extend(payment);
    Ok(json!({ "kind": "challenge", "challenges": items }))
}

/// A `Payment` challenge: its parameters, and its request decoded (a charge's invoice checked against it).
fn payment_challenge(c: &PaymentChallenge) -> Value {
    let request = match ChargeRequest::decode(&c.request) {
        Ok(r) => {
            let inv = decode_invoice(&r.method_details.invoice).map(|(_, info)| info);
            json!({
                "amount_sat": r.amount,
                "currency": r.currency,
                "network": r.method_details.network,
                "payment_hash": hex::encode(r.method_details.payment_hash),
                "description": r.description,
                "invoice": match &inv { Ok(info) => invoice_json(info), Err(e) => json!({ "error": e.to_string() }) },
                "invoice_matches_request": inv.as_ref().ok().map(|i| {
                    i.payment_hash.0 == r.method_details.payment_hash && i.amount == Some(Msat::from_sat(r.amount))
                }),
            })
        }
        Err(e) => json!({ "error": e.to_string() }),
    };
    json!({
        "scheme": "Payment",
        "id": c.id,
        "realm": c.realm,
        "method": c.method,
        "intent": c.intent,
        "expires": c.expires,
        "description": c.description,
        "request": request,
    })
}

fn credential(value: &str) -> anyhow::Result<Value> {
    if let Some(cred) = PaymentCredential::from_authorization([value.as_bytes()]).context("Payment credential")? {
        let request = ChargeRequest::decode(&cred.challenge.request).ok();
        let matches = match (cred.charge_preimage(), &request) {
            (Ok(p), Some(r)) => Some(p.payment_hash().0 == r.method_details.payment_hash),
            _ => None,
        };
        return Ok(json!({
            "kind": "credential",
            "form": "Payment",
            "challenge": payment_challenge(&cred.challenge),
            "payload": cred.payload.as_object().map(|m| m.keys().cloned().collect::<Vec<_>>()),
            "preimage_matches_payment_hash": matches,
        }));
    }
    let cred = match Credential::from_authorization([value.as_bytes()]) {
        Ok(c) => c,
        Err(e) => Credential::from_macaroon_header(value.as_bytes()).map_err(|_| anyhow!(e)).context("credential")?,
    };
    let matches = cred.macaroon.l402_identifier().ok().map(|id| id.payment_hash == cred.preimage.payment_hash());
    Ok(json!({
        "kind": "credential",
        "form": format!("{:?}", cred.form),
        "macaroon": macaroon(&cred.macaroon),
        "preimage_matches_payment_hash": matches,
    }))
}

fn macaroon(m: &Macaroon) -> Value {
    let caveats: Vec<String> = m.caveats().map(|c| String::from_utf8_lossy(c).into_owned()).collect();
    let id = match m.l402_identifier() {
        Ok(id) => json!({
            "version": 0,
            "payment_hash": id.payment_hash.to_hex(),
            "token_id": id.token_id.to_hex(),
        }),
        Err(e) => json!({ "error": e.to_string(), "raw_hex": hex::encode(m.identifier()) }),
    };
    json!({
        "location": String::from_utf8_lossy(m.location()),
        "identifier": id,
        "identifier_sha256": hex::encode(m.identifier_hash()),
        "caveats": caveats,
    })
}

fn invoice(s: &str) -> anyhow::Result<Value> {
    let (_, info) = decode_invoice(s).context("invoice")?;
    Ok(invoice_json(&info))
}

fn invoice_json(info: &InvoiceInfo) -> Value {
    json!({
        "network": network_name(&info.currency),
        "amount_msat": info.amount.map(|a| a.0),
        "payment_hash": info.payment_hash.to_hex(),
        "created_at": info.created_at,
        "expires_at": info.expires_at,
        "expired": now_unix() >= info.expires_at,
        "payee": info.payee,
        "description": info.description,
    })
}

/// Text output: the JSON tree, one `key: value` per line, nested by indentation.
fn print_text(value: &Value, depth: usize) {
    let pad = "  ".repeat(depth);
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::Object(_) => {
                        println!("{pad}{k}:");
                        print_text(v, depth + 1);
                    }
                    Value::Array(items) if items.iter().any(|i| i.is_object()) => {
                        for (n, item) in items.iter().enumerate() {
                            println!("{pad}{k}[{n}]:");
                            print_text(item, depth + 1);
                        }
                    }
                    Value::Array(items) => {
                        println!("{pad}{k}:");
                        for item in items {
                            println!("{pad}  - {}", scalar(item));
                        }
                    }
                    _ => println!("{pad}{k}: {}", scalar(v)),
                }
            }
        }
        other => println!("{pad}{}", scalar(other)),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
