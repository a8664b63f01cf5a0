//! Certificate verification that reads the system's CA roots only when a TLS handshake needs them.
//!
//! reqwest's default verifier reads every root certificate from disk (about 150 files on Debian) when a
//! client is *built*, for each client. A run talks plain HTTP to a loopback registry without ever needing
//! them, and a run against a self-hosted registry builds several clients (the detection probe, the v2
//! client, the vendor's API client). Here the roots are read at the first handshake and shared by every
//! client of the process; `SSL_CERT_FILE`/`SSL_CERT_DIR` are honoured as before (they are read then).

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_platform_verifier::Verifier;

/// The platform verifier, built at the first certificate it is asked to check.
#[derive(Debug)]
struct LazyVerifier {
    provider: Arc<CryptoProvider>,
    /// Roots trusted beyond the system's (`--ca-file`).
    extra_roots: Vec<CertificateDer<'static>>,
    built: OnceLock<Result<Verifier, rustls::Error>>,
}

impl LazyVerifier {
    fn verifier(&self) -> Result<&Verifier, rustls::Error> {
        self.built
            .get_or_init(|| {
                Verifier::new_with_extra_roots(
                    self.extra_roots.iter().cloned(),
                    self.provider.clone(),
                )
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl ServerCertVerifier for LazyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verifier()?.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    // Handshake signatures depend on the crypto provider only, never on the roots: no need to load them.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            signature,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            signature,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TLS client configuration for reqwest that verifies certificates against the system's roots plus
/// `extra_roots`, reading the system's roots at the first handshake. Without extra roots the verifier
/// (and so the one reading of the roots) is shared by every client of the process.
pub fn client_config(
    extra_roots: Vec<CertificateDer<'static>>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    static SYSTEM_ONLY: OnceLock<Arc<LazyVerifier>> = OnceLock::new();
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let verifier = if extra_roots.is_empty() {
        SYSTEM_ONLY
            .get_or_init(|| {
                Arc::new(LazyVerifier {
                    provider: provider.clone(),
                    extra_roots: Vec::new(),
                    built: OnceLock::new(),
                })
            })
            .clone()
    } else {
        Arc::new(LazyVerifier {
            provider: provider.clone(),
            extra_roots,
            built: OnceLock::new(),
        })
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // What reqwest offers when it builds the configuration itself.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
