//! TLS policy for the vSphere connection and certificate fingerprints.
//!
//! Nouns: [`TlsMode`] (verify against public roots — the default —,
//! pin a SHA-256 fingerprint, or accept anything on explicit opt-in),
//! [`CertSeen`] (the server's leaf certificate as presented in the last
//! handshake), fingerprints in `AA:BB:...` form (SHA-256 for pinning,
//! SHA-1 thumbprint for VDDK's `ConnectParams.thumbPrint`).
//!
//! Invariants: pinning compares the whole leaf certificate's SHA-256; a
//! pinned or insecure connection still checks the handshake signature
//! with the certificate's key; the leaf is recorded before any check so
//! `vcenter check` can show what the server presented even when refused.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha1::Digest as _;

use crate::error::{Error, Result};

/// How the server certificate is checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TlsMode {
    /// Verify the chain against the public web roots and the host name.
    #[default]
    Verify,
    /// Accept only a leaf certificate with this SHA-256 digest (32 bytes).
    Pinned(Vec<u8>),
    /// Accept any certificate (explicit opt-in; not recommended).
    Insecure,
}

/// The leaf certificate of the last handshake, shared with the verifier.
#[derive(Clone, Debug, Default)]
pub struct CertSeen(Arc<Mutex<Option<Vec<u8>>>>);

impl CertSeen {
    /// The DER of the server's leaf certificate, if a TLS handshake happened.
    pub fn der(&self) -> Option<Vec<u8>> {
        self.0.lock().ok().and_then(|g| g.clone())
    }

    fn set(&self, der: &[u8]) {
        if let Ok(mut g) = self.0.lock() {
            *g = Some(der.to_vec());
        }
    }
}

/// Formats bytes as upper-case hex pairs joined by colons.
pub fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// SHA-256 fingerprint of a DER certificate, `AA:BB:...`.
pub fn sha256_fingerprint(der: &[u8]) -> String {
    colon_hex(&sha2::Sha256::digest(der))
}

/// SHA-1 thumbprint of a DER certificate, `AA:BB:...` (what VDDK wants).
pub fn sha1_thumbprint(der: &[u8]) -> String {
    colon_hex(&sha1::Sha1::digest(der))
}

/// Parses a SHA-256 fingerprint given as hex, with or without colons
/// (spaces are ignored too).
pub fn parse_fingerprint(s: &str) -> Result<Vec<u8>> {
    let hex: String = s
        .chars()
        .filter(|c| !matches!(c, ':' | ' ' | '-'))
        .collect();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::Config(format!(
            "fingerprint {s:?} is not a SHA-256 digest (64 hex digits, colons optional)"
        )));
    }
    (0..32)
        .map(|i| {
            u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map_err(|_| Error::Config(format!("bad hex in fingerprint {s:?}")))
        })
        .collect()
}

#[derive(Debug)]
struct Verifier {
    mode: TlsMode,
    seen: CertSeen,
    provider: Arc<CryptoProvider>,
    webpki: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        self.seen.set(end_entity.as_ref());
        match &self.mode {
            TlsMode::Insecure => Ok(ServerCertVerified::assertion()),
            TlsMode::Pinned(want) => {
                let got = sha2::Sha256::digest(end_entity.as_ref());
                if got.as_slice() == want.as_slice() {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(rustls::Error::General(format!(
                        "certificate fingerprint {} is not the pinned {}",
                        colon_hex(&got),
                        colon_hex(want)
                    )))
                }
            }
            TlsMode::Verify => self.webpki.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
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
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
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

/// Builds the rustls client configuration for a mode; the verifier records
/// the leaf certificate into `seen`.
pub fn client_config(mode: &TlsMode, seen: &CertSeen) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| Error::Config(format!("TLS roots: {e}")))?;
    let verifier = Verifier {
        mode: mode.clone(),
        seen: seen.clone(),
        provider: provider.clone(),
        webpki,
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS versions: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_forms() {
        let fp = sha256_fingerprint(b"abc");
        assert_eq!(
            fp,
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
        assert_eq!(
            sha1_thumbprint(b"abc"),
            "A9:99:3E:36:47:06:81:6A:BA:3E:25:71:78:50:C2:6C:9C:D0:D8:9D"
        );
        let parsed = parse_fingerprint(&fp).unwrap();
        assert_eq!(
            parsed,
            parse_fingerprint(&fp.replace(':', "").to_lowercase()).unwrap()
        );
        assert_eq!(colon_hex(&parsed), fp);
        assert!(parse_fingerprint("AB:CD").is_err());
        assert!(parse_fingerprint(&"Z".repeat(64)).is_err());
    }
}
