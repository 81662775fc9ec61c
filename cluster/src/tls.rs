//! TLS for the actor link between a head and its workers: mutual, from PEM files.
//!
//! Every node has a certificate and key signed by the cluster's CA (`[cluster] tls_cert`,
//! `tls_key`, `tls_ca`). The head accepts only clients whose certificate the CA signed; a
//! worker accepts only a head whose certificate the CA signed for the name it dialled (the head
//! address's IP, or `tls_server_name`). The cluster cookie is still checked inside the
//! encrypted session. Weight streams stay plain TCP, but each batch names the digest of the
//! weights it needs over this link and the worker applies only a version with that digest, so a
//! stream altered on the way is refused even though it is not encrypted.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::error::ClusterError;

/// Where a node's TLS material is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// This node's certificate chain (PEM).
    pub cert: PathBuf,
    /// This node's private key (PEM).
    pub key: PathBuf,
    /// The cluster's CA certificate(s) (PEM): peers must present a certificate it signed.
    pub ca: PathBuf,
}

/// A node's TLS settings, loaded.
#[derive(Clone)]
pub struct ClusterTls {
    pub acceptor: TlsAcceptor,
    pub connector: TlsConnector,
    /// The name a worker expects in the head's certificate (`None`: the head address's IP).
    pub server_name: Option<String>,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, ClusterError> {
    std::fs::read(path).map_err(ClusterError::io(format!(
        "reading the TLS {what} {}",
        path.display()
    )))
}

fn bad(path: &Path, message: impl std::fmt::Display) -> ClusterError {
    ClusterError::Malformed {
        peer: path.display().to_string(),
        message: message.to_string(),
    }
}

impl ClusterTls {
    /// Loads and checks the files; errors name the file and what is wrong with it.
    pub fn load(files: &TlsFiles, server_name: Option<String>) -> Result<ClusterTls, ClusterError> {
        let certs = CertificateDer::pem_slice_iter(&read(&files.cert, "certificate")?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(&files.cert, format!("not a PEM certificate chain: {e}")))?;
        if certs.is_empty() {
            return Err(bad(&files.cert, "holds no certificate"));
        }
        let key = PrivateKeyDer::from_pem_slice(&read(&files.key, "key")?)
            .map_err(|e| bad(&files.key, format!("not a PEM private key: {e}")))?;
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(&read(&files.ca, "CA")?) {
            let ca = ca.map_err(|e| bad(&files.ca, format!("not a PEM certificate: {e}")))?;
            roots.add(ca).map_err(|e| bad(&files.ca, e))?;
        }
        if roots.is_empty() {
            return Err(bad(&files.ca, "holds no CA certificate"));
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let clients = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .map_err(|e| bad(&files.ca, e))?;
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(&files.cert, e))?
            .with_client_cert_verifier(clients)
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(|e| bad(&files.key, format!("does not fit the certificate: {e}")))?;
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(&files.cert, e))?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(|e| bad(&files.key, format!("does not fit the certificate: {e}")))?;
        if let Some(name) = &server_name {
            ServerName::try_from(name.clone())
                .map_err(|e| bad(Path::new("cluster.tls_server_name"), e))?;
        }
        Ok(ClusterTls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
            server_name,
        })
    }

    /// The name to check the head's certificate against when dialling `head`.
    pub fn server_name_for(&self, head: std::net::SocketAddr) -> ServerName<'static> {
        match &self.server_name {
            Some(name) => ServerName::try_from(name.clone()).expect("checked when loaded"),
            None => ServerName::IpAddress(head.ip().into()),
        }
    }
}
