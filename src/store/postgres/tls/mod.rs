//! TLS to PostgreSQL, with libpq's parameters and libpq's meaning for each.
//!
//! The database URL may carry `sslmode`, `sslrootcert`, `sslcert` and `sslkey`, as a
//! `psql` connection string does. tokio-postgres knows only `sslmode` `disable`, `prefer`
//! and `require`, and refuses the other parameters, so [`TlsSettings::take`] takes them
//! out of the URL before tokio-postgres parses it. The connector is
//! tokio-postgres-rustls over rustls (with ring, the TLS stack reqwest already brings);
//! what it accepts is decided by [`Verifier`], which follows libpq:
//!
//! | `sslmode`     | encrypted                         | certificate checked                |
//! |---------------|-----------------------------------|------------------------------------|
//! | `disable`     | never                             | —                                  |
//! | `prefer`      | if the server offers TLS (default)| chain, only if `sslrootcert` is set |
//! | `require`     | always                            | chain, only if `sslrootcert` is set |
//! | `verify-ca`   | always                            | chain to `sslrootcert`             |
//! | `verify-full` | always                            | chain, and the host's name         |
//!
//! That `require` checks the chain when a root certificate is given is libpq's documented
//! behaviour for compatibility (libpq also looks for `~/.postgresql/root.crt`; statushook
//! reads no file it was not named). `sslrootcert=system` takes the operating system's roots
//! and, as in libpq 16, makes `verify-full` the default and refuses weaker modes. With
//! `prefer`, a failed TLS handshake is tried again without TLS, as libpq does (see
//! `url.rs`). A refused certificate fails the handshake with a `Refusal` that says why in
//! one line (`verify.rs`), which [`refusal`] finds again in the connection error.

mod verify;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;
use tokio_postgres_rustls::MakeRustlsConnect;

pub use verify::refusal;
use verify::{Roots, Verifier};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, String> {
        match value {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            "allow" => Err("sslmode allow is not supported (use prefer)".into()),
            other => Err(format!(
                "sslmode {other:?} is not one of disable, prefer, require, verify-ca, verify-full"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// The mode tokio-postgres negotiates with: whether TLS is tried, and whether it is
    /// required. What is checked is the verifier's business.
    pub fn negotiation(self) -> tokio_postgres::config::SslMode {
        match self {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        }
    }
}

/// Where the certificates that may sign the server's come from (`sslrootcert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    File(PathBuf),
    /// `sslrootcert=system`: the operating system's roots.
    System,
}

impl fmt::Display for RootCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RootCert::File(path) => write!(f, "sslrootcert {}", path.display()),
            RootCert::System => f.write_str("the system's root certificates (sslrootcert=system)"),
        }
    }
}

/// libpq's TLS parameters of one URL, and the connector made from them.
#[derive(Clone)]
pub struct TlsSettings {
    mode: SslMode,
    root_cert: Option<RootCert>,
    client_cert: Option<PathBuf>,
    connector: MakeRustlsConnect,
}

impl TlsSettings {
    /// Takes libpq's TLS parameters out of the URL `raw`; answers the URL without them,
    /// for tokio-postgres, and the settings, with their certificates read. The problem
    /// never quotes the URL, which may hold a password.
    pub fn take(raw: &str) -> Result<(String, TlsSettings), String> {
        let (base, query) = match raw.split_once('?') {
            Some((base, query)) => (base, query),
            None => (raw, ""),
        };
        let mut kept = Vec::new();
        let (mut mode, mut root_cert, mut cert, mut key) = (None, None, None, None);
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = || {
                percent_encoding::percent_decode_str(value)
                    .decode_utf8()
                    .map(|value| value.into_owned())
                    .map_err(|_| format!("{name} is not percent-encoded UTF-8"))
            };
            match name {
                "sslmode" => mode = Some(SslMode::parse(&value()?)?),
                "sslrootcert" => root_cert = Some(value()?),
                "sslcert" => cert = Some(PathBuf::from(value()?)),
                "sslkey" => key = Some(PathBuf::from(value()?)),
                "sslpassword"
                | "sslcrl"
                | "sslcrldir"
                | "sslcertmode"
                | "sslsni"
                | "sslcompression"
                | "ssl_min_protocol_version"
                | "ssl_max_protocol_version"
                | "requiressl" => return Err(format!("{name} is not supported")),
                _ => kept.push(pair),
            }
        }
        let root_cert = root_cert.map(|value| match value.as_str() {
            "system" => RootCert::System,
            _ => RootCert::File(PathBuf::from(value)),
        });
        let mode = match (mode, &root_cert) {
            (None, Some(RootCert::System)) => SslMode::VerifyFull,
            (None, _) => SslMode::Prefer,
            (Some(mode), Some(RootCert::System)) if mode != SslMode::VerifyFull => {
                return Err(format!(
                    "sslmode {} may not be used with sslrootcert=system (use verify-full)",
                    mode.as_str()
                ))
            }
            (Some(mode), _) => mode,
        };
        if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) && root_cert.is_none() {
            return Err(format!(
                "sslmode {} needs sslrootcert: a PEM file of the certificates that sign the \
                 server's, or system for the operating system's roots",
                mode.as_str()
            ));
        }
        let client = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) => {
                return Err("sslcert needs sslkey (the client certificate's key)".into())
            }
            (None, Some(_)) => return Err("sslkey needs sslcert (the client certificate)".into()),
        };
        let roots = match (&root_cert, mode) {
            (_, SslMode::Disable) | (None, _) => None,
            (Some(root_cert), _) => Some(Roots {
                store: Arc::new(read_roots(root_cert)?),
                name: root_cert.to_string(),
            }),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Verifier {
            check_name: mode == SslMode::VerifyFull,
            roots,
            provider: Arc::clone(&provider),
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| format!("cannot set up TLS: {error}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let config = match &client {
            Some((cert, key)) => {
                let (chain, key) = read_client_cert(cert, key)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|error| format!("sslcert {}: {error}", cert.display()))?
            }
            None => builder.with_no_client_auth(),
        };
        let url = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        let settings = TlsSettings {
            mode,
            root_cert,
            client_cert: client.map(|(cert, _)| cert),
            connector: MakeRustlsConnect::new(config),
        };
        Ok((url, settings))
    }

    pub fn mode(&self) -> SslMode {
        self.mode
    }

    pub fn connector(&self) -> MakeRustlsConnect {
        self.connector.clone()
    }
}

impl fmt::Debug for TlsSettings {
    /// The mode and the files named, never what they hold.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sslmode={}", self.mode.as_str())?;
        match &self.root_cert {
            Some(RootCert::File(path)) => write!(f, "&sslrootcert={}", path.display())?,
            Some(RootCert::System) => f.write_str("&sslrootcert=system")?,
            None => {}
        }
        if let Some(cert) = &self.client_cert {
            write!(f, "&sslcert={}", cert.display())?;
        }
        Ok(())
    }
}

fn read_roots(root_cert: &RootCert) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match root_cert {
        RootCert::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(
                    "sslrootcert=system: no root certificates found in the operating system's store"
                        .into(),
                );
            }
        }
        RootCert::File(path) => {
            let certs = read_certs(path, "sslrootcert")?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!(
                    "sslrootcert {}: no usable CA certificate in it",
                    path.display()
                ));
            }
        }
    }
    Ok(store)
}

fn read_certs(path: &Path, name: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let problem = |error: &dyn fmt::Display| format!("{name} {}: {error}", path.display());
    let pem = std::fs::read(path).map_err(|error| problem(&error))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| problem(&error))?;
    if certs.is_empty() {
        return Err(problem(&"no PEM certificate in it"));
    }
    Ok(certs)
}

type ClientCert = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn read_client_cert(cert: &Path, key: &Path) -> Result<ClientCert, String> {
    let chain = read_certs(cert, "sslcert")?;
    let pem = std::fs::read(key).map_err(|error| format!("sslkey {}: {error}", key.display()))?;
    let key = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|error| format!("sslkey {}: no usable private key ({error})", key.display()))?;
    Ok((chain, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(url: &str) -> Result<(String, SslMode), String> {
        TlsSettings::take(url).map(|(url, settings)| (url, settings.mode()))
    }

    #[test]
    fn the_default_is_prefer_as_in_libpq() {
        assert_eq!(
            take("postgres://u@db/x").unwrap(),
            ("postgres://u@db/x".into(), SslMode::Prefer)
        );
    }

    #[test]
    fn tls_parameters_are_taken_out_and_the_others_kept() {
        let (url, mode) =
            take("postgres://u@db/x?application_name=a&sslmode=require&connect_timeout=3").unwrap();
        assert_eq!(
            url,
            "postgres://u@db/x?application_name=a&connect_timeout=3"
        );
        assert_eq!(mode, SslMode::Require);
    }

    #[test]
    fn settings_libpq_refuses_are_refused() {
        let cases = [
            ("postgres://db/x?sslmode=verify-full", "needs sslrootcert"),
            ("postgres://db/x?sslmode=verify-ca", "needs sslrootcert"),
            ("postgres://db/x?sslmode=bogus", "is not one of"),
            ("postgres://db/x?sslmode=allow", "not supported"),
            (
                "postgres://db/x?sslmode=require&sslrootcert=system",
                "may not be used with sslrootcert=system",
            ),
            ("postgres://db/x?sslcert=/c.pem", "sslcert needs sslkey"),
            ("postgres://db/x?sslcrl=/c.pem", "sslcrl is not supported"),
            (
                "postgres://db/x?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem",
                "sslrootcert /nonexistent/ca.pem",
            ),
        ];
        for (url, expected) in cases {
            let problem = take(url).expect_err(url);
            assert!(problem.contains(expected), "{url}: {problem}");
        }
    }
}
