//! Interoperability with Aperture: a real Aperture challenge (vector 3 of L402.md, with a valid invoice for its
//! payment hash) is read by the client, and the credential the client builds for the L402 vector (vector 2) is
//! byte-identical to the reference and accepted by an Aperture-compatible verifier.
#![allow(missing_docs)]

mod support;

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use l402_client::{Client, Quote};
use l402_proto::lightning_invoice::Currency;
use l402_proto::*;
use reqwest::Method;
use support::{FakeLightning, foreign_invoice, now};

const APERTURE_MACAROON: &str = "AgEEbHNhdAJCAAAwpHpumws6ufQoDwiTLNcge0QPUIWA0+tVY+tKPYAJ/zSfmEGlIpNm3VzxuzCqLhEp5KGiyPLUM9L+kcB7uzS+AAIPc2VydmljZXM9bWVtZTowAAISbWVtZV9jYXBhYmlsaXRpZXM9AAAGILA1VCEIExukt4nG+XR9tX8WJ2BVMiHG3UNt1uYJ+NRD";
const APERTURE_HASH: &str = "30a47a6e9b0b3ab9f4280f08932cd7207b440f508580d3eb5563eb4a3d8009ff";
const VECTOR_CREDENTIAL: &str = "L402 AgEEbHNhdAJCAABjDc0pZsQzZpESVEi7sltP9BKknHMtssirwbhYG9cQ3aurq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urAAIOc2VydmljZXM9c3ZjOjAAAhFzdmNfY2FwYWJpbGl0aWVzPQACGnN2Y192YWxpZF91bnRpbD0xNzAwMDAwMDAwAAAGIG0V+aBA2vQcLxi+SKWqFqjWoKOMl3Al3o1qy4E5KVLj:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

fn challenge_response(mac: &str, invoice: &str) -> axum::response::Response {
    let mut r = (StatusCode::PAYMENT_REQUIRED, "payment required").into_response();
    for scheme in ["LSAT", "L402"] {
        let line = format!("{scheme} macaroon=\"{mac}\", invoice=\"{invoice}\"");
        r.headers_mut().append(header::WWW_AUTHENTICATE, HeaderValue::from_str(&line).expect("header"));
    }
    r
}

fn client(fake: Arc<FakeLightning>, dir: &std::path::Path) -> Client {
    let mut cfg = support::loopback_config(dir);
    cfg.network = Some(Currency::Regtest);
    Client::new(fake, cfg).expect("client")
}

#[tokio::test]
async fn an_aperture_challenge_is_read_and_would_be_paid() {
    let hash = PaymentHash::from_hex(APERTURE_HASH).expect("hash");
    let invoice = foreign_invoice(Currency::Regtest, &hash, Some(50_000), now(), 600);
    let url = serve(axum::Router::new().fallback(move || {
        let invoice = invoice.clone();
        async move { challenge_response(APERTURE_MACAROON, &invoice) }
    }))
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let c = client(Arc::new(FakeLightning::default()), dir.path());
    let quote = c.quote(c.request(Method::GET, &format!("{url}/meme")).build().expect("req")).await.expect("quote");
    let Quote::Payment(q) = quote else { panic!("{quote:?}") };
    assert_eq!(q.payment_hash, APERTURE_HASH);
    assert_eq!(q.service, "meme");
    assert_eq!(q.amount_msat, Some(50_000));
    assert!(q.refusal.is_none(), "{:?}", q.refusal);
    let mac = Macaroon::from_base64(APERTURE_MACAROON).expect("macaroon");
    assert_eq!(l402_client::TokenScope::of(&mac).services, vec!["meme".to_owned()]);
}

/// Aperture's credential grammar: `(LSAT|L402) (.*?):([a-f0-9]{64})`.
fn aperture_grammar(value: &str) -> bool {
    let Some(rest) = value.strip_prefix("L402 ").or_else(|| value.strip_prefix("LSAT ")) else { return false };
    let Some((mac, pre)) = rest.rsplit_once(':') else { return false };
    !mac.is_empty() && pre.len() == 64 && pre.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[tokio::test]
async fn the_credential_the_client_builds_for_the_l402_vector_is_accepted_by_an_aperture_verifier() {
    let preimage = Preimage(std::array::from_fn(|i| i as u8));
    let hash = preimage.payment_hash();
    let id = Identifier::new(hash, TokenId([0xab; 32]));
    let caveats = [
        Caveat::services(&[Service::new("svc")]),
        Caveat::capabilities::<&str>("svc", &[]),
        Caveat::valid_until("svc", 1_700_000_000),
    ];
    let mac = Macaroon::mint(&RootKey([0x11; 32]), &id, &caveats).to_base64();
    let invoice = foreign_invoice(Currency::Regtest, &hash, Some(100_000), now(), 600);

    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    let url = serve(axum::Router::new().fallback(move |headers: HeaderMap| {
        let (mac, invoice, log) = (mac.clone(), invoice.clone(), log.clone());
        async move {
            let values: Vec<&[u8]> = headers.get_all(header::AUTHORIZATION).iter().map(|v| v.as_bytes()).collect();
            for v in &values {
                log.lock().expect("lock").push(String::from_utf8_lossy(v).into_owned());
            }
            if let Ok(cred) = Credential::from_authorization(values) {
                // The vector's token expired in 2023: verify at the vector's clock.
                let access = Access { service: "svc", capability: None, now_unix: 1_699_999_999 };
                if verify(&cred.macaroon, &cred.preimage, &MacaroonKey::derive(&RootKey([0x11; 32])), &access).is_ok() {
                    return (StatusCode::OK, "served").into_response();
                }
            }
            challenge_response(&mac, &invoice)
        }
    }))
    .await;

    let fake = Arc::new(FakeLightning::default());
    fake.preimages.lock().expect("lock").insert(hash, preimage);
    let dir = tempfile::tempdir().expect("tmp");
    let c = client(fake.clone(), dir.path());
    let r = c.execute(c.request(Method::GET, &format!("{url}/svc")).build().expect("req")).await.expect("served");
    assert_eq!(r.response.status(), 200);
    assert_eq!(fake.calls().len(), 1);
    let sent = seen.lock().expect("lock").clone();
    assert_eq!(sent, vec![VECTOR_CREDENTIAL.to_owned()], "byte-identical to the reference credential");
    assert!(aperture_grammar(&sent[0]));
}
