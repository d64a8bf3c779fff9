//! Valid tokens minted straight into the proxy's SQLite store, for the rotation run.
//!
//! Each token is made exactly as the paywall mints one (`Paywall::mint`: identifier over payment hash and a
//! random token id, a random root key, the `services` and `<service>_capabilities` caveats), except that its
//! payment hash is the sha256 of a preimage chosen here instead of an invoice's. Holding that preimage is
//! what makes the credential valid; these tokens were NOT paid over Lightning. Each record is also marked
//! paid in the store (as the settlement watcher records a real payment), so that verifying them reads the
//! store and never writes it: the figure is the cost of root-key lookups.

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use l402_proto::{Caveat, Credential, Identifier, Macaroon, Msat, Preimage, RootKey, Scheme, Service, TokenId};
use l402_server::store::{NewToken, SqliteStore, TokenStore};

fn random32() -> Result<[u8; 32]> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(b)
}

/// Mints `count` tokens for `service` into the SQLite store at `db`, and writes their `Authorization`
/// values, one a line, to `out`.
pub(crate) async fn mint_into_store(db: &Path, service: &str, price: Msat, count: usize, out: &Path) -> Result<()> {
    let store = SqliteStore::open(db).context("opening the proxy's store")?;
    let mut file = std::io::BufWriter::new(std::fs::File::create(out).context("creating the tokens file")?);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let caveats = [Caveat::services(&[Service::new(service)]), Caveat::capabilities::<&str>(service, &[])];
    for _ in 0..count {
        let preimage = Preimage(random32()?);
        let payment_hash = preimage.payment_hash();
        let token_id = TokenId(random32()?);
        let root_key = RootKey(random32()?);
        let macaroon = Macaroon::mint(&root_key, &Identifier::new(payment_hash, token_id), &caveats);
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
        store.insert(&record).await?;
        store.mark_paid(&payment_hash, Some(price), now).await?;
        writeln!(file, "{}", Credential::new(Scheme::L402, macaroon, preimage).header_value())?;
    }
    file.flush()?;
    Ok(())
}
