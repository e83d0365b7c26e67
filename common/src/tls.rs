//! TLS for Fresco's internal traffic (feature `tls`), configured by `[internal_tls]`:
//!
//! - `cert_file` + `key_file`: the service serves HTTPS with this certificate chain (rustls,
//!   TLS 1.2 and 1.3, the ring provider). Set on the scheduler, the agents and the API (whose
//!   `/internal/v1/code` download then travels over TLS too).
//! - `ca_file`: the CA bundle internal clients verify their peers against, instead of the
//!   built-in roots. When it is set, internal clients refuse plain `http://` URLs, so nothing
//!   falls back to clear text.
//!
//! Client certificates are not asked for: callers authenticate with the signed tokens of
//! [`crate::ticket`] inside the TLS channel.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::conf::InternalTlsSection;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read [internal_tls] {option} {path}: {message}")]
    File {
        option: &'static str,
        path: String,
        message: String,
    },
    #[error("[internal_tls] cert_file and key_file go together: set both or neither")]
    Half,
    #[error("invalid TLS configuration: {0}")]
    Config(#[source] rustls::Error),
    #[error("cannot build an http client: {0}")]
    Client(#[source] reqwest::Error),
}

/// The loaded `[internal_tls]` section; cheap to clone.
#[derive(Clone, Default)]
pub struct InternalTls {
    server: Option<Arc<rustls::ServerConfig>>,
    roots: Vec<reqwest::Certificate>,
}

impl std::fmt::Debug for InternalTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalTls")
            .field("serves_tls", &self.server.is_some())
            .field("custom_roots", &self.roots.len())
            .finish()
    }
}

fn read(option: &'static str, path: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::File {
        option,
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// The crypto provider of every internal TLS endpoint: ring, as reqwest's rustls uses.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl InternalTls {
    /// No TLS: plain HTTP servers, clients with the built-in roots.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Loads the section's files (all of them now, so a bad file stops the service at start).
    pub fn from_section(section: &InternalTlsSection) -> Result<Self, TlsError> {
        let server = match (section.cert_file.is_empty(), section.key_file.is_empty()) {
            (true, true) => None,
            (false, false) => Some(Arc::new(server_config(
                &section.cert_file,
                &section.key_file,
            )?)),
            _ => return Err(TlsError::Half),
        };
        let roots = if section.ca_file.is_empty() {
            Vec::new()
        } else {
            let pem = read("ca_file", &section.ca_file)?;
            let roots =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| TlsError::File {
                    option: "ca_file",
                    path: section.ca_file.clone(),
                    message: e.to_string(),
                })?;
            if roots.is_empty() {
                return Err(TlsError::File {
                    option: "ca_file",
                    path: section.ca_file.clone(),
                    message: "no certificate in it".into(),
                });
            }
            roots
        };
        Ok(Self { server, roots })
    }

    /// The server configuration when this service serves HTTPS.
    pub fn server_config(&self) -> Option<rustls::ServerConfig> {
        self.server.as_deref().cloned()
    }

    /// Whether this service serves HTTPS.
    pub fn serves_tls(&self) -> bool {
        self.server.is_some()
    }

    /// `https` when this service serves TLS, else `http`: for URLs it advertises.
    pub fn scheme(&self) -> &'static str {
        if self.serves_tls() {
            "https"
        } else {
            "http"
        }
    }

    /// Whether internal clients insist on TLS (a CA bundle is configured).
    pub fn requires_tls(&self) -> bool {
        !self.roots.is_empty()
    }

    /// A client builder for internal calls: trusts `ca_file` only (and then refuses plain
    /// HTTP), else the built-in roots.
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        let mut builder = reqwest::Client::builder();
        if self.requires_tls() {
            builder = builder.tls_built_in_root_certs(false).https_only(true);
            for root in &self.roots {
                builder = builder.add_root_certificate(root.clone());
            }
        }
        builder
    }
}

fn server_config(cert_file: &str, key_file: &str) -> Result<rustls::ServerConfig, TlsError> {
    let bad = |option: &'static str, path: &str, message: String| TlsError::File {
        option,
        path: path.to_owned(),
        message,
    };
    let cert_pem = read("cert_file", cert_file)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| bad("cert_file", cert_file, e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("cert_file", cert_file, "no certificate in it".into()));
    }
    let key_pem = read("key_file", key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| bad("key_file", key_file, e.to_string()))?;
    rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(TlsError::Config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(cert: &str, key: &str, ca: &str) -> InternalTlsSection {
        let raw = crate::conf::RawConfig::parse(
            &format!("[internal_tls]\ncert_file = {cert}\nkey_file = {key}\nca_file = {ca}\n"),
            "test",
        )
        .expect("parse");
        raw.section().expect("section")
    }

    #[test]
    fn missing_halves_and_files_are_clear_errors() {
        let none = InternalTls::from_section(&section("", "", "")).expect("plain");
        assert!(!none.serves_tls() && !none.requires_tls());
        assert_eq!(none.scheme(), "http");
        assert!(matches!(
            InternalTls::from_section(&section("/x.pem", "", "")),
            Err(TlsError::Half)
        ));
        let err = InternalTls::from_section(&section("", "", "/nonexistent/ca.pem"))
            .expect_err("missing ca");
        assert!(
            err.to_string().contains("ca_file /nonexistent/ca.pem"),
            "{err}"
        );
        let dir = std::env::temp_dir().join(format!("fresco-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let err = InternalTls::from_section(&section(
            empty.to_str().expect("utf-8"),
            empty.to_str().expect("utf-8"),
            "",
        ))
        .expect_err("no certificate");
        assert!(err.to_string().contains("no certificate"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
