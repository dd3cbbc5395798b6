//! TLS on the PostgreSQL port: clients that ask for it (`sslmode=require`,
//! `redshift_connector`'s `ssl=True`) get an encrypted session; others stay in plain text.
//!
//! The certificate and key come from the configuration (`tls_cert` / `tls_key`, PEM), or,
//! when none is configured, from `<data_dir>/tls/`, where a self-signed certificate for
//! `localhost` and `127.0.0.1` is generated on first start and kept, so that clients which
//! pin it keep working across restarts. The key file is written owner-readable only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pgwire::tokio::TlsAcceptor;
use pgwire::tokio::tokio_rustls::rustls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};

/// Where the certificate and key are read.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn tls_error(msg: impl Into<String>) -> Error {
    Error::Config(msg.into())
}

/// The configured files, or the generated pair under `data_dir/tls` (created if missing).
pub fn files(configured: Option<(PathBuf, PathBuf)>, data_dir: &Path) -> Result<TlsFiles> {
    if let Some((cert, key)) = configured {
        return Ok(TlsFiles { cert, key });
    }
    let dir = data_dir.join("tls");
    let files = TlsFiles {
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
    };
    if files.cert.exists() && files.key.exists() {
        return Ok(files);
    }
    std::fs::create_dir_all(&dir)?;
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let certified = rcgen::generate_simple_self_signed(names)
        .map_err(|e| tls_error(format!("cannot generate a TLS certificate: {e}")))?;
    write_private(&files.key, certified.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(&files.cert, certified.cert.pem())?;
    tracing::info!(cert = %files.cert.display(), "generated a self-signed TLS certificate");
    Ok(files)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(bytes)?;
    Ok(())
}

/// The acceptor for `files` (ring as the crypto provider, as pgwire is built with it).
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect::<std::result::Result<_, _>>())
        .map_err(|e| {
            tls_error(format!(
                "cannot read the TLS certificate {}: {e}",
                files.cert.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(tls_error(format!(
            "no certificate in {}",
            files.cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        tls_error(format!(
            "cannot read the TLS key {}: {e}",
            files.key.display()
        ))
    })?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls_error(format!("TLS configuration: {e}")))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| tls_error(format!("TLS certificate and key do not fit: {e}")))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_certificate_is_kept_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let first = files(None, dir.path()).unwrap();
        let pem = std::fs::read_to_string(&first.cert).unwrap();
        acceptor(&first).unwrap();
        let again = files(None, dir.path()).unwrap();
        assert_eq!(std::fs::read_to_string(&again.cert).unwrap(), pem);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&first.key).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the key is owner-only");
        }
    }
}
