//! What a server certificate must be under each `sslmode` (see the table in `mod.rs`), and
//! why one was refused, in one line.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};

/// Why a server's certificate was refused, in one line.
#[derive(Debug)]
pub struct Refusal(String);

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for Refusal {}

/// The [`Refusal`] or other TLS failure behind a connection error, in one line, if TLS
/// is what failed.
pub fn refusal(error: &tokio_postgres::Error) -> Option<String> {
    let mut cause: Option<&(dyn StdError + 'static)> = error.source();
    while let Some(current) = cause {
        let inner = current
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn StdError + 'static));
        if let Some(rustls) = inner
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .or_else(|| current.downcast_ref::<rustls::Error>())
        {
            return Some(match rustls {
                rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(other))) => {
                    other.to_string()
                }
                rustls::Error::AlertReceived(alert) => format!(
                    "the server ended the TLS handshake ({alert:?}); if it asks for a client \
                     certificate, check sslcert and sslkey"
                ),
                other => format!("the TLS handshake failed: {other}"),
            });
        }
        cause = inner.or_else(|| current.source());
    }
    None
}

/// The certificates a chain must lead to, and how to name them in a refusal.
#[derive(Debug)]
pub struct Roots {
    pub store: Arc<RootCertStore>,
    pub name: String,
}

/// Accepts a server certificate as libpq would under the settings (see the table above).
/// The handshake's own signatures are checked in every mode: they prove only that the
/// server holds the key of the certificate it sent, whatever that certificate is worth.
#[derive(Debug)]
pub struct Verifier {
    /// Whether the host's name must be in the certificate (`verify-full`).
    pub check_name: bool,
    /// `None`: no `sslrootcert` (only under `prefer` and `require`), nothing to check.
    pub roots: Option<Roots>,
    pub provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(roots) = &self.roots else {
            return Ok(ServerCertVerified::assertion());
        };
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &roots.store,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )
        .map_err(|error| refuse(chain_problem(&error, &roots.name)))?;
        if self.check_name {
            verify_server_name(&cert, server_name)
                .map_err(|error| refuse(name_problem(&error, server_name)))?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn refuse(problem: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Refusal(
        problem,
    )))))
}

fn chain_problem(error: &rustls::Error, roots: &str) -> String {
    match error {
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "the server's certificate has expired".into(),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        ) => "the server's certificate is not valid yet".into(),
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => format!("the server's certificate is not signed by {roots}"),
        other => format!("the server's certificate is refused: {other}"),
    }
}

fn name_problem(error: &rustls::Error, server_name: &ServerName<'_>) -> String {
    let host = server_name.to_str();
    match error {
        rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
            presented,
            ..
        }) if !presented.is_empty() => {
            let names: Vec<&str> = presented.iter().map(|name| plain_name(name)).collect();
            format!(
                "the server's certificate is for {}, not {host}",
                names.join(", ")
            )
        }
        _ => format!("the server's certificate is not for {host}"),
    }
}

/// `DnsName("db.internal")` and `IpAddress(10.0.0.5)`, as webpki reports the names a
/// certificate holds, without the wrapping.
fn plain_name(presented: &str) -> &str {
    presented
        .strip_prefix("DnsName(\"")
        .and_then(|name| name.strip_suffix("\")"))
        .or_else(|| {
            presented
                .strip_prefix("IpAddress(")
                .and_then(|name| name.strip_suffix(')'))
        })
        .unwrap_or(presented)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webpki_names_are_shown_plain() {
        assert_eq!(plain_name("DnsName(\"db.internal\")"), "db.internal");
        assert_eq!(plain_name("IpAddress(10.0.0.5)"), "10.0.0.5");
        assert_eq!(plain_name("DirectoryName"), "DirectoryName");
    }
}
