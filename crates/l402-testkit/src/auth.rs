//! The simulator's macaroons: an admin one and an invoice one, minted at start under a fresh root key, and
//! the check every call makes, with LND's refusal texts (all sent with code `Unknown`, as LND does).

use l402_proto::{Macaroon, MacaroonKey};
use tonic::Status;
use tonic::metadata::MetadataMap;

/// What a call needs, in LND's `entity:action` terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Permission {
    /// `info:read` (GetInfo).
    InfoRead,
    /// `invoices:read` (LookupInvoice, SubscribeInvoices, SubscribeSingleInvoice).
    InvoicesRead,
    /// `invoices:write` (AddInvoice).
    InvoicesWrite,
    /// `offchain:read` (DecodePayReq, TrackPaymentV2).
    OffchainRead,
    /// `offchain:write` (SendPaymentV2).
    OffchainWrite,
}

const ADMIN: &[u8] = b"admin";
const INVOICE: &[u8] = b"invoice";

/// The two macaroons and the key they verify under.
pub(crate) struct Macaroons {
    key: MacaroonKey,
    pub(crate) admin: Macaroon,
    pub(crate) invoice: Macaroon,
}

fn identifier(role: &[u8], nonce: &[u8; 16]) -> Vec<u8> {
    // LND's identifiers start with the bakery version byte 3; the rest here is ours: role and nonce.
    let mut id = vec![3];
    id.extend_from_slice(role);
    id.push(b':');
    id.extend_from_slice(hex::encode(nonce).as_bytes());
    id
}

fn unknown(message: impl Into<String>) -> Status {
    Status::unknown(message)
}

impl Macaroons {
    /// Fresh macaroons under a fresh random root key.
    pub(crate) fn generate() -> Result<Self, String> {
        let mut root = [0u8; 32];
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut root).map_err(|e| format!("randomness: {e}"))?;
        getrandom::fill(&mut nonce).map_err(|e| format!("randomness: {e}"))?;
        let key = MacaroonKey::derive_from_bytes(&root);
        let admin = Macaroon::mint_raw::<&[u8]>(&key, b"lnd", &identifier(ADMIN, &nonce), &[]);
        let invoice = Macaroon::mint_raw::<&[u8]>(&key, b"lnd", &identifier(INVOICE, &nonce), &[]);
        Ok(Self { key, admin, invoice })
    }

    /// Checks the `macaroon` metadata of a call that needs `need`.
    pub(crate) fn check(&self, metadata: &MetadataMap, need: Permission) -> Result<(), Status> {
        let values: Vec<_> = metadata.get_all("macaroon").iter().collect();
        if values.len() != 1 {
            return Err(unknown(format!("expected 1 macaroon, got {}", values.len())));
        }
        let text = values[0].to_str().map_err(|_| unknown("encoding/hex: invalid byte"))?;
        let bytes = hex::decode(text).map_err(|e| unknown(format!("encoding/hex: {e}")))?;
        let mac = Macaroon::from_bytes(&bytes).map_err(|e| unknown(format!("unmarshal v2: {e}")))?;
        if mac.identifier().first() != Some(&3) {
            return Err(unknown("invalid ID"));
        }
        if !mac.signature_valid(&self.key) {
            return Err(unknown("verification failed: signature mismatch after caveat verification"));
        }
        if mac.caveat_count() > 0 {
            // The simulator honours no first-party caveats; LND would check ipaddr/timeout ones.
            return Err(unknown("verification failed: caveat not satisfied (the simulator checks no caveats)"));
        }
        let role = &mac.identifier()[1..];
        let allowed = if role.starts_with(ADMIN) {
            true
        } else if role.starts_with(INVOICE) {
            // LND's invoice.macaroon: invoices:read/write, address:read/write, onchain:read.
            matches!(need, Permission::InvoicesRead | Permission::InvoicesWrite)
        } else {
            false
        };
        if !allowed {
            return Err(unknown("permission denied"));
        }
        Ok(())
    }
}
