//! Bearer-token authentication. Tokens are random 256-bit secrets shown once; only their
//! SHA-256 is kept (a random token needs no slow hash: there is nothing to brute-force).
//! Every refusal is logged with the reason, never with the token.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use tonic::Status;
use tonic::metadata::MetadataMap;
use whistle_domain::{Actor, DepartmentId, PrincipalId, Role};

/// A principal as configured: who they are and what they may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub id: PrincipalId,
    pub role: Role,
    /// Required for department accounts: the department they sign for.
    pub department: Option<DepartmentId>,
    /// Display name, for logs and the CLI.
    pub name: String,
}

impl Principal {
    pub fn actor(&self) -> Actor {
        Actor {
            principal: self.id.clone(),
            role: self.role,
            department: self.department.clone(),
        }
    }
}

/// Lower-case hex SHA-256 of a token, as stored in configuration.
pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest.iter() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Maps token hashes to principals.
#[derive(Debug, Clone, Default)]
pub struct TokenAuthenticator {
    by_hash: HashMap<String, Principal>,
}

impl TokenAuthenticator {
    /// `entries` are (lower-case hex SHA-256 of the token, principal).
    pub fn new(entries: impl IntoIterator<Item = (String, Principal)>) -> Self {
        TokenAuthenticator {
            by_hash: entries
                .into_iter()
                .map(|(h, p)| (h.to_ascii_lowercase(), p))
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// The actor behind the request's `authorization: Bearer <token>` header.
    pub fn authenticate(&self, metadata: &MetadataMap, rpc: &'static str) -> Result<Actor, Status> {
        let deny = |reason: &'static str| {
            tracing::warn!(rpc, reason, "authentication refused");
            crate::metrics::denied("unauthenticated");
            Status::unauthenticated(reason)
        };
        let header = metadata.get("authorization").ok_or_else(|| {
            deny("missing authorization header: send `authorization: Bearer <token>`")
        })?;
        let value = header
            .to_str()
            .map_err(|_| deny("authorization header is not ASCII"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 256)
            .ok_or_else(|| deny("authorization header must be `Bearer <token>`"))?;
        let principal = self
            .by_hash
            .get(&hash_token(token))
            .ok_or_else(|| deny("unknown or revoked token"))?;
        Ok(principal.actor())
    }
}
