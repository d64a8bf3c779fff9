//! `l402 regtest env NODE`: what another program needs to use an LND node of the network.
//!
//! The network's two LND nodes have fixed parts: the operator receives (the channel's far end: it issues
//! invoices, and the proxy holds only its invoice macaroon), the payer pays (it holds the channel's funds; the
//! client holds a pay-only macaroon). So `env operator` prints a whole `l402 proxy` config, listening on
//! [`PROXY_LISTEN`] in front of the network's sample API, and `env payer` prints the environment `l402 fetch`
//! (and `spend`, `token`, `mcp`) reads, to `eval`. Both name files (certificate, macaroon) by path: no
//! macaroon ever reaches the terminal.

use std::path::Path;

use anyhow::anyhow;
use clap::Args;
use serde_json::{Value, json};

use super::{DirArgs, dir_flag, lnd_node_named, running_state, shell_quote};

/// Where the proxy of `env operator`'s config listens.
pub(crate) const PROXY_LISTEN: &str = "127.0.0.1:8402";
/// A URL of the sample API behind that proxy.
pub(crate) const SAMPLE_URL: &str = "http://127.0.0.1:8402/weather/today";
/// The price of the config's service, sat.
const PRICE_SAT: u64 = 10;

pub(crate) const AFTER_HELP: &str = "Nodes: operator (prints an l402 proxy config: l402 regtest env operator > \
l402.toml && l402 proxy --config l402.toml) and payer (prints shell exports for l402 fetch, spend, token and mcp: \
eval \"$(l402 regtest env payer)\"). The payer's tokens and ledger are kept in the network's directory, apart from \
your own. Only the LND nodes of a network started with --lnd: the LDK nodes live inside the network's process.";

#[derive(Args, Debug)]
pub(crate) struct EnvArgs {
    /// The LND node: operator (for l402 proxy) or payer (for l402 fetch).
    node: String,
    /// Print JSON (the same content, as fields).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    dir: DirArgs,
}

/// The variables `env payer` unsets: each would pick another wallet, or conflict with the LND options.
const UNSET: [&str; 3] = ["L402_LNDCONNECT", "L402_LNDCONNECT_FILE", "L402_LDK_DIR"];

pub(crate) fn run(args: &EnvArgs) -> anyhow::Result<()> {
    let dir = &args.dir.dir;
    let state = running_state(dir)?;
    let node = lnd_node_named(&state, dir, &args.node)?;
    let field = |k: &str| node[k].as_str().map(str::to_owned).ok_or_else(|| anyhow!("state.json: no {k}"));
    match args.node.as_str() {
        "operator" => {
            let api = state["sample_api"].as_str().ok_or_else(|| anyhow!("state.json: no sample_api"))?;
            let (address, cert, macaroon) = (field("rpc_address")?, field("tls_cert")?, field("invoice_macaroon")?);
            let config = proxy_config(dir, api, &address, &cert, &macaroon);
            if args.json {
                let v = json!({
                    "node": "operator",
                    "listen": PROXY_LISTEN,
                    "lightning": { "backend": "lnd", "address": address, "tls_cert": cert, "macaroon": macaroon },
                    "proxy_config": config,
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{config}");
            }
        }
        "payer" => {
            let vars = [
                ("L402_LND_ADDRESS", field("rpc_address")?),
                ("L402_LND_TLS_CERT", field("tls_cert")?),
                ("L402_LND_MACAROON", field("pay_macaroon")?),
                ("L402_DATA_DIR", dir.join("client").display().to_string()),
            ];
            if args.json {
                let env: serde_json::Map<String, Value> =
                    vars.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
                println!("{}", serde_json::to_string_pretty(&json!({ "node": "payer", "env": env, "unset": UNSET }))?);
            } else {
                println!(
                    "# l402 fetch (and spend, token, mcp) paying from the LND node payer of the regtest network in {},\n\
                     # with its pay-only macaroon; tokens and ledger in the network's directory. Use: eval \"$(l402 \
                     regtest env payer{})\"",
                    dir.display(),
                    dir_flag(dir)
                );
                println!("unset {}", UNSET.join(" "));
                for (k, v) in vars {
                    println!("export {k}={}", shell_quote(&v));
                }
            }
        }
        other => {
            return Err(anyhow!(
                "{other} is not one of the network's parts: operator (for l402 proxy) or payer (for l402 fetch)"
            ));
        }
    }
    Ok(())
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    // JSON's string escapes are a subset of TOML's basic-string escapes.
    Value::from(s).to_string()
}

/// The `l402 proxy` config: the sample API behind a price, the operator's LND issuing the invoices.
fn proxy_config(dir: &Path, api: &str, address: &str, cert: &str, macaroon: &str) -> String {
    format!(
        "# l402 proxy in front of the sample API of the regtest network in {net}, its invoices issued by the\n\
         # network's LND node operator. Made by `l402 regtest env operator{flag}`; every key: l402.sample.toml.\n\
         # Run: l402 proxy --config l402.toml\n\
         listen = {listen}\n\
         \n\
         # Tokens, kept with the network (the next `l402 regtest up` clears them with it).\n\
         [store]\n\
         kind = \"sqlite\"\n\
         path = {db}\n\
         \n\
         [[service]]\n\
         name = \"weather\"\n\
         path = \"/weather/*\"\n\
         upstream = {api}\n\
         price_sat = {PRICE_SAT}\n\
         \n\
         # The operator's LND: its gRPC address, certificate and invoice macaroon (it can issue invoices, not pay).\n\
         [lightning]\n\
         backend = \"lnd\"\n\
         address = {address}\n\
         tls_cert = {cert}\n\
         macaroon = {macaroon}\n",
        net = dir.display(),
        flag = dir_flag(dir),
        listen = toml_str(PROXY_LISTEN),
        db = toml_str(&dir.join("proxy.db").display().to_string()),
        api = toml_str(api),
        address = toml_str(address),
        cert = toml_str(cert),
        macaroon = toml_str(macaroon),
    )
}
