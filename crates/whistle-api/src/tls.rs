//! Transport security of the gRPC port: the server's TLS material ([`GrpcTls`], PEM
//! bytes read by the binary from the configured files) and mutual TLS for department
//! integrations.
//!
//! With a client CA configured, clients *may* present a certificate signed by it (rustls
//! verifies the chain; a client without one is still served, residents and staff
//! authenticate by token). Department accounts must present one: its subject CN or one of
//! its DNS subject alternative names must equal their department id, else the call is
//! `UNAUTHENTICATED` ([`check_client_certificate`]), so a leaked department token alone
//! cannot sign for cases or read them. The check runs inside authentication
//! ([`crate::auth::TokenAuthenticator::authenticate_request`]), so it covers every
//! service, not only `DepartmentService`.

use crate::auth::Principal;
use tonic::Status;
use tonic::transport::server::ServerTlsConfig;
use tonic::transport::{Certificate, CertificateDer, Identity};
use whistle_domain::Role;

/// PEM material for the gRPC port.
#[derive(Clone)]
pub struct GrpcTls {
    /// The server's certificate chain.
    pub cert_pem: Vec<u8>,
    /// The server's private key.
    pub key_pem: Vec<u8>,
    /// CA whose certificates clients may present; department accounts must then present
    /// one naming their department.
    pub client_ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for GrpcTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("GrpcTls")
            .field("client_ca", &self.client_ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

impl GrpcTls {
    /// tonic's server configuration: client certificates optional but verified.
    pub fn server_config(&self) -> ServerTlsConfig {
        let cfg = ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .timeout(std::time::Duration::from_secs(10));
        match &self.client_ca_pem {
            Some(ca) => cfg
                .client_ca_root(Certificate::from_pem(ca))
                .client_auth_optional(true),
            None => cfg,
        }
    }

    /// Whether department accounts must present a client certificate.
    pub fn mutual(&self) -> bool {
        self.client_ca_pem.is_some()
    }
}

/// Whether the certificate names `name` in its subject CN or a DNS SAN.
pub fn cert_names(cert: &CertificateDer<'_>, name: &str) -> bool {
    let Ok(cert) = webpki::EndEntityCert::try_from(cert) else {
        return false;
    };
    cert.valid_dns_names().any(|n| n.eq_ignore_ascii_case(name))
        || common_names(cert.subject()).any(|cn| cn == name.as_bytes())
}

/// With mutual TLS on (`required`), a department principal's request must come over a
/// connection whose client certificate `leaf` (already verified against the client CA by
/// rustls) names the principal's department; anyone else passes.
pub fn check_client_certificate(
    required: bool,
    leaf: Option<&CertificateDer<'_>>,
    principal: &Principal,
    rpc: &'static str,
) -> Result<(), Status> {
    if !required || principal.role != Role::Department {
        return Ok(());
    }
    // Fails closed: a department principal naming no department (refused when configured
    // or claimed, see `principal_from_parts`) has no certificate that could match.
    let department = principal.department.as_ref().map_or("", |d| d.as_str());
    let reason = match leaf {
        _ if department.is_empty() => "a department account must name its department",
        None => "a department account must present its client certificate",
        Some(leaf) if cert_names(leaf, department) => return Ok(()),
        Some(_) => "the client certificate does not name the account's department",
    };
    tracing::warn!(principal = %principal.id, department = %department, rpc, reason, "authentication refused");
    crate::metrics::denied("unauthenticated");
    Err(Status::unauthenticated(reason))
}

/// The values of the commonName (2.5.4.3) attributes of a DER `Name`'s contents (the
/// bytes inside its outer SEQUENCE, as `webpki::Cert::subject` gives them). Malformed
/// input ends the iteration.
fn common_names(name: &[u8]) -> impl Iterator<Item = &[u8]> {
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    let mut rdns = name;
    let mut attrs: &[u8] = &[];
    std::iter::from_fn(move || {
        loop {
            if attrs.is_empty() {
                // Next RelativeDistinguishedName: SET OF AttributeTypeAndValue.
                let (tag, body, rest) = tlv(rdns)?;
                rdns = rest;
                if tag != 0x31 {
                    return None;
                }
                attrs = body;
                continue;
            }
            // AttributeTypeAndValue: SEQUENCE { OID, value }.
            let (tag, atv, rest) = tlv(attrs)?;
            attrs = rest;
            if tag != 0x30 {
                return None;
            }
            let (oid_tag, oid, value) = tlv(atv)?;
            if oid_tag == 0x06 && oid == CN {
                let (_, value, _) = tlv(value)?;
                return Some(value);
            }
        }
    })
}

/// One DER tag-length-value: (tag, contents, the rest). Single-byte tags only.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_common_names_and_survives_garbage() {
        // SET { SEQUENCE { OID 2.5.4.6, "CN" } }, SET { SEQUENCE { OID 2.5.4.3, "fire" } }
        let name = [
            0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x06, 0x13, 0x02, b'C', b'N', 0x31,
            0x0d, 0x30, 0x0b, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x04, b'f', b'i', b'r', b'e',
        ];
        assert_eq!(common_names(&name).collect::<Vec<_>>(), vec![b"fire"]);
        for cut in 0..name.len() {
            let _ = common_names(&name[..cut]).count();
        }
        assert_eq!(common_names(&[0x31, 0x85, 0xff]).count(), 0);
        assert!(!cert_names(&CertificateDer::from(vec![0x30, 0x00]), "fire"));
    }
}
