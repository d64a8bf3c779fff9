//! `l402 admin`: drives a running proxy's admin API (the `[admin]` listener): services at runtime (list, add,
//! update, delete), tokens (list, revoke), revenue and sessions. The admin token is read from `--token-file` or the
//! `L402_ADMIN_TOKEN` environment variable (never from the command line, where other users can read it); it
//! is never printed. Answers are printed as JSON; a refusal prints the API's reason and exits 1, a
//! connection failure exits 3.

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use clap::{Args, Subcommand};
use reqwest::Method;

use crate::Failure;

#[derive(Args, Debug)]
pub(crate) struct AdminArgs {
    /// The admin listener (`[admin] listen` of the proxy's config).
    #[arg(long, default_value = "http://127.0.0.1:9090", global = true)]
    url: String,
    /// A file holding the admin token (else the environment variable L402_ADMIN_TOKEN).
    #[arg(long, value_name = "FILE", global = true)]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand, Debug)]
enum AdminCommand {
    /// Services at runtime: checked as the config file's, applied at once, kept in the store.
    #[command(subcommand)]
    Services(ServicesCommand),
    /// Tokens the proxy minted.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Revenue per service.
    Revenue,
    /// Sessions (the Payment scheme's session intent), newest first: balance, spent, refunded, state.
    Sessions {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

#[derive(Subcommand, Debug)]
enum ServicesCommand {
    /// The live services, in matching order (literal header values redacted).
    List,
    /// Adds a service from a JSON file holding an object with the keys of a `[[service]]` table.
    Add {
        /// The JSON file.
        file: PathBuf,
    },
    /// Replaces a service with the one in a JSON file (its `name` must be NAME, or absent).
    Update {
        /// The service.
        name: String,
        /// The JSON file.
        file: PathBuf,
    },
    /// Deletes a service (it stays deleted across restarts, even if the config file has it).
    Delete {
        /// The service.
        name: String,
    },
}

#[derive(Subcommand, Debug)]
enum TokensCommand {
    /// The newest tokens (one page).
    List {
        /// How many (at most 10000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Only this service's tokens.
        #[arg(long)]
        service: Option<String>,
    },
    /// Revokes a token by id (64 hex digits): refused by every instance within the revocation bound.
    Revoke {
        /// The token id.
        id: String,
    },
}

/// A path segment, percent-encoded (a service name or token id goes in the URL path).
pub(crate) fn segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The admin token: from `file`, else the environment variable `L402_ADMIN_TOKEN`.
pub(crate) fn token(file: Option<&std::path::Path>) -> anyhow::Result<String> {
    let t = match file {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading the admin token file {}", path.display()))?
        }
        None => std::env::var("L402_ADMIN_TOKEN")
            .map_err(|_| anyhow!("no admin token: give --token-file FILE or set L402_ADMIN_TOKEN"))?,
    };
    let t = t.trim().to_owned();
    if t.is_empty() {
        return Err(anyhow!("the admin token is empty"));
    }
    Ok(t)
}

fn read_json(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let body = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice::<serde_json::Value>(&body).with_context(|| format!("{}: not JSON", path.display()))?;
    Ok(body)
}

pub(crate) fn run(args: AdminArgs) -> Result<(), Failure> {
    let token = token(args.token_file.as_deref())?;
    let base = args.url.trim_end_matches('/').to_owned();
    let (method, path, body) = match &args.command {
        AdminCommand::Services(ServicesCommand::List) => (Method::GET, "/admin/services".to_owned(), None),
        AdminCommand::Services(ServicesCommand::Add { file }) => {
            (Method::POST, "/admin/services".to_owned(), Some(read_json(file)?))
        }
        AdminCommand::Services(ServicesCommand::Update { name, file }) => {
            (Method::PUT, format!("/admin/services/{}", segment(name)), Some(read_json(file)?))
        }
        AdminCommand::Services(ServicesCommand::Delete { name }) => {
            (Method::DELETE, format!("/admin/services/{}", segment(name)), None)
        }
        AdminCommand::Tokens(TokensCommand::List { limit, service }) => {
            let mut p = format!("/admin/tokens?limit={limit}");
            if let Some(s) = service {
                p.push_str(&format!("&service={}", segment(s)));
            }
            (Method::GET, p, None)
        }
        AdminCommand::Tokens(TokensCommand::Revoke { id }) => {
            (Method::POST, format!("/admin/tokens/{}/revoke", segment(id)), None)
        }
        AdminCommand::Revenue => (Method::GET, "/admin/revenue".to_owned(), None),
        AdminCommand::Sessions { limit } => (Method::GET, format!("/admin/sessions?limit={limit}"), None),
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    rt.block_on(call(&base, method, &path, body, &token))
}

/// One call to the admin API: its status and body, or why no answer came.
pub(crate) async fn request(
    base: &str,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
    token: &str,
) -> Result<(u16, String), String> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let mut req = client.request(method, format!("{base}{path}")).bearer_auth(token);
    if let Some(b) = body {
        req = req.header(reqwest::header::CONTENT_TYPE, "application/json").body(b);
    }
    let resp = req.send().await.map_err(|e| format!("admin API {base}: {e}"))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| format!("admin API {base}: {e}"))?;
    Ok((status, text))
}

/// The reason in a refusal's body (`{"error": ...}`), else its text.
pub(crate) fn reason(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| text.trim().to_owned())
}

async fn call(base: &str, method: Method, path: &str, body: Option<Vec<u8>>, token: &str) -> Result<(), Failure> {
    let (status, text) = request(base, method, path, body, token).await.map_err(|e| Failure::Code(3, e))?;
    if !(200..300).contains(&status) {
        return Err(Failure::Refused(format!("{status} {}", reason(&text))));
    }
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) => println!("{}", serde_json::to_string_pretty(&v).unwrap_or(text)),
        Err(_) if text.is_empty() => println!("{status}"),
        Err(_) => println!("{text}"),
    }
    Ok(())
}
