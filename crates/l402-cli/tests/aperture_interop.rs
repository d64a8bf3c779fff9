//! Our client against the real Aperture (v0.5.0, Lightning Labs' L402 proxy, built by
//! `scripts/install-peers.sh`) backed by a real LND node, on a regtest network: `l402 fetch` paying through
//! another real LND node (pay-only macaroon), and the library paying through an embedded LDK node. And the
//! tokens: one Aperture minted and one `l402 proxy` minted decode to the same layout.
#![allow(missing_docs)]

mod cli_support;
#[path = "../../l402-client/tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::sync::Arc;

use cli_support::{json, ledger, run_lnd, upstream};
use l402_client::{Client, ClientConfig};
use l402_lightning::Payer;
use l402_proto::lightning_invoice::Currency;
use l402_regtest::{Aperture, ApertureService, Regtest};
use serde_json::Value;

fn decode(input: &str) -> Value {
    let o = Command::new(env!("CARGO_BIN_EXE_l402")).args(["decode", "--json", input]).output();
    json(&o.expect("l402 decode"))
}

/// The challenge's macaroon (base64), from the first `L402` line of a 402.
fn challenge_macaroon(resp: &reqwest::Response) -> String {
    let lines = resp.headers().get_all("www-authenticate").iter().map(|v| v.as_bytes());
    let challenge = l402_proto::Challenge::parse(lines).expect("a challenge");
    challenge.macaroon.to_base64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn our_client_pays_a_real_aperture_through_real_lnd_and_ldk_and_reuses_its_tokens() {
    let net = Regtest::start().await.expect("regtest");
    let operator = net.lnd_node("operator").await.expect("operator LND (scripts/install-peers.sh)");
    let payer = net.lnd_node("payer").await.expect("payer LND");
    let agent = net.ldk_node("agent").await.expect("agent LDK");
    net.fund_lnd(&payer, 2_000_000).await.expect("fund payer");
    net.fund(&agent, 2_000_000).await.expect("fund agent");
    net.open_channel_lnd_to_lnd(&payer, &operator, 1_000_000, 0, None, &[]).await.expect("payer -> operator");
    net.open_channel_to_lnd(&agent, &operator, 1_000_000, 0).await.expect("agent -> operator");

    let up = upstream().await;
    let services = [
        ApertureService { name: "weather".into(), path_regexp: "^/weather/.*$".into(), upstream: up, price_sat: 10 },
        ApertureService { name: "quotes".into(), path_regexp: "^/quotes/.*$".into(), upstream: up, price_sat: 25 },
    ];
    let aperture = Aperture::start(&net.root().join("aperture"), &operator, &services).await.expect("Aperture starts");
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("client");

    // What Aperture sends: LSAT then L402, macaroon then invoice; our decoder reads it.
    let http = reqwest::Client::new();
    let r = http.get(aperture.url("/weather/today")).send().await.expect("Aperture answers");
    assert_eq!(r.status(), 402);
    let lines: Vec<String> =
        r.headers().get_all("www-authenticate").iter().map(|v| v.to_str().expect("ascii").to_owned()).collect();
    assert!(
        lines.len() >= 2 && lines[0].starts_with("LSAT macaroon=") && lines[1].starts_with("L402 macaroon="),
        "{lines:?}"
    );
    let aperture_mac = challenge_macaroon(&r);
    let d = decode(&aperture_mac);
    println!("Aperture's macaroon decoded: {d}");

    // l402 fetch through real LND: 402, paid, 200 with the upstream's body.
    let o = run_lnd(&payer, &data, &["fetch", &aperture.url("/weather/today"), "--max-cost", "100"]);
    let v = json(&o);
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["body"], "upstream saw /weather/today with 0 bytes");
    assert_eq!(v["payment"]["amount_msat"], 10_000, "{v}");

    // Reused without paying.
    let v = json(&run_lnd(&payer, &data, &["fetch", &aperture.url("/weather/today")]));
    assert_eq!((v["status"].as_u64(), v["payment"].is_null()), (Some(200), true), "{v}");
    assert_eq!(ledger(&data).len(), 1, "one payment so far");

    // A second Aperture service on the same host is bought separately.
    let v = json(&run_lnd(&payer, &data, &["fetch", &aperture.url("/quotes/now"), "-d", "hello"]));
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["body"], "upstream saw /quotes/now with 5 bytes");
    assert_eq!(v["payment"]["amount_msat"], 25_000, "{v}");
    let v = json(&run_lnd(&payer, &data, &["fetch", &aperture.url("/weather/today")]));
    assert!(v["payment"].is_null(), "the weather token still serves weather: {v}");

    // The ledger equals LND's own ListPayments, to the msat.
    let ours = ledger(&data);
    let lnd: Vec<Value> = payer.payments().await.expect("listpayments");
    let lnd_ok: Vec<&Value> = lnd.iter().filter(|p| p["status"] == "SUCCEEDED").collect();
    assert_eq!((ours.len(), lnd_ok.len()), (2, 2), "ours {ours:?}, LND's {lnd:?}");
    for entry in &ours {
        let hash = entry["payment_hash"].as_str().expect("hash");
        let record = lnd_ok.iter().find(|p| p["payment_hash"] == hash).expect("LND has our payment");
        let msat = |v: &Value| v.as_str().and_then(|s| s.parse::<u64>().ok()).expect("msat");
        assert_eq!(entry["amount_msat"].as_u64(), Some(msat(&record["value_msat"])), "{entry} vs {record}");
        assert_eq!(entry["fee_msat"].as_u64(), Some(msat(&record["fee_msat"])), "{entry} vs {record}");
    }

    // The library with an embedded LDK wallet, against the same Aperture.
    let mut cfg = ClientConfig::new(tmp.path().join("library"));
    cfg.network = Some(Currency::Regtest);
    cfg.allow_http = true; // Aperture is plain http on loopback here
    let wallet: Arc<dyn Payer> = agent.clone();
    let client = Client::new(wallet, cfg).expect("client");
    let get = |path: &str| client.request(reqwest::Method::GET, &aperture.url(path)).build().expect("request");
    let first = client.execute(get("/weather/lib")).await.expect("paid");
    assert!(first.payment.is_some(), "paid once");
    assert_eq!(first.response.status().as_u16(), 200);
    assert_eq!(first.response.text().await.expect("body"), "upstream saw /weather/lib with 0 bytes");
    let again = client.execute(get("/weather/lib")).await.expect("reused");
    assert_eq!((again.response.status().as_u16(), again.payment.is_none()), (200, true));

    // A token our proxy mints and one Aperture mints decode to the same layout.
    let ours = l402_proto::Macaroon::mint(
        &l402_proto::RootKey([1; 32]),
        &l402_proto::Identifier::new(l402_proto::PaymentHash([2; 32]), l402_proto::TokenId([3; 32])),
        &[
            l402_proto::Caveat::services(&[l402_proto::Service::new("weather")]),
            l402_proto::Caveat::capabilities::<&str>("weather", &[]),
        ],
    );
    let (a, b) = (decode(&aperture_mac), decode(&ours.to_base64()));
    assert!(aperture_mac.starts_with("AgEEbHNhdAJCAA") && ours.to_base64().starts_with("AgEEbHNhdAJCAA"));
    let shape = |v: &Value| {
        let m = &v["macaroon"];
        (m["location"].clone(), m["identifier"]["version"].clone(), m["caveats"].clone())
    };
    assert_eq!(shape(&a), shape(&b), "Aperture's {a}\nours {b}");
    drop((client, agent, aperture));
    net.shutdown().await;
}
