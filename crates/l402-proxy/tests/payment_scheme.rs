//! `l402 proxy` with the `Payment` scheme on: the 402 offers L402 and a Payment charge, a charge paid over a
//! real regtest channel buys one forwarded request with a receipt, over HTTP (raw bytes) and gRPC (the lines in
//! the trailers-only answer), and the configuration refuses what cannot work.
#![allow(missing_docs)]

mod support;

use l402_proto::mpp::{PaymentChallenge, Receipt};
use l402_proxy::Config;
use support::{http_get, network, preamble, proxy, upstream};

async fn pay_charge(alice: &l402_ldk::LdkNode, values: Vec<&[u8]>) -> String {
    l402_regtest::pay_payment_challenge(alice, values).await.expect("paid the charge").0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_proxy_sells_one_forwarded_request_per_payment_charge() {
    let n = network().await;
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("tmp");
    let config = format!(
        r#"{}
[payment]
realm = "proxy.test"

[[service]]
name = "weather"
path = "/weather*"
upstream = "{up}"
price_sat = 150
schemes = ["l402", "payment"]
"#,
        preamble(dir.path())
    );
    let p = proxy(&config, &n.server).await;
    let r = http_get(p.addr(), "/weather", &[]).await;
    assert_eq!(r.status, 402);
    let lines = r.all("www-authenticate");
    assert_eq!(lines.len(), 3, "{r:?}");
    assert!(lines[2].starts_with(b"Payment "));
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(r.json()["type"], "https://paymentauth.org/problems/payment-required");
    let offer = PaymentChallenge::parse_all(lines.iter().copied()).remove(0);
    assert_eq!(offer.realm, "proxy.test");
    let auth = pay_charge(&n.alice, lines).await;

    // Paid: forwarded once, with the charge's payment hash and the service for the upstream, and what the
    // client sent in their place dropped.
    let forged = ["X-L402-Payment-Hash: 00", "X-L402-Token-Id: 00"];
    let headers = [format!("Authorization: {auth}"), forged[0].into(), forged[1].into()];
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    let r = http_get(p.addr(), "/weather?day=1", &headers).await;
    assert_eq!(r.status, 200, "{r:?}");
    let receipt = Receipt::decode(r.header("payment-receipt").expect("a receipt")).expect("receipt");
    assert_eq!(receipt.challenge_id, offer.id);
    assert_eq!(r.header("cache-control"), Some("private"));
    let seen = r.json();
    assert_eq!(seen["headers"]["x-l402-payment-hash"], receipt.reference);
    assert_eq!(seen["headers"]["x-l402-service"], "weather");
    assert!(seen["headers"].get("x-l402-token-id").is_none(), "{seen}");
    assert_eq!(seen["query"], "day=1");

    // Spent: the same credential again is a fresh 402, not forwarded.
    let r = http_get(p.addr(), "/weather", &headers).await;
    assert_eq!(r.status, 402);
    assert_eq!(r.all("www-authenticate").len(), 3);
    n.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_grpc_service_offers_the_payment_line_in_its_trailers_and_takes_a_charge() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let n = network().await;
    let (grpc_addr, _reporter) = support::grpc_health();
    let dir = tempfile::tempdir().expect("tmp");
    let config = format!(
        r#"{}
[[service]]
name = "health"
path = "/grpc.health.v1.Health/*"
upstream = "h2c://{grpc_addr}"
price_sat = 50
schemes = ["l402", "payment"]
"#,
        preamble(dir.path())
    );
    let p = proxy(&config, &n.server).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", p.addr()))
        .expect("uri")
        .connect()
        .await
        .expect("c");
    let mut client = HealthClient::new(channel);
    let status = client.check(HealthCheckRequest { service: String::new() }).await.expect_err("payment required");
    assert_eq!(status.code(), tonic::Code::Internal);
    let lines: Vec<Vec<u8>> =
        status.metadata().get_all("www-authenticate").iter().map(|v| v.as_encoded_bytes().to_vec()).collect();
    assert_eq!(lines.len(), 3, "LSAT, L402, Payment");
    let auth = pay_charge(&n.alice, lines.iter().map(Vec::as_slice).collect()).await;
    let mut req = tonic::Request::new(HealthCheckRequest { service: String::new() });
    req.metadata_mut().insert("authorization", auth.parse().expect("metadata"));
    let resp = client.check(req).await.expect("served");
    assert!(resp.metadata().get("payment-receipt").is_some(), "a receipt");
    assert_eq!(resp.into_inner().status, 1, "SERVING");
    let mut again = tonic::Request::new(HealthCheckRequest { service: String::new() });
    again.metadata_mut().insert("authorization", auth.parse().expect("metadata"));
    assert_eq!(client.check(again).await.expect_err("spent").code(), tonic::Code::Internal);
    n.net.shutdown().await;
}

#[test]
fn payment_scheme_settings_that_cannot_work_are_configuration_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let with = |service_extra: &str, top: &str| {
        format!(
            "{}{top}\n[[service]]\nname = \"w\"\npath = \"/w\"\nupstream = \"http://127.0.0.1:1\"\n{service_extra}\n",
            preamble(dir.path())
        )
    };
    for (what, text, says) in [
        ("unknown scheme", with("price_sat = 1\nschemes = [\"lsat\"]", ""), "schemes"),
        ("no scheme", with("price_sat = 1\nschemes = []", ""), "schemes"),
        ("a price in part of a satoshi", with("price_msat = 1500\nschemes = [\"payment\"]", ""), "whole satoshis"),
        ("no expiry", with("price_sat = 1\nschemes = [\"payment\"]", "[payment]\nexpiry_secs = 0"), "expiry_secs"),
    ] {
        let e = Config::parse(&text).expect_err(what);
        assert!(e.0.contains(says), "{what}: {e}");
    }
    for ok in [
        with("price_sat = 1\nschemes = [\"payment\"]", ""),
        with("price_msat = 2000\nschemes = [\"L402\", \"Payment\"]", "[payment]\nrealm = \"x\""),
    ] {
        Config::parse(&ok).expect("accepted");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_payment_scheme_with_stored_tokens_refuses_to_start() {
    let (net, server) = support::invoicing_node().await;
    let dir = tempfile::tempdir().expect("tmp");
    let text = format!(
        "{}\n[tokens]\nstored = true\n\n[[service]]\nname = \"w\"\npath = \"/w\"\nupstream = \"http://127.0.0.1:1\"\nprice_sat = 1\nschemes = [\"payment\"]\n",
        preamble(dir.path())
    );
    let config = Config::parse(&text).expect("parses");
    let store = l402_proxy::open_store(&config.store).await.expect("store");
    let e = l402_proxy::Proxy::start(&config, store, server.clone()).await.expect_err("refused");
    assert!(e.to_string().contains("master key"), "{e}");
    net.shutdown().await;
}
