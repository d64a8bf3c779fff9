//! The master secret that stateless tokens are derived from, so that a challenge writes nothing to the store
//! and a verification reads nothing from it.
//!
//! A stateless token's 32-byte id is `mint time (u64, big-endian) | 8 random bytes | tag`, where the 16-byte
//! tag is `HMAC-SHA256(master, "l402 stateless token id v1" | first 16 bytes)` truncated: the paywall tells
//! from the id alone, with no store read, that the token is stateless and which of its master keys minted it.
//! The token's root key is `HMAC-SHA256(master, "l402 stateless root key v1" | token id)`. The identifier
//! stays Aperture's (version 0, payment hash, token id), so the tokens are byte-compatible; a token id minted
//! the old way (32 random bytes, root key in the store) matches a tag with probability 2^-128.
//!
//! Rotation: [`MasterKeys`] is a list, the first mints and every one verifies, so a new key is put first and
//! the old one is kept after it until the tokens it minted have expired.
//!
//! The secret is never printed: `Debug` is redacted and no error carries it. [`MasterKey::load_or_create`]
//! keeps it in a file of 64 hex digits, created `0600` (atomically: instances starting together on a shared
//! directory all end up with the same key).

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use l402_proto::{RootKey, TokenId};
use sha2::Sha256;
use thiserror::Error;

type HmacSha256 = Hmac<Sha256>;

const TOKEN_ID_TAG: &[u8] = b"l402 stateless token id v1";
const ROOT_KEY_TAG: &[u8] = b"l402 stateless root key v1";
const PAYMENT_ID_TAG: &[u8] = b"l402 payment challenge id v1";

/// Why a master key could not be loaded or created. Never carries the secret.
#[derive(Debug, Error)]
pub enum SecretError {
    /// The file could not be read, created or written.
    #[error("master key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The file (or value) is not 64 hex digits.
    #[error("master key {what}: not 64 hex digits (32 bytes)")]
    Format {
        /// Where the value came from (a path, or "value").
        what: String,
    },
    /// No randomness for a new key.
    #[error("no randomness for a new master key: {0}")]
    Random(String),
    /// An empty list of master keys.
    #[error("no master key")]
    Empty,
}

/// A 32-byte master secret.
#[derive(Clone)]
pub struct MasterKey {
    mac: HmacSha256,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SecretError + '_ {
    move |source| SecretError::Io { path: path.to_owned(), source }
}

impl MasterKey {
    /// The key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        // HMAC takes keys of any length.
        let mac = <HmacSha256 as Mac>::new_from_slice(bytes).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
        Self { mac }
    }

    /// The key from 64 hex digits (surrounding blanks ignored).
    pub fn from_hex(s: &str) -> Result<Self, SecretError> {
        Self::parse(s, "value")
    }

    fn parse(s: &str, what: &str) -> Result<Self, SecretError> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut bytes).map_err(|_| SecretError::Format { what: what.to_owned() })?;
        Ok(Self::from_bytes(&bytes))
    }

    /// A fresh random key.
    pub fn generate() -> Result<Self, SecretError> {
        Ok(Self::from_bytes(&random_bytes()?))
    }

    /// Reads the key at `path`; creates it first (32 random bytes as hex, mode `0600`, parent directories
    /// `0700`) when there is no such file. A file readable by group or others is used, with a warning naming
    /// the path.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretError> {
        match std::fs::read_to_string(path) {
            Ok(s) => return Self::loaded(path, &s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(path)(e)),
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io(dir))?;
        }
        // Written whole under a temporary name, then linked into place: linking never replaces a file, so
        // of several instances creating it at once one wins and the others read its key.
        let bytes = random_bytes()?;
        let tmp = path.with_extension(format!("tmp-{}", hex::encode(&random_bytes()?[..8])));
        let written = (|| {
            let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
            f.write_all(format!("{}\n", hex::encode(bytes)).as_bytes())?;
            f.sync_all()
        })();
        let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                tracing::info!(path = %path.display(), "created a new master key");
                Ok(Self::from_bytes(&bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let s = std::fs::read_to_string(path).map_err(io(path))?;
                Self::loaded(path, &s)
            }
            Err(e) => Err(io(path)(e)),
        }
    }

    fn loaded(path: &Path, contents: &str) -> Result<Self, SecretError> {
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "the master key file is readable by others: chmod 600 it");
            }
        }
        Self::parse(contents, &path.display().to_string())
    }

    fn hmac(&self, domain: &[u8], msg: &[u8]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(domain);
        mac.update(msg);
        mac.finalize().into_bytes().into()
    }

    /// Whether `token_id` was minted under this key (constant time in the tag).
    fn minted(&self, token_id: &TokenId) -> bool {
        let mut mac = self.mac.clone();
        mac.update(TOKEN_ID_TAG);
        mac.update(&token_id.0[..16]);
        mac.verify_truncated_left(&token_id.0[16..]).is_ok()
    }
}

fn random_bytes() -> Result<[u8; 32], SecretError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| SecretError::Random(e.to_string()))?;
    Ok(b)
}

/// The master keys of a paywall: the first mints, every one verifies (rotation).
#[derive(Clone, Debug)]
pub struct MasterKeys {
    keys: Vec<MasterKey>,
}

impl MasterKeys {
    /// The keys, the minting one first. Refuses an empty list.
    pub fn new(keys: Vec<MasterKey>) -> Result<Self, SecretError> {
        if keys.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Self { keys })
    }

    /// One key, minting and verifying.
    pub fn single(key: MasterKey) -> Self {
        Self { keys: vec![key] }
    }

    /// Loads each file ([`MasterKey::load_or_create`]); only the first, the minting key, is created when
    /// missing (a retired key that is gone is an error, not a new key).
    pub fn load(paths: &[PathBuf]) -> Result<Self, SecretError> {
        let mut keys = Vec::with_capacity(paths.len());
        for (i, p) in paths.iter().enumerate() {
            keys.push(if i == 0 {
                MasterKey::load_or_create(p)?
            } else {
                let s = std::fs::read_to_string(p).map_err(io(p))?;
                MasterKey::loaded(p, &s)?
            });
        }
        Self::new(keys)
    }

    /// A new stateless token id minted at `now` (Unix seconds) under the first key.
    pub fn mint_token_id(&self, now: u64) -> Result<TokenId, SecretError> {
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&now.to_be_bytes());
        id[8..16].copy_from_slice(&random_bytes()?[..8]);
        let tag = self.keys[0].hmac(TOKEN_ID_TAG, &id[..16]);
        id[16..].copy_from_slice(&tag[..16]);
        Ok(TokenId(id))
    }

    /// The index of the key that minted `token_id`, if one of these did (a stateless token of ours).
    pub fn minted_by(&self, token_id: &TokenId) -> Option<usize> {
        self.keys.iter().position(|k| k.minted(token_id))
    }

    /// The root key of a stateless token, if one of these keys minted it.
    pub fn root_key(&self, token_id: &TokenId) -> Option<RootKey> {
        let key = &self.keys[self.minted_by(token_id)?];
        Some(RootKey(key.hmac(ROOT_KEY_TAG, &token_id.0)))
    }

    /// The HMAC secrets of `Payment` challenge ids, one per key in the same order (the first issues, all
    /// verify): `HMAC-SHA256(master, "l402 payment challenge id v1")`, so instances sharing master keys
    /// verify each other's challenges.
    pub fn payment_secrets(&self) -> Vec<[u8; 32]> {
        self.keys.iter().map(|k| k.hmac(PAYMENT_ID_TAG, &[])).collect()
    }

    /// When a stateless token id says it was minted (Unix seconds).
    pub fn minted_at(token_id: &TokenId) -> u64 {
        let mut at = [0u8; 8];
        at.copy_from_slice(&token_id.0[..8]);
        u64::from_be_bytes(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_key_and_time_and_random_ids_are_not_ours() {
        let old = MasterKey::from_bytes(&[1; 32]);
        let new = MasterKey::from_bytes(&[2; 32]);
        let before = MasterKeys::single(old.clone());
        let rotated = MasterKeys::new(vec![new, old]).expect("keys");
        let id = before.mint_token_id(1_700_000_000).expect("id");
        assert_eq!(before.minted_by(&id), Some(0));
        assert_eq!(rotated.minted_by(&id), Some(1), "the retired key still verifies");
        assert_eq!(rotated.root_key(&id).map(|k| k.0), before.root_key(&id).map(|k| k.0));
        assert_eq!(MasterKeys::minted_at(&id), 1_700_000_000);
        let fresh = rotated.mint_token_id(1).expect("id");
        assert_eq!(rotated.minted_by(&fresh), Some(0), "the first key mints");
        assert_eq!(before.minted_by(&fresh), None);
        let mut flipped = id;
        flipped.0[9] ^= 1;
        assert_eq!(before.minted_by(&flipped), None);
        assert_eq!(before.minted_by(&TokenId([7; 32])), None);
        assert_ne!(before.mint_token_id(1).expect("id"), before.mint_token_id(1).expect("id"));
    }

    #[test]
    fn the_key_file_is_created_0600_once_and_read_back() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("keys/master.key");
        let a = MasterKeys::single(MasterKey::load_or_create(&path).expect("create"));
        let mode = std::fs::metadata(&path).expect("file").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(path.parent().expect("dir")).expect("dir").permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        let b = MasterKeys::single(MasterKey::load_or_create(&path).expect("read"));
        let id = a.mint_token_id(5).expect("id");
        assert_eq!(b.minted_by(&id), Some(0), "the same key after a restart");
        assert!(format!("{a:?}").contains("redacted"));
        let text = std::fs::read_to_string(&path).expect("text");
        assert!(!format!("{a:?}").contains(text.trim()));
        std::fs::write(dir.path().join("bad.key"), "not hex").expect("write");
        let err = MasterKey::load_or_create(&dir.path().join("bad.key")).expect_err("bad");
        assert!(matches!(err, SecretError::Format { .. }), "{err}");
        let missing = MasterKeys::load(&[path.clone(), dir.path().join("retired.key")]).expect_err("retired gone");
        assert!(matches!(missing, SecretError::Io { .. }));
    }

    #[test]
    fn instances_creating_the_key_at_once_agree_on_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("master.key");
        let p = path.clone();
        let keys: Vec<_> = l402_regtest::at_once(8, move || MasterKey::load_or_create(&p).expect("load or create"));
        let id = MasterKeys::single(keys[0].clone()).mint_token_id(1).expect("id");
        for k in keys {
            assert_eq!(MasterKeys::single(k).minted_by(&id), Some(0));
        }
        let leftovers = std::fs::read_dir(dir.path()).expect("dir").count();
        assert_eq!(leftovers, 1, "no temporary file left behind");
    }
}
