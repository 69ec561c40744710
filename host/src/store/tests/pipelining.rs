//! Statements sent without waiting (PostgreSQL pipelines them): an error among them fails
//! the operation, names the statement, and nothing of it commits.

use super::super::*;

super::on_both_backends!(a_failed_statement_sent_without_waiting_fails_the_whole_operation);

async fn a_failed_statement_sent_without_waiting_fails_the_whole_operation(store: &Store) {
    let failed = store
        .db
        .write(|tx| {
            tx.send(
                "INSERT INTO settings (key, value) VALUES ('pipelined', 'one')",
                &[],
            )?;
            tx.send(
                "INSERT INTO settings (key, value) VALUES ('pipelined', 'two')",
                &[],
            )?;
            tx.send(
                "INSERT INTO settings (key, value) VALUES ('after', 'three')",
                &[],
            )?;
            Ok(())
        })
        .await;
    let error = failed
        .expect_err("a duplicate key fails the operation")
        .to_string();
    assert!(error.contains("INSERT INTO settings"), "{error}");
    // A query after a failed statement sees the failure, not a half-done transaction.
    let seen = store
        .db
        .write(|tx| {
            tx.send("INSERT INTO settings (key, value) VALUES ('x', 'v')", &[])?;
            tx.send("INSERT INTO settings (key, value) VALUES ('x', 'w')", &[])?;
            tx.query_one("SELECT count(*) FROM settings", &[], |row| {
                row.get::<i64>(0)
            })
        })
        .await;
    assert!(seen.is_err(), "{seen:?}");
    let left: i64 = store
        .db
        .read(|tx| {
            tx.query_one(
                "SELECT count(*) FROM settings WHERE key IN ('pipelined', 'after', 'x')",
                &[],
                |row| row.get(0),
            )
        })
        .await
        .unwrap();
    assert_eq!(left, 0, "nothing of either operation committed");
}
