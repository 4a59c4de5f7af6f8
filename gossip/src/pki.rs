//! Certificate authority operations: the cluster CA, node keys, CSRs, signing, fingerprints.
//!
//! Every node certificate carries the shared DNS name [`CLUSTER_SERVER_NAME`] (used as the TLS
//! server name when dialling any node) and the node name as its common name.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, CertificateSigningRequestDer};
use sha2::{Digest, Sha256};

use crate::error::IdentityError;

/// The DNS name in every node certificate; dialers use it as the TLS server name.
pub const CLUSTER_SERVER_NAME: &str = "node.skiff.cluster";

/// A freshly generated cluster CA.
pub(crate) struct NewCa {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A node certificate and the key it certifies.
pub(crate) struct NewNodeCert {
    pub cert_pem: String,
    pub key_pem: String,
}

/// SHA-256 of a certificate's DER: what a join token pins.
pub fn fingerprint(cert_der: &[u8]) -> [u8; 32] {
    Sha256::digest(cert_der).into()
}

/// Checks a node name: 1-63 ASCII letters, digits, '-', '_' or '.'.
pub fn validate_node_name(name: &str) -> Result<(), IdentityError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(IdentityError::InvalidNodeName {
            name: name.to_string(),
        })
    }
}

pub(crate) fn new_ca() -> Result<NewCa, IdentityError> {
    let key = KeyPair::generate().map_err(IdentityError::Certificate)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    let suffix: [u8; 6] = rand::random();
    dn.push(
        DnType::CommonName,
        format!("skiff cluster CA {}", hex::encode(suffix)),
    );
    dn.push(DnType::OrganizationName, "skiff");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    params.serial_number = Some(random_serial());
    let cert = params
        .self_signed(&key)
        .map_err(IdentityError::Certificate)?;
    Ok(NewCa {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn node_params(node_name: &str) -> Result<CertificateParams, IdentityError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, node_name);
    params.distinguished_name = dn;
    let dns = CLUSTER_SERVER_NAME
        .to_string()
        .try_into()
        .map_err(IdentityError::Certificate)?;
    params.subject_alt_names = vec![SanType::DnsName(dns)];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    params.serial_number = Some(random_serial());
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn random_serial() -> rcgen::SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // keep the serial positive
    rcgen::SerialNumber::from_slice(&bytes)
}

/// Signs a certificate for `node_name` (with a new key) directly with the CA.
pub(crate) fn issue_node_cert(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    node_name: &str,
) -> Result<NewNodeCert, IdentityError> {
    let key = KeyPair::generate().map_err(IdentityError::Certificate)?;
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(IdentityError::Certificate)?;
    let issuer =
        Issuer::from_ca_cert_pem(ca_cert_pem, ca_key).map_err(IdentityError::Certificate)?;
    let cert = node_params(node_name)?
        .signed_by(&key, &issuer)
        .map_err(IdentityError::Certificate)?;
    Ok(NewNodeCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A new node key, as PEM.
pub(crate) fn new_key_pem() -> Result<String, IdentityError> {
    Ok(KeyPair::generate()
        .map_err(IdentityError::Certificate)?
        .serialize_pem())
}

/// A CSR for the key in `key_pem` (the CSR proves possession of the key).
pub(crate) fn csr_for_key(key_pem: &str, node_name: &str) -> Result<Vec<u8>, IdentityError> {
    let key = KeyPair::from_pem(key_pem).map_err(IdentityError::Certificate)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, node_name);
    params.distinguished_name = dn;
    let csr = params
        .serialize_request(&key)
        .map_err(IdentityError::Certificate)?;
    Ok(csr.der().to_vec())
}

/// SHA-256 (hex) of the public key a CSR asks to certify (its SubjectPublicKeyInfo DER), after
/// checking the CSR's self-signature (possession of the key).
pub(crate) fn csr_key_sha256(csr_der: &[u8]) -> Result<String, IdentityError> {
    use x509_parser::prelude::FromDer;
    let bad = || IdentityError::Certificate(rcgen::Error::CouldNotParseCertificationRequest);
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(csr_der)
        .map_err(|_| bad())?;
    csr.verify_signature().map_err(|_| bad())?;
    Ok(hex::encode(Sha256::digest(
        csr.certification_request_info.subject_pki.raw,
    )))
}

/// Signs a CSR: only its public key is used; name, SAN, usages and validity are ours.
pub(crate) fn sign_csr(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    csr_der: &[u8],
    node_name: &str,
) -> Result<CertificateDer<'static>, IdentityError> {
    let csr = CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(
        csr_der.to_vec(),
    ))
    .map_err(IdentityError::Certificate)?;
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(IdentityError::Certificate)?;
    let issuer =
        Issuer::from_ca_cert_pem(ca_cert_pem, ca_key).map_err(IdentityError::Certificate)?;
    let cert = node_params(node_name)?
        .signed_by(&csr.public_key, &issuer)
        .map_err(IdentityError::Certificate)?;
    Ok(cert.der().clone())
}

/// SHA-256 (hex) of the public key a certificate certifies (its SubjectPublicKeyInfo DER), the
/// same hash [`csr_key_sha256`] gives for the CSR it was signed from.
pub(crate) fn cert_key_sha256(cert_der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    Some(hex::encode(Sha256::digest(
        cert.tbs_certificate.subject_pki.raw,
    )))
}

/// Encodes DER as a PEM block of the given label.
pub(crate) fn to_pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_checked() {
        assert!(validate_node_name("edge-01.site_a").is_ok());
        assert!(validate_node_name("").is_err());
        assert!(validate_node_name("a b").is_err());
        assert!(validate_node_name(&"x".repeat(64)).is_err());
    }

    #[test]
    fn csr_is_signed_and_garbage_is_refused() {
        let ca = new_ca().expect("ca");
        let key = new_key_pem().expect("key");
        let csr = csr_for_key(&key, "evil-name").expect("csr");
        let der = sign_csr(&ca.cert_pem, &ca.key_pem, &csr, "good-name").expect("sign");
        assert!(!der.is_empty());
        assert_eq!(
            cert_key_sha256(&der),
            Some(csr_key_sha256(&csr).expect("hash")),
            "a certificate and its CSR name the same key"
        );
        // The same key gives the same key hash in every CSR; another key does not.
        let again = csr_for_key(&key, "other").expect("csr");
        let other = csr_for_key(&new_key_pem().expect("key"), "evil-name").expect("csr");
        let hash = csr_key_sha256(&csr).expect("hash");
        assert_eq!(csr_key_sha256(&again).expect("hash"), hash);
        assert_ne!(csr_key_sha256(&other).expect("hash"), hash);
        let mut tampered = csr.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 0x01;
        assert!(
            csr_key_sha256(&tampered).is_err(),
            "a broken self-signature is refused"
        );
        assert!(sign_csr(&ca.cert_pem, &ca.key_pem, b"garbage", "n").is_err());
    }
}
