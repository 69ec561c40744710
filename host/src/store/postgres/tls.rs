//! TLS to PostgreSQL with rustls (ring), as reqwest does: the web's public roots plus
//! `[database] ca_file`, and a client certificate when the server asks for one.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::DatabaseConfig;

/// How connections negotiate TLS; used when the URL's `sslmode` asks for it.
pub(crate) type Tls = tokio_postgres_rustls::MakeRustlsConnect;

/// The connector for `config`: certificates and names are always verified.
pub(super) fn connector(config: &DatabaseConfig) -> anyhow::Result<Tls> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = &config.ca_file {
        let certs = certificates(path, "[database] ca_file")?;
        for cert in certs {
            roots
                .add(cert)
                .with_context(|| format!("[database] ca_file {}", path.display()))?;
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS to the database")?
    .with_root_certificates(roots);
    let client = match (&config.cert_file, &config.key_file) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain = certificates(cert, "[database] cert_file")?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                anyhow::anyhow!(
                    "[database] key_file {}: no private key in PEM: {e}",
                    key.display()
                )
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .context("[database] cert_file and key_file do not make a client certificate")?
        }
        (Some(_), None) => bail!("[database] cert_file is set without key_file"),
        (None, Some(_)) => bail!("[database] key_file is set without cert_file"),
    };
    Ok(Tls::new(client))
}

/// Every certificate in the PEM file at `path`; `key` names the setting in errors.
fn certificates(path: &Path, key: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| anyhow::anyhow!("{key} {shown}: {e}"))?;
    if certs.is_empty() {
        bail!("{key} {shown}: no PEM certificate in it");
    }
    Ok(certs)
}
