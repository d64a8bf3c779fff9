//! Valid tokens minted by the bench for the rotation runs, a million of them in seconds.
//!
//! Each token is made exactly as the paywall mints one (`Paywall::mint`: identifier over payment hash and a
//! random token id, the `services` and `<service>_capabilities` caveats), except that its payment hash is
//! the sha256 of a preimage chosen here instead of an invoice's. Holding that preimage is what makes the
//! credential valid; these tokens were NOT paid over Lightning.
//!
//! Where the root key comes from, and what the proxy must be told to find it, is a [`Keys`]:
//! - [`Keys::Store`] (today's tokens): a random root key per token, the record written into the proxy's
//!   SQLite store (created and migrated by `l402-server`'s `SqliteStore`) as paid, the row
//!   `TokenStore::insert` then `mark_paid` leave (as the settlement watcher records a real payment), so that
//!   verifying them reads the store and never writes it. All rows go in one transaction ([`insert_paid`]: a
//!   million through the store API's one-statement calls took minutes); the last token is read back through
//!   `TokenStore::lookup`.
//!
//! - [`Keys::MasterSecret`] (stateless tokens, the proxy's default): the token id minted and the root key
//!   derived from the master key with the paywall's own functions (`MasterKeys::mint_token_id`,
//!   `MasterKeys::root_key`), nothing written anywhere; the proxy is given the same key file. The proxy records
//!   each token on its first use, which is why the bench passes every token once before measuring.
//!
//! Speed: the macaroons are minted on every core (HMAC chains and base64) while a thread of its own writes
//! the records.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use l402_proto::{Caveat, Credential, Identifier, Macaroon, Msat, Preimage, RootKey, Scheme, Service, TokenId};
use l402_server::MasterKeys;
use l402_server::store::{KeyLookup, NewToken, SqliteStore, TokenStore};

/// Where minted tokens' root keys come from, and where their records go.
#[derive(Clone)]
pub(crate) enum Keys {
    /// A random root key each, recorded (and marked paid) in this store, the SQLite file `db`.
    Store {
        /// The store (its schema, and the check that minted rows read back).
        store: SqliteStore,
        /// Its file.
        db: PathBuf,
    },
    /// Stateless: ids and root keys from these master keys (the proxy loads the same key file).
    MasterSecret(MasterKeys),
}

impl Keys {
    /// A token id (`random`: 32 fresh random bytes) minted at `now`.
    fn token_id(&self, now: u64, random: [u8; 32]) -> Result<TokenId> {
        match self {
            Keys::Store { .. } => Ok(TokenId(random)),
            Keys::MasterSecret(keys) => keys.mint_token_id(now).map_err(|e| anyhow::anyhow!("minting a token id: {e}")),
        }
    }

    /// The root key of the token `token_id`, given 32 fresh random bytes.
    fn root_key(&self, token_id: &TokenId, random: [u8; 32]) -> Result<RootKey> {
        match self {
            Keys::Store { .. } => Ok(RootKey(random)),
            Keys::MasterSecret(keys) => {
                keys.root_key(token_id).context("a token id minted under the master key has no root key")
            }
        }
    }

    /// Where the records go, if anywhere: a [`Recorder`] on its own thread.
    fn recorder(&self, now: u64) -> Option<Recorder> {
        match self {
            Keys::Store { db, .. } => {
                let (tx, rx) = std::sync::mpsc::channel::<Vec<NewToken>>();
                let db = db.clone();
                let thread = std::thread::spawn(move || insert_paid(&db, &rx, now));
                Some(Recorder { tx, thread })
            }
            Keys::MasterSecret(_) => None,
        }
    }

    /// Checks that `token` reads back from where it was recorded.
    async fn check(&self, token: &NewToken) -> Result<()> {
        match self {
            Keys::Store { store, .. } => {
                let found = store.lookup(&token.id_hash).await.context("looking a minted token up")?;
                let expected = KeyLookup::Active { root_key: token.root_key.clone(), paid: true };
                anyhow::ensure!(found == expected, "a minted token reads back from the store as {found:?}");
                Ok(())
            }
            Keys::MasterSecret(keys) => {
                anyhow::ensure!(
                    keys.root_key(&token.token_id).as_ref() == Some(&token.root_key),
                    "a minted token's root key is not the master key's"
                );
                Ok(())
            }
        }
    }
}

/// Records batches of minted tokens on its own thread.
struct Recorder {
    tx: std::sync::mpsc::Sender<Vec<NewToken>>,
    thread: std::thread::JoinHandle<Result<()>>,
}

impl Recorder {
    fn finish(self) -> Result<()> {
        drop(self.tx);
        self.thread.join().map_err(|_| anyhow::anyhow!("the recording thread panicked"))?
    }
}

/// Inserts every batch received into the store's token table at `db`, as paid at `now`: the row
/// `TokenStore::insert` then `TokenStore::mark_paid` leave. One transaction for all, with a page cache large
/// enough for the whole table, so that each index page is written once: a million tokens in seconds, where
/// a million store calls (each a blocking-pool round trip around its own autocommitted statement) or a
/// transaction per batch (rewriting the same random index pages into the WAL every time) took minutes.
fn insert_paid(db: &Path, batches: &std::sync::mpsc::Receiver<Vec<NewToken>>, now: u64) -> Result<()> {
    let mut conn = rusqlite::Connection::open(db).context("opening the store's database")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "cache_size", -1_048_576)?; // KiB: up to 1 GiB, for this connection only
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut insert = tx.prepare(
            "INSERT INTO l402_tokens (id_hash, token_id, payment_hash, service, price_msat, root_key, created_at, \
             expires_at, paid_at, paid_msat) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?5)",
        )?;
        for rows in batches {
            for t in &rows {
                insert.execute(rusqlite::params![
                    &t.id_hash[..],
                    &t.token_id.0[..],
                    &t.payment_hash.0[..],
                    t.service,
                    t.price.0 as i64,
                    &t.root_key.0[..],
                    t.created_at as i64,
                    t.expires_at.map(|e| e as i64),
                    now as i64,
                ])?;
            }
        }
    }
    tx.commit().context("committing the minted tokens")?;
    Ok(())
}

/// Tokens minted per batch.
const BATCH: usize = 8192;

/// Mints `count` tokens for `service` at `price`, records them with `keys`, and writes their
/// `Authorization` values, one a line, to `out`.
pub(crate) async fn mint(keys: &Keys, service: &str, price: Msat, count: usize, out: &Path) -> Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(out).context("creating the tokens file")?);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let caveats = vec![Caveat::services(&[Service::new(service)]), Caveat::capabilities::<&str>(service, &[])];
    let recorder = keys.recorder(now);
    let mut left = count;
    let mut last = None;
    while left > 0 {
        let n = left.min(BATCH);
        left -= n;
        // Minted on every core; recorded on the recorder's thread meanwhile.
        let (k, c, s) = (keys.clone(), caveats.clone(), service.to_owned());
        let made = tokio::task::spawn_blocking(move || mint_batch(&k, &s, price, now, &c, n)).await??;
        anyhow::ensure!(made.len() == n, "minted {} tokens of {n} in a batch", made.len());
        let mut records = Vec::with_capacity(n);
        for (record, credential) in made {
            writeln!(file, "{credential}")?;
            records.push(record);
        }
        last = records.last().cloned();
        if let Some(r) = &recorder {
            r.tx.send(records).map_err(|_| anyhow::anyhow!("the recording thread stopped"))?;
        }
    }
    if let Some(r) = recorder {
        r.finish()?;
    }
    if let Some(t) = last {
        keys.check(&t).await?;
    }
    file.flush()?;
    Ok(())
}

/// `n` tokens, minted on every core.
fn mint_batch(
    keys: &Keys,
    service: &str,
    price: Msat,
    now: u64,
    caveats: &[Caveat],
    n: usize,
) -> Result<Vec<(NewToken, String)>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let random = random_bytes(n * 96)?;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let per = n.div_ceil(cores) * 96;
    let made = std::thread::scope(|s| {
        let handles: Vec<_> = random
            .chunks(per)
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .chunks_exact(96)
                        .map(|r| mint_one(keys, service, price, now, caveats, r))
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow::anyhow!("a minting thread panicked"))?)
            .collect::<Result<Vec<_>>>()
    })?;
    Ok(made.into_iter().flatten().collect())
}

/// One token from 96 random bytes (preimage, token id, root key material): its record and credential.
fn mint_one(
    keys: &Keys,
    service: &str,
    price: Msat,
    now: u64,
    caveats: &[Caveat],
    random: &[u8],
) -> Result<(NewToken, String)> {
    let part = |i: usize| {
        let mut b = [0u8; 32];
        b.copy_from_slice(&random[i * 32..(i + 1) * 32]);
        b
    };
    let preimage = Preimage(part(0));
    let payment_hash = preimage.payment_hash();
    let token_id = keys.token_id(now, part(1))?;
    let root_key = keys.root_key(&token_id, part(2))?;
    let macaroon = Macaroon::mint(&root_key, &Identifier::new(payment_hash, token_id), caveats);
    let record = NewToken {
        id_hash: macaroon.identifier_hash(),
        token_id,
        payment_hash,
        service: service.to_owned(),
        price,
        root_key,
        created_at: now,
        expires_at: None,
    };
    Ok((record, Credential::new(Scheme::L402, macaroon, preimage).header_value()))
}

fn random_bytes(n: usize) -> Result<Vec<u8>> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(b)
}
