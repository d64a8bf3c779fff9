//! `l402`: the command-line front of the toolkit.
//!
//! Each subcommand lives in its own module; this file only parses arguments and maps errors to exit codes:
//! 0 success, 1 refused (a credential that does not verify), 2 bad input or usage.

mod decode;
mod keys;
mod regtest;
mod token;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Lightning-paid APIs (L402): decode, mint and verify tokens; run a local regtest network.
#[derive(Parser, Debug)]
#[command(name = "l402", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Decode a challenge, credential, macaroon or invoice and show what is inside (never its secrets).
    Decode(decode::DecodeArgs),
    /// Operator tools for tokens: mint offline from a root key, verify a credential.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// A local regtest Lightning network (bitcoind and LDK nodes) for trying things out.
    #[command(subcommand)]
    Regtest(regtest::RegtestCommand),
}

/// A failure with the exit code it maps to.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The input was understood and refused (exit 1).
    Refused(String),
    /// The input or the invocation is wrong (exit 2).
    Input(anyhow::Error),
}

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
    }
}
