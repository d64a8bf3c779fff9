//! Reading secrets for operator commands without putting them on the command line by default: a root key comes
//! from a file or the `L402_ROOT_KEY` environment variable (a `--root-key` flag exists for scripts and tests but
//! shows up in `ps`).

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use l402_proto::RootKey;

/// Where to read the root key from.
#[derive(Args, Debug)]
pub(crate) struct RootKeyArgs {
    /// File holding the root key as 64 hex digits (or 32 raw bytes).
    #[arg(long, value_name = "PATH", conflicts_with = "root_key")]
    root_key_file: Option<PathBuf>,
    /// The root key as 64 hex digits. Prefer --root-key-file or L402_ROOT_KEY: arguments are visible to
    /// other users of the machine.
    #[arg(long, env = "L402_ROOT_KEY", hide_env_values = true, value_name = "HEX")]
    root_key: Option<String>,
}

impl RootKeyArgs {
    pub(crate) fn load(&self) -> anyhow::Result<RootKey> {
        if let Some(path) = &self.root_key_file {
            let bytes = std::fs::read(path).with_context(|| format!("reading root key file {}", path.display()))?;
            if let Ok(raw) = <[u8; 32]>::try_from(bytes.as_slice()) {
                return Ok(RootKey(raw));
            }
            let text = String::from_utf8(bytes).context("root key file is neither 32 bytes nor hex text")?;
            return RootKey::from_hex(text.trim()).context("root key file");
        }
        match &self.root_key {
            Some(hex) => RootKey::from_hex(hex.trim()).context("root key"),
            None => bail!("no root key: pass --root-key-file PATH or set L402_ROOT_KEY"),
        }
    }
}

/// 32 random bytes from the operating system.
pub(crate) fn random32() -> anyhow::Result<[u8; 32]> {
    let mut out = [0u8; 32];
    getrandom::fill(&mut out).map_err(|e| anyhow::anyhow!("no randomness from the OS: {e}"))?;
    Ok(out)
}
