//! Several paywalls over one real PostgreSQL: a revocation made through one is refused by the other within
//! the stated bound, and after a restart; and the store over TLS (`sslmode`, `sslrootcert`) against a real
//! server with `ssl = on` and a certificate from a CA made here.
#![allow(missing_docs)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use l402_regtest::Postgres;
use l402_server::store::{PostgresStore, TokenQuery, TokenStore};
use l402_server::{MasterKey, MasterKeys, Paywall};
use support::{Net, serve, token_id};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_revoked_on_one_instance_is_refused_by_the_other_within_the_bound() {
    let pg = Postgres::start().await.expect("postgres (apt-get install postgresql)");
    let net = Net::start().await;
    let keys = MasterKeys::single(MasterKey::from_bytes(&[7; 32]));
    let poll = Duration::from_millis(500);
    let instance = |keys: MasterKeys| {
        let (conn, server) = (pg.connection_string(), net.server.clone());
        async move {
            let store = PostgresStore::connect(&conn, 4).await.expect("connect");
            serve(Paywall::builder(Arc::new(store), server).master_keys(keys).revocation_poll_interval(poll).build())
                .await
        }
    };
    let a = instance(keys.clone()).await;
    let b = instance(keys.clone()).await;
    assert_eq!(b.paywall.revocation_bound(), poll * 2);
    let auth = net.pay(a.get("/weather", None).await).await;
    let (mac, pre) = support::parts(&auth);
    let lsat = format!("LSAT {mac}:{pre}");
    // Minted by A, accepted by B (and cached there).
    for v in [&auth, &lsat, &auth] {
        assert_eq!(b.status("/weather", Some(v)).await, 200);
    }
    assert!(a.paywall.revoke(&token_id(&auth)).await.expect("revoke"));
    let revoked = tokio::time::Instant::now();
    assert_eq!(a.status("/weather", Some(&auth)).await, 401, "at once where it was revoked");
    let mut last = 200;
    while last == 200 {
        last = b.status("/weather", Some(&lsat)).await;
        assert!(revoked.elapsed() <= b.paywall.revocation_bound() + Duration::from_millis(100), "still served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(last, 401);
    let took = revoked.elapsed();
    for v in [&auth, &lsat] {
        let r = b.get("/weather", Some(v)).await;
        assert_eq!(r.status(), 401);
        assert!(r.text().await.expect("body").contains("\"reason\":\"revoked\""));
    }
    // A third instance started after the revocation refuses it from its first request.
    let c = instance(keys).await;
    assert_eq!(c.status("/weather", Some(&auth)).await, 401);
    let listed = PostgresStore::connect(&pg.connection_string(), 1).await.expect("connect");
    let listed = listed.list(&TokenQuery::newest(10)).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert!(listed[0].revoked_at.is_some() && listed[0].paid_at.is_some(), "{listed:?}");
    println!("revocation seen by the other instance after {took:?} (bound {:?})", b.paywall.revocation_bound());
    net.net.shutdown().await;
}

/// Turns TLS on in a running server with a certificate for `localhost` signed by a fresh CA; returns the CA
/// (PEM) and another CA that did not sign it.
async fn enable_tls(pg: &Postgres, dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let ca = |name: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        CertifiedIssuer::self_signed(p, KeyPair::generate().expect("key")).expect("ca")
    };
    let (ours, other) = (ca("l402 test CA"), ca("another CA"));
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["localhost".into()]).expect("params").signed_by(&key, &*ours).expect("cert");
    std::fs::write(dir.join("server.crt"), cert.pem()).expect("write");
    std::fs::write(dir.join("server.key"), key.serialize_pem()).expect("write");
    std::fs::write(dir.join("ca.pem"), ours.pem()).expect("write");
    std::fs::write(dir.join("other-ca.pem"), other.pem()).expect("write");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir.join("server.key"), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    if std::fs::read_to_string("/proc/self/status").is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:\t0\t"))) {
        let ok = std::process::Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir).status();
        assert!(ok.is_ok_and(|s| s.success()), "chown the certificate to the server's user");
    }
    let admin = plain(pg).await;
    for sql in [
        format!("ALTER SYSTEM SET ssl_cert_file = '{}'", dir.join("server.crt").display()),
        format!("ALTER SYSTEM SET ssl_key_file = '{}'", dir.join("server.key").display()),
        "ALTER SYSTEM SET ssl = on".to_owned(),
        "SELECT pg_reload_conf()".to_owned(),
    ] {
        admin.batch_execute(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    for _ in 0..100 {
        if plain(pg).await.query_one("SHOW ssl", &[]).await.expect("show").get::<_, String>(0) == "on" {
            return (dir.join("ca.pem"), dir.join("other-ca.pem"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("ssl did not turn on (see the server log)");
}

async fn plain(pg: &Postgres) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&pg.connection_string(), tokio_postgres::NoTls).await.expect("psql");
    tokio::spawn(conn);
    client
}

/// How many sessions `app` has, and whether all of them are encrypted.
async fn sessions(pg: &Postgres, app: &str) -> (i64, bool) {
    let row = plain(pg)
        .await
        .query_one(
            "SELECT count(*), coalesce(bool_and(s.ssl), false) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = $1",
            &[&app],
        )
        .await
        .expect("pg_stat_ssl");
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_store_speaks_tls_and_checks_the_server_certificate() {
    let pg = Postgres::start().await.expect("postgres (apt-get install postgresql)");
    let base = format!("user=l402 dbname=l402 port={}", pg.port());
    // Asked for TLS of a server without it: no connection, rather than plaintext.
    let err = PostgresStore::connect(&format!("host=127.0.0.1 {base} sslmode=require"), 1).await.expect_err("no TLS");
    assert!(err.to_string().to_lowercase().contains("tls"), "{err}");

    let dir = tempfile::tempdir().expect("tmp");
    let (ca, other_ca) = enable_tls(&pg, dir.path()).await;
    let (ca, other_ca) = (ca.display(), other_ca.display());
    let ok = [
        ("full", format!("host=localhost hostaddr=127.0.0.1 {base} sslmode=verify-full sslrootcert={ca}")),
        ("ca", format!("host=127.0.0.1 {base} sslmode=verify-ca sslrootcert='{ca}'")),
        ("req", format!("host=127.0.0.1 {base} sslmode=require")),
        (
            "url",
            format!(
                "postgresql://l402@localhost:{}/l402?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={ca}",
                pg.port()
            ),
        ),
    ];
    for (name, conn) in ok {
        let conn = if conn.starts_with("postgresql://") {
            format!("{conn}&application_name=tls_{name}")
        } else {
            format!("{conn} application_name=tls_{name}")
        };
        let store = PostgresStore::connect(&conn, 2).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        store.list(&TokenQuery::newest(1)).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        let (n, tls) = sessions(&pg, &format!("tls_{name}")).await;
        assert!(n > 0 && tls, "{name}: {n} sessions, encrypted: {tls}");
    }
    let refused = [
        ("the name is not the certificate's", format!("host=127.0.0.1 {base} sslmode=verify-full sslrootcert={ca}")),
        ("another CA", format!("host=localhost hostaddr=127.0.0.1 {base} sslmode=verify-full sslrootcert={other_ca}")),
        ("another CA, verify-ca", format!("host=127.0.0.1 {base} sslmode=verify-ca sslrootcert={other_ca}")),
        ("another CA, require", format!("host=127.0.0.1 {base} sslmode=require sslrootcert={other_ca}")),
    ];
    for (why, conn) in refused {
        let err = PostgresStore::connect(&conn, 1).await.expect_err(why);
        assert!(err.to_string().starts_with("token store:"), "{why}: {err}");
    }
    // No sslmode: plaintext, as documented.
    let store =
        PostgresStore::connect(&format!("host=127.0.0.1 {base} application_name=tls_none"), 1).await.expect("plain");
    store.list(&TokenQuery::newest(1)).await.expect("list");
    let (n, tls) = sessions(&pg, "tls_none").await;
    assert!(n > 0 && !tls, "{n} sessions, encrypted: {tls}");
}
