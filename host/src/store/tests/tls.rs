//! TLS to PostgreSQL: used as the URL's `sslmode` asks, the server always verified, and bad
//! TLS settings refused with the setting named.

use super::super::*;
use crate::config::DatabaseConfig;

/// The error connecting with `config`, as the daemon would print it.
async fn refused(config: &DatabaseConfig) -> String {
    match Store::connect(config).await {
        Ok(_) => panic!("connected: {config:?}"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_connection_is_encrypted_when_asked_and_the_server_must_prove_itself() {
    let server = quell_tests::postgres::Postgres::start().unwrap();
    let ca = server.enable_tls().unwrap();
    let url = format!("{}?sslmode=require", server.url());

    // A server whose certificate nothing trusted signed is refused, not used unverified.
    let untrusted = DatabaseConfig {
        url: Some(url.clone()),
        ..Default::default()
    };
    let error = refused(&untrusted).await;
    assert!(error.contains("invalid peer certificate"), "{error}");
    assert!(
        error.contains("[database] ca_file"),
        "says what to do: {error}"
    );

    let config = DatabaseConfig {
        url: Some(url),
        ca_file: Some(ca.clone()),
        ..Default::default()
    };
    let store = Store::connect(&config).await.unwrap();
    super::listening(&store).await;
    // The pool's connections and the listener's: all of them encrypted.
    let (mine, plain): (bool, i64) = store
        .db
        .read(|tx| {
            tx.query_one(
                "SELECT (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()),
                        (SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
                         WHERE a.datname = 'quell' AND a.backend_type = 'client backend'
                           AND NOT s.ssl)",
                &[],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
        })
        .await
        .unwrap();
    assert!(mine, "this connection uses TLS");
    assert_eq!(plain, 0, "no plain connection to the database");
    let listeners: i64 = store
        .db
        .read(|tx| {
            tx.query_one(
                "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
                 WHERE a.query LIKE 'LISTEN%' AND s.ssl",
                &[],
                |row| row.get(0),
            )
        })
        .await
        .unwrap();
    assert_eq!(listeners, 1, "the listener's connection uses TLS");

    // Bad TLS settings are refused at start, naming the setting.
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    for (broken, named) in [
        (
            DatabaseConfig {
                ca_file: Some(junk.clone()),
                ..config.clone()
            },
            "[database] ca_file",
        ),
        (
            DatabaseConfig {
                ca_file: Some(dir.path().join("missing.pem")),
                ..config.clone()
            },
            "[database] ca_file",
        ),
        (
            DatabaseConfig {
                cert_file: Some(ca.clone()),
                ..config.clone()
            },
            "[database] cert_file is set without key_file",
        ),
    ] {
        let error = refused(&broken).await;
        assert!(error.contains(named), "{named}: {error}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_asks_for_a_client_certificate_gets_the_configured_one() {
    let server = quell_tests::postgres::Postgres::start().unwrap();
    let ca = server.enable_tls().unwrap();
    let (cert, key) = server.require_client_certificate("replica").unwrap();
    let url = server.url().replace("quell@", "replica@") + "?sslmode=require";
    let config = DatabaseConfig {
        url: Some(url),
        ca_file: Some(ca),
        ..Default::default()
    };
    // Without a certificate the server refuses the user.
    let error = refused(&config).await;
    assert!(error.contains("certificate"), "{error}");

    let config = DatabaseConfig {
        cert_file: Some(cert),
        key_file: Some(key),
        ..config
    };
    let store = Store::connect(&config).await.unwrap();
    let presented: String = store
        .db
        .read(|tx| {
            tx.query_one(
                "SELECT coalesce(client_dn, '') FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
                |row| row.get(0),
            )
        })
        .await
        .unwrap();
    assert_eq!(presented, "/CN=replica");
}
