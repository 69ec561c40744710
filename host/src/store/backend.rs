//! Which database the store runs on: the embedded SQLite file (the default, one replica) or
//! a shared PostgreSQL database (several replicas).

use super::StoreError;
use super::incidents::{Delivery, Ingested};
use super::postgres::Postgres;
use super::sqlite::Sqlite;
use super::tx::Tx;

/// The database behind a [`super::Store`].
#[derive(Debug, Clone)]
pub(super) enum Backend {
    Sqlite(Sqlite),
    Postgres(Postgres),
}

impl Backend {
    /// Runs `write` in one transaction and returns once it has committed. It may run more
    /// than once: PostgreSQL rolls a deadlock's victim back, and it is run again.
    pub(super) async fn write<T: Send + 'static>(
        &self,
        write: impl Fn(&dyn Tx) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        match self {
            Backend::Sqlite(db) => db.write(write).await,
            Backend::Postgres(db) => db.write(write).await,
        }
    }

    /// Stores a delivery and applies its alerts, in one transaction (on PostgreSQL, one it
    /// may share with the deliveries that arrive meanwhile).
    pub(super) async fn ingest(&self, delivery: Delivery) -> Result<Ingested, StoreError> {
        match self {
            Backend::Sqlite(db) => {
                db.write(move |tx| super::incidents::ingest(tx, &delivery))
                    .await
            }
            Backend::Postgres(db) => db.ingest(delivery).await,
        }
    }

    /// Runs `read` in one snapshot.
    pub(super) async fn read<T: Send + 'static>(
        &self,
        read: impl Fn(&dyn Tx) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        match self {
            Backend::Sqlite(db) => db.read(read).await,
            Backend::Postgres(db) => db.read(read).await,
        }
    }

    /// Writes waiting for SQLite's writer, or deliveries waiting for a PostgreSQL batch: the
    /// ingest backlog.
    pub(super) fn queued_writes(&self) -> usize {
        match self {
            Backend::Sqlite(db) => db.queued_writes(),
            Backend::Postgres(db) => db.queued_writes(),
        }
    }

    /// Whether the database answers now.
    pub(super) async fn check(&self) -> Result<(), StoreError> {
        match self {
            Backend::Sqlite(db) => db.read(|_| Ok(())).await,
            Backend::Postgres(db) => db.check().await,
        }
    }

    /// Where the data lives, for logs: the SQLite file, or the database URL without its
    /// password.
    pub(super) fn location(&self) -> String {
        match self {
            Backend::Sqlite(db) => format!("SQLite at {}", db.path().display()),
            Backend::Postgres(db) => format!("PostgreSQL at {}", db.shown()),
        }
    }

    /// The PostgreSQL store, for tests that reach past the operations.
    #[cfg(test)]
    pub(super) fn postgres(&self) -> &Postgres {
        match self {
            Backend::Postgres(db) => db,
            Backend::Sqlite(_) => panic!("a PostgreSQL-only test ran on SQLite"),
        }
    }

    /// The SQLite store, for tests that reach past the operations.
    #[cfg(test)]
    pub(super) fn sqlite(&self) -> &Sqlite {
        match self {
            Backend::Sqlite(db) => db,
            Backend::Postgres(_) => panic!("a SQLite-only test ran on PostgreSQL"),
        }
    }
}
