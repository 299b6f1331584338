//! Verification of JWTs from a district's identity provider (compact JWS, RFC 7515/7519),
//! for districts whose staff already sign in there. Optional: without a `[jwt]` table
//! only whistle's own tokens ([`crate::auth`]) are accepted.
//!
//! What is accepted: RS256 (RSA PKCS#1 v1.5, 2048–8192-bit keys) and ES256 (P-256),
//! verified with `ring`, the one crypto provider in the tree, against a JWKS document read
//! at start. `alg: none`, HMAC (`HS*`, which would make the public key a shared secret)
//! and every other algorithm are refused, as is a `crit` header (no extension is
//! understood). The key is the one the header's `kid` names; a token without `kid` is
//! accepted only when the set has exactly one key, so it is never tried against several.
//! The key must fit the algorithm (`kty`, `crv`, and `alg` when the key states one).
//!
//! Claims: `iss` must equal the configured issuer, `aud` (a string or an array) must
//! contain the configured audience, `exp` is required and `nbf` honoured, both with a
//! small leeway for clock skew, judged by the application's clock. The signature is
//! checked before the claims are read. The whistle principal comes from `sub` (its id),
//! the role claim ([`DEFAULT_ROLE_CLAIM`], values as [`whistle_domain::Role`]'s names),
//! [`DEPARTMENT_CLAIM`], [`SCOPE_CLAIM`] and [`GRIDS_CLAIM`], built by
//! [`crate::auth::principal_from_parts`] like a config file entry.
//!
//! Every refusal is a [`JwtError`] naming the reason; nothing here logs, and nothing
//! here ever puts the token (or a segment of it) in an error.

use crate::auth::{Principal, PrincipalError, principal_from_parts};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::{Map, Value};
use std::sync::Arc;
use time::OffsetDateTime;
use whistle_domain::Role;
use whistle_domain::ids::is_valid_code;

/// Claim holding the whistle role, unless configured otherwise.
pub const DEFAULT_ROLE_CLAIM: &str = "whistle_role";
/// Department of a department account.
pub const DEPARTMENT_CLAIM: &str = "whistle_department";
/// Org node of a grid worker, handler or supervisor (like the config file's `scope`).
pub const SCOPE_CLAIM: &str = "whistle_scope";
/// Grids of a grid worker (like the config file's `grids`).
pub const GRIDS_CLAIM: &str = "whistle_grids";
/// Clock skew tolerated on `exp` and `nbf`, unless configured otherwise.
pub const DEFAULT_LEEWAY_SECS: u64 = 60;
/// Largest leeway accepted: beyond this an expired token would live on noticeably.
pub const MAX_LEEWAY_SECS: u64 = 600;
/// Longest token looked at. An RS256 token with an 8192-bit key and generous claims fits;
/// anything longer is refused before decoding.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Longest `sub`: it becomes the actor id written into events and logs.
const MAX_SUBJECT_CHARS: usize = 256;
/// Longest display name taken from `name` (longer ones fall back to `sub`).
const MAX_NAME_CHARS: usize = 200;
/// Most grids a token may list (as `IssueToken`).
const MAX_GRIDS: usize = 1000;

/// Whom tokens must come from and be meant for (the config file's `[jwt]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfig {
    /// Exact `iss` of the identity provider.
    pub issuer: String,
    /// The `aud` whistle's tokens carry.
    pub audience: String,
    /// Claim holding the whistle role.
    pub role_claim: String,
    /// Clock skew tolerated on `exp` and `nbf`, seconds.
    pub leeway_secs: u64,
}

impl JwtConfig {
    /// Default role claim and leeway.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        JwtConfig {
            issuer: issuer.into(),
            audience: audience.into(),
            role_claim: DEFAULT_ROLE_CLAIM.to_string(),
            leeway_secs: DEFAULT_LEEWAY_SECS,
        }
    }
}

/// Why a configuration or key set is refused at start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("{0}")]
    Config(&'static str),
    #[error("not a JWKS document ({{\"keys\": [...]}}): {0}")]
    Json(String),
    #[error("key #{index}{kid}: {reason}")]
    Key {
        index: usize,
        /// ` (kid "…")` when the key has one, for the message.
        kid: String,
        reason: &'static str,
    },
    #[error("two keys have kid {0:?}")]
    DuplicateKid(String),
    #[error("no RS256 or ES256 signing key in the set")]
    NoUsableKey,
}

/// Why a token is refused. The messages name the reason, never the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("algorithm {0} is not accepted (RS256 or ES256 only)")]
    Algorithm(String),
    #[error("no key for this token: {0}")]
    UnknownKey(&'static str),
    #[error("the token's key does not fit its algorithm: {0}")]
    KeyMismatch(&'static str),
    #[error("signature does not verify")]
    Signature,
    #[error("issuer (iss) is not the configured identity provider")]
    Issuer,
    #[error("audience (aud) does not include whistle's")]
    Audience,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet (nbf)")]
    NotYetValid,
    #[error("claim {name}: {reason}")]
    Claim { name: String, reason: String },
}

impl JwtError {
    /// A fixed label per variant, for structured logs.
    pub fn reason(&self) -> &'static str {
        match self {
            JwtError::Malformed(_) => "jwt_malformed",
            JwtError::Algorithm(_) => "jwt_algorithm",
            JwtError::UnknownKey(_) => "jwt_unknown_key",
            JwtError::KeyMismatch(_) => "jwt_key_mismatch",
            JwtError::Signature => "jwt_signature",
            JwtError::Issuer => "jwt_issuer",
            JwtError::Audience => "jwt_audience",
            JwtError::Expired => "jwt_expired",
            JwtError::NotYetValid => "jwt_not_yet_valid",
            JwtError::Claim { .. } => "jwt_claim",
        }
    }

    fn claim(name: &str, reason: impl Into<String>) -> Self {
        JwtError::Claim {
            name: name.to_string(),
            reason: reason.into(),
        }
    }
}

/// The algorithms whistle verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alg {
    Rs256,
    Es256,
}

impl Alg {
    fn parse(s: &str) -> Option<Alg> {
        match s {
            "RS256" => Some(Alg::Rs256),
            "ES256" => Some(Alg::Es256),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Es256 => "ES256",
        }
    }
}

/// A key's public material, as far as whistle can use it.
#[derive(Clone)]
enum Material {
    /// Big-endian modulus and exponent, leading zeros stripped (ring wants none).
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// Uncompressed P-256 point: 0x04 || x || y.
    P256 { point: Vec<u8> },
    /// Another key type or curve (an IdP's set may hold keys for other uses); kept so
    /// that a token naming it is refused as a key mismatch rather than an unknown key.
    Unsupported,
}

#[derive(Clone)]
struct Key {
    kid: Option<String>,
    /// The key's own `alg`, when it states one: it must then equal the token's.
    alg: Option<String>,
    material: Material,
}

struct Inner {
    config: JwtConfig,
    keys: Vec<Key>,
}

/// Verifies tokens against one issuer, audience and key set. Cheap to clone.
#[derive(Clone)]
pub struct JwtVerifier(Arc<Inner>);

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.0.config.issuer)
            .field("audience", &self.0.config.audience)
            .field("role_claim", &self.0.config.role_claim)
            .field("leeway_secs", &self.0.config.leeway_secs)
            .field("keys", &self.0.keys.len())
            .finish()
    }
}

/// Does `token` look like a compact JWS: three segments of base64url characters
/// separated by dots, header and payload non-empty? (The signature may be empty so that
/// an `alg: none` token is refused as such, not as an unknown token.) whistle's own
/// tokens (`wst_` + hex) have no dots.
pub fn is_jws_shaped(token: &str) -> bool {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let b64url = |seg: &str| {
        seg.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    !h.is_empty() && !p.is_empty() && b64url(h) && b64url(p) && b64url(s)
}

fn b64(seg: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(seg).ok()
}

/// A token-supplied string fit for an error message: short and printable.
fn shown(s: &str) -> String {
    let s: String = s.chars().take(32).collect();
    if s.chars().all(|c| c.is_ascii_graphic()) {
        s
    } else {
        format!("{s:?}")
    }
}

impl JwtVerifier {
    /// A verifier for `config` with the keys of the JWKS document `jwks` (JSON).
    pub fn new(config: JwtConfig, jwks: &str) -> Result<JwtVerifier, JwksError> {
        if config.issuer.is_empty() {
            return Err(JwksError::Config("issuer must not be empty"));
        }
        if config.audience.is_empty() {
            return Err(JwksError::Config("audience must not be empty"));
        }
        if config.role_claim.is_empty() {
            return Err(JwksError::Config("role_claim must not be empty"));
        }
        if config.leeway_secs > MAX_LEEWAY_SECS {
            return Err(JwksError::Config("leeway_secs must be at most 600"));
        }
        let doc: Value = serde_json::from_str(jwks).map_err(|e| JwksError::Json(e.to_string()))?;
        let list = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| JwksError::Json("no `keys` array".into()))?;
        let mut keys: Vec<Key> = Vec::with_capacity(list.len());
        for (index, k) in list.iter().enumerate() {
            let key = parse_key(index, k)?;
            if let Some(kid) = &key.kid
                && keys.iter().any(|o| o.kid.as_ref() == Some(kid))
            {
                return Err(JwksError::DuplicateKid(kid.clone()));
            }
            keys.push(key);
        }
        if !keys
            .iter()
            .any(|k| !matches!(k.material, Material::Unsupported))
        {
            return Err(JwksError::NoUsableKey);
        }
        Ok(JwtVerifier(Arc::new(Inner { config, keys })))
    }

    pub fn config(&self) -> &JwtConfig {
        &self.0.config
    }

    /// Keys in the set (usable or not).
    pub fn key_count(&self) -> usize {
        self.0.keys.len()
    }

    /// The principal `token` stands for at `now`, or why it is refused.
    pub fn verify(&self, token: &str, now: OffsetDateTime) -> Result<Principal, JwtError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(JwtError::Malformed("longer than 8 KiB"));
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed("not three dot-separated segments"));
        };
        let header = b64(h).ok_or(JwtError::Malformed("header is not base64url"))?;
        let header: Map<String, Value> = serde_json::from_slice(&header)
            .map_err(|_| JwtError::Malformed("header is not a JSON object"))?;
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(JwtError::Malformed("header has no alg"))?;
        let alg = Alg::parse(alg).ok_or_else(|| JwtError::Algorithm(shown(alg)))?;
        if header.contains_key("crit") {
            return Err(JwtError::Malformed(
                "crit header parameters are not supported",
            ));
        }
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(k)) => Some(k.as_str()),
            Some(_) => return Err(JwtError::Malformed("kid is not a string")),
        };
        let key = self.key_for(kid)?;
        fits(key, alg)?;
        let sig = b64(s).ok_or(JwtError::Malformed("signature is not base64url"))?;
        // The signing input is the first two segments exactly as sent.
        let signed = &token.as_bytes()[..h.len() + 1 + p.len()];
        verify_signature(&key.material, alg, signed, &sig)?;

        let claims = b64(p).ok_or(JwtError::Malformed("payload is not base64url"))?;
        let claims: Map<String, Value> = serde_json::from_slice(&claims)
            .map_err(|_| JwtError::Malformed("payload is not a JSON object"))?;
        self.check_registered(&claims, now)?;
        self.principal(&claims)
    }

    fn key_for(&self, kid: Option<&str>) -> Result<&Key, JwtError> {
        let keys = &self.0.keys;
        match kid {
            Some(kid) => keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .ok_or(JwtError::UnknownKey("its kid is not in the key set")),
            // Without a kid the token could only be tried against every key; refuse
            // that unless there is exactly one.
            None if keys.len() == 1 => Ok(&keys[0]),
            None => Err(JwtError::UnknownKey(
                "the token has no kid and the key set has several keys",
            )),
        }
    }

    /// `iss`, `aud`, `exp`, `nbf`.
    fn check_registered(
        &self,
        claims: &Map<String, Value>,
        now: OffsetDateTime,
    ) -> Result<(), JwtError> {
        let cfg = &self.0.config;
        if claims.get("iss").and_then(Value::as_str) != Some(cfg.issuer.as_str()) {
            return Err(JwtError::Issuer);
        }
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => *a == cfg.audience,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(&cfg.audience)),
            _ => false,
        };
        if !aud_ok {
            return Err(JwtError::Audience);
        }
        let now = now.unix_timestamp();
        let leeway = i64::try_from(cfg.leeway_secs).unwrap_or(i64::MAX);
        let exp = numeric_date(claims, "exp")?.ok_or_else(|| JwtError::claim("exp", "required"))?;
        // RFC 7519 §4.1.4: not accepted on or after `exp`.
        if now.saturating_sub(leeway) >= exp {
            return Err(JwtError::Expired);
        }
        if let Some(nbf) = numeric_date(claims, "nbf")?
            && nbf > now.saturating_add(leeway)
        {
            return Err(JwtError::NotYetValid);
        }
        Ok(())
    }

    /// The whistle principal of verified claims.
    fn principal(&self, claims: &Map<String, Value>) -> Result<Principal, JwtError> {
        let role_claim = self.0.config.role_claim.as_str();
        let sub = optional_str(claims, "sub")?.ok_or_else(|| JwtError::claim("sub", "required"))?;
        if sub.is_empty()
            || sub.chars().count() > MAX_SUBJECT_CHARS
            || sub.chars().any(char::is_control)
        {
            return Err(JwtError::claim(
                "sub",
                format!("1 to {MAX_SUBJECT_CHARS} characters, no control characters"),
            ));
        }
        let role = optional_str(claims, role_claim)?
            .ok_or_else(|| JwtError::claim(role_claim, "required"))?;
        let department = optional_code(claims, DEPARTMENT_CLAIM)?;
        let scope = optional_code(claims, SCOPE_CLAIM)?;
        let grids = match claims.get(GRIDS_CLAIM) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(list)) => {
                if list.len() > MAX_GRIDS {
                    return Err(JwtError::claim(
                        GRIDS_CLAIM,
                        format!("more than {MAX_GRIDS} grids"),
                    ));
                }
                list.iter()
                    .map(|g| match g.as_str() {
                        Some(g) if is_valid_code(g) => Ok(g.to_string()),
                        _ => Err(JwtError::claim(
                            GRIDS_CLAIM,
                            "grids are codes (1-64 of A-Z a-z 0-9 - _)",
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
            Some(_) => {
                return Err(JwtError::claim(GRIDS_CLAIM, "must be an array of strings"));
            }
        };
        // Display only: an unusable `name` falls back to `sub` rather than refusing.
        let name = claims.get("name").and_then(Value::as_str).filter(|n| {
            !n.is_empty() && n.chars().count() <= MAX_NAME_CHARS && !n.chars().any(char::is_control)
        });
        let principal = principal_from_parts(
            sub,
            role,
            department,
            name,
            scope,
            &grids,
        )
        .map_err(|e| {
            let claim = match &e {
                PrincipalError::UnknownRole(_) => role_claim,
                PrincipalError::DepartmentRequired => DEPARTMENT_CLAIM,
                PrincipalError::ScopeAndGrids => GRIDS_CLAIM,
                PrincipalError::ScopeNotAllowed if scope.is_some() => SCOPE_CLAIM,
                PrincipalError::ScopeNotAllowed => GRIDS_CLAIM,
            };
            let reason = match e {
                // Bounded: the role value comes from the token.
                PrincipalError::UnknownRole(r) => format!(
                    "unknown role {}: use resident, grid_worker, handler, department, supervisor or admin",
                    shown(&r)
                ),
                other => other.to_string(),
            };
            JwtError::claim(claim, reason)
        })?;
        // The config file tolerates a stray department; a token must be exact, as
        // `IssueToken` is: only department accounts sign for a department.
        if principal.role != Role::Department && principal.department.is_some() {
            return Err(JwtError::claim(
                DEPARTMENT_CLAIM,
                "only department accounts have one",
            ));
        }
        Ok(principal)
    }
}

/// A claim that must be a string when present.
fn optional_str<'a>(
    claims: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, JwtError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(JwtError::claim(name, "must be a string")),
    }
}

/// A claim that must be a district code when present (department, org node).
fn optional_code<'a>(
    claims: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, JwtError> {
    match optional_str(claims, name)? {
        Some(c) if !is_valid_code(c) => Err(JwtError::claim(
            name,
            "must be a code (1-64 of A-Z a-z 0-9 - _)",
        )),
        other => Ok(other),
    }
}

/// A NumericDate claim (seconds since the epoch, possibly fractional), floored.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else {
                match n.as_f64() {
                    // Within ±2^53 the float is exact enough; outside it is nonsense.
                    Some(f) if f.is_finite() && f.abs() < 9.0e15 => Ok(Some(f.floor() as i64)),
                    _ => Err(JwtError::claim(name, "out of range")),
                }
            }
        }
        Some(_) => Err(JwtError::claim(
            name,
            "must be a number (seconds since 1970)",
        )),
    }
}

/// Is `key` one to check an `alg` signature with?
fn fits(key: &Key, alg: Alg) -> Result<(), JwtError> {
    if key.alg.as_deref().is_some_and(|a| a != alg.as_str()) {
        return Err(JwtError::KeyMismatch("the key is for another algorithm"));
    }
    match (&key.material, alg) {
        (Material::Rsa { .. }, Alg::Rs256) | (Material::P256 { .. }, Alg::Es256) => Ok(()),
        (_, Alg::Rs256) => Err(JwtError::KeyMismatch("RS256 needs an RSA key")),
        (_, Alg::Es256) => Err(JwtError::KeyMismatch("ES256 needs an EC P-256 key")),
    }
}

fn verify_signature(
    material: &Material,
    alg: Alg,
    signed: &[u8],
    sig: &[u8],
) -> Result<(), JwtError> {
    let ok = match (material, alg) {
        (Material::Rsa { n, e }, Alg::Rs256) => RsaPublicKeyComponents { n, e }
            .verify(&signature::RSA_PKCS1_2048_8192_SHA256, signed, sig)
            .is_ok(),
        (Material::P256 { point }, Alg::Es256) => {
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(signed, sig)
                .is_ok()
        }
        // `fits` ran first; kept total rather than trusting that.
        _ => return Err(JwtError::KeyMismatch("the key does not fit the algorithm")),
    };
    if ok { Ok(()) } else { Err(JwtError::Signature) }
}

fn strip_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let first = v.iter().position(|b| *b != 0).unwrap_or(v.len());
    v.drain(..first);
    v
}

/// One JWK of the set. RSA and EC P-256 keys must be well formed (a broken key is a
/// configuration error worth stopping for); keys of other types are kept as unusable.
fn parse_key(index: usize, k: &Value) -> Result<Key, JwksError> {
    let kid = match k.get("kid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(JwksError::Key {
                index,
                kid: String::new(),
                reason: "kid is not a string",
            });
        }
    };
    let err = |reason: &'static str| JwksError::Key {
        index,
        kid: kid
            .as_ref()
            .map(|k| format!(" (kid {k:?})"))
            .unwrap_or_default(),
        reason,
    };
    let field = |name: &str| -> Result<Option<&str>, JwksError> {
        match k.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(err("a member is not a string")),
        }
    };
    let bytes = |name: &str| -> Result<Vec<u8>, JwksError> {
        field(name)?
            .and_then(b64)
            .ok_or_else(|| err("a key member is missing or not base64url"))
    };
    let kty = field("kty")?.ok_or_else(|| err("no kty"))?;
    let alg = field("alg")?.map(str::to_string);
    // Encryption keys are not for checking signatures.
    let for_signing = field("use")?.is_none_or(|u| u == "sig");
    let material = match (kty, for_signing) {
        (_, false) => Material::Unsupported,
        ("RSA", true) => {
            let n = strip_zeros(bytes("n")?);
            let e = strip_zeros(bytes("e")?);
            // ring accepts 2048 to 8192 bits for RS256; say so at start, not per request.
            if !(256..=1024).contains(&n.len()) {
                return Err(err("RSA modulus must be 2048 to 8192 bits"));
            }
            if e.is_empty() || e.len() > 4 {
                return Err(err("RSA exponent out of range"));
            }
            Material::Rsa { n, e }
        }
        ("EC", true) if field("crv")? == Some("P-256") => {
            let x = bytes("x")?;
            let y = bytes("y")?;
            if x.len() != 32 || y.len() != 32 {
                return Err(err("P-256 coordinates must be 32 bytes"));
            }
            let mut point = Vec::with_capacity(65);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            Material::P256 { point }
        }
        _ => Material::Unsupported,
    };
    Ok(Key { kid, alg, material })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use ring::rand::SystemRandom;
    use ring::signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
    };
    use serde_json::json;
    use time::macros::datetime;
    use whistle_domain::{DepartmentId, GridId, OrgId, PrincipalId, Scope};

    /// A 2048-bit RSA key (PKCS#8 DER, base64) made with `openssl genpkey` for these
    /// tests only: ring verifies RS256 but cannot generate RSA keys.
    const RSA_PKCS8_B64: &str = concat!(
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC6TsrupptiyOJAsBQzdDZammUM",
        "LOUQtID/QZIAYGwRRz5nvtfbLQEpPOTcuIw49HxnY1vg1QMKvO1fPMVisUqSmaetIKIlUOh5OCnU",
        "CfDoYtmsB0+WG3FMkvEYkRrHYpysewj5WrwydZ3ZWuQJXbT771cZyW3xrBseFezkbLV/xFhsO3uj",
        "cxw6TVW7+ckLmFRBGLorGuH+uOjxMg//t5mb4UTPZnMiue/osyFZh1vLXIH40IQcio/gyJumN/sW",
        "CkGl06Vym5WcNSWG2IivtEDT2itI2DkafXJXVXVH+xcFZV7PHAfdveQTrmL9ssVdPuM2tsCUuzCn",
        "wPiNG11yqZJ3AgMBAAECggEAC/FLDts9MKrh3fWrhdTYOxyUh6BFGroHXtVsL3v+0Wi4tlvEaHdN",
        "EMCnhwKJcokxhEsZM6NT65dKvAUgPgBRYG5bEjz6R9wU2thfzgjJGYxkmaNqVZvyuk7dB48doVRP",
        "6LqGS72mPLHPaYRrA7KvDEs+URfZZVl774TGR6o0RDlMlogGXqWhZ0C317hRCZhIRylHaC7577h/",
        "0TEIW0dwacCUz9dbKiIXiJDAWl3KA/CE9nQnDzkWtLwsOJyDXM8fgj88ebHo0duSThLosz3/MIxn",
        "XoqgOSohoP9OXS9K38+53TcBDyswK9b6rw5AgSoqxSiSP3cew1gxd7W3Dr8JsQKBgQD5d82bJXtl",
        "NytfGi8ucm/xIS55nJ+4wPeuGRYghOuYOXjCpRZbFJmsAspx5026GYUkDijR31jESWyUNcwcRegq",
        "UqSyQSWSkfxtpmlXwLiXLgr4AG5zxZugdkYyQ6HdEWWygwbzPRccfItjpoVfFFWjKVwEMLIMmRej",
        "QwU69Ekd3wKBgQC/L5+btpQzRYwsG9ccZr4eiuNU4bLpdS6FBj+M/C4x8LLRewuZdRhsr7fB1535",
        "GJxijK6NC0cBiDF/QZOK4caLBf2bcmW1yO7pn6TzviEc+Eh4wWAI/EG/pp/IzoAZ5LpI2aYoLZXw",
        "qSpHLyUjiE5405CE72DRCBU0Y4wf5/nuaQKBgQCYx04b3fCcJBVjwN10TJFR00hrIgiPVV5aOPLc",
        "J4tBRrE2Q3RVg2A5f9wLteRcPJTVZ/aH0YjDbVQZ0HiYOBffE43ZvRwNj2pQnMGXBGgH7iK5j0oV",
        "jMeqlcSXs+PFR4pIsQXooVkuEPgspya2+/UWX5YC2u+v13IqgjkJyeGdcQKBgDO3bjVw7iXwajqE",
        "TWwhXsxkRZpwczUzvaG+TvKUROq9caG45ypbwn+kCNEmwlTfk24VICKHKm3/qWQDGSY4bLyuoiuq",
        "hljmQbpwtO46QDrV7sS7in7jveVZ7V8kfQKEHOAYABpeOnEfUZBv8FvsQ03r7OwI1Oe2iAXj58O5",
        "vKIBAoGAbBLJvycPuIW+OYBkjEFf1WDjcYrJANrSAxQQSY1svSvbzEERQ6NM1ipGH+nmdTPSLCfr",
        "MYgF3/0YKcWREhbZA3yZxN6yoKPAqRBs7+xPcWxcSs2wCQabLDGERqS7J4U1weOg/XrdNFgmKYNb",
        "6rb2ZIbXgMMypYctSgmImqPCmaI=",
    );

    const ISS: &str = "https://idp.qinghe.example";
    const AUD: &str = "whistle";
    const NOW: OffsetDateTime = datetime!(2025-06-01 08:00 UTC);

    fn now_secs() -> i64 {
        NOW.unix_timestamp()
    }

    fn enc(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    enum Signer {
        Es(EcdsaKeyPair),
        Rs(RsaKeyPair),
    }

    struct TestKey {
        kid: &'static str,
        signer: Signer,
    }

    impl TestKey {
        fn es256(kid: &'static str) -> TestKey {
            let rng = SystemRandom::new();
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .expect("generate");
            let pair =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                    .expect("key pair");
            TestKey {
                kid,
                signer: Signer::Es(pair),
            }
        }

        fn rs256(kid: &'static str) -> TestKey {
            let der: String = RSA_PKCS8_B64.split_whitespace().collect();
            let der = STANDARD.decode(der).expect("base64 key");
            TestKey {
                kid,
                signer: Signer::Rs(RsaKeyPair::from_pkcs8(&der).expect("rsa key")),
            }
        }

        fn jwk(&self) -> Value {
            match &self.signer {
                Signer::Es(pair) => {
                    let point = pair.public_key().as_ref();
                    json!({"kty": "EC", "crv": "P-256", "kid": self.kid, "use": "sig",
                           "x": enc(&point[1..33]), "y": enc(&point[33..65])})
                }
                Signer::Rs(pair) => {
                    let c: RsaPublicKeyComponents<Vec<u8>> = pair.public().into();
                    json!({"kty": "RSA", "kid": self.kid, "alg": "RS256",
                           "n": enc(&c.n), "e": enc(&c.e)})
                }
            }
        }

        fn alg(&self) -> &'static str {
            match self.signer {
                Signer::Es(_) => "ES256",
                Signer::Rs(_) => "RS256",
            }
        }

        fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
            let input = format!(
                "{}.{}",
                enc(header.to_string().as_bytes()),
                enc(claims.to_string().as_bytes())
            );
            let rng = SystemRandom::new();
            let sig = match &self.signer {
                Signer::Es(pair) => pair
                    .sign(&rng, input.as_bytes())
                    .expect("sign")
                    .as_ref()
                    .to_vec(),
                Signer::Rs(pair) => {
                    let mut sig = vec![0; pair.public().modulus_len()];
                    pair.sign(&RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut sig)
                        .expect("sign");
                    sig
                }
            };
            format!("{input}.{}", enc(&sig))
        }

        fn sign(&self, claims: &Value) -> String {
            self.sign_with_header(
                &json!({"alg": self.alg(), "typ": "JWT", "kid": self.kid}),
                claims,
            )
        }
    }

    fn verifier(keys: &[&TestKey]) -> JwtVerifier {
        let jwks = json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()});
        JwtVerifier::new(JwtConfig::new(ISS, AUD), &jwks.to_string()).expect("verifier")
    }

    fn claims(sub: &str, role: &str) -> Value {
        json!({"iss": ISS, "aud": AUD, "sub": sub, "whistle_role": role,
               "iat": now_secs() - 10, "exp": now_secs() + 300})
    }

    fn with(mut c: Value, key: &str, v: Value) -> Value {
        c[key] = v;
        c
    }

    fn without(mut c: Value, key: &str) -> Value {
        if let Some(m) = c.as_object_mut() {
            m.remove(key);
        }
        c
    }

    #[test]
    fn a_valid_es256_token_maps_to_a_grid_worker_with_grids() {
        let key = TestKey::es256("k1");
        let v = verifier(&[&key]);
        let c = with(
            with(
                claims("gw-lin", "grid_worker"),
                "whistle_grids",
                json!(["g-liuyin"]),
            ),
            "name",
            json!("林"),
        );
        let p = v.verify(&key.sign(&c), NOW).expect("valid");
        assert_eq!(
            p,
            Principal {
                id: PrincipalId::new("gw-lin"),
                role: Role::GridWorker,
                department: None,
                name: "林".into(),
                scope: Scope::Grids(vec![GridId::new("g-liuyin")]),
            }
        );
    }

    #[test]
    fn a_valid_rs256_token_maps_to_a_department_account() {
        let key = TestKey::rs256("r1");
        let v = verifier(&[&key]);
        let c = with(
            with(
                claims("fire-desk", "department"),
                "whistle_department",
                json!("fire"),
            ),
            "aud",
            json!(["other", AUD]),
        );
        let p = v.verify(&key.sign(&c), NOW).expect("valid");
        assert_eq!(p.role, Role::Department);
        assert_eq!(p.department, Some(DepartmentId::new("fire")));
        assert_eq!(p.name, "fire-desk", "no name claim: the subject");
        assert_eq!(p.scope, Scope::District);
    }

    #[test]
    fn scope_claim_and_the_key_picked_by_kid_among_several() {
        let a = TestKey::es256("a");
        let b = TestKey::rs256("b");
        let v = verifier(&[&a, &b]);
        let c = with(
            claims("sup-hongqi", "supervisor"),
            "whistle_scope",
            json!("dongfeng-hongqi"),
        );
        for key in [&a, &b] {
            let p = v.verify(&key.sign(&c), NOW).expect("valid");
            assert_eq!(p.scope, Scope::Org(OrgId::new("dongfeng-hongqi")));
        }
    }

    #[test]
    fn a_bad_signature_or_another_key_is_refused() {
        let key = TestKey::es256("k1");
        let v = verifier(&[&key]);
        let token = key.sign(&claims("gw-lin", "grid_worker"));
        // Change the payload under the same signature.
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        parts[1] = enc(claims("admin", "admin").to_string().as_bytes());
        assert_eq!(v.verify(&parts.join("."), NOW), Err(JwtError::Signature));
        // Same kid, another key.
        let forger = TestKey::es256("k1");
        assert_eq!(
            v.verify(&forger.sign(&claims("gw-lin", "grid_worker")), NOW),
            Err(JwtError::Signature)
        );
        // RS256 likewise.
        let rsa = TestKey::rs256("r1");
        let v = verifier(&[&rsa]);
        let token = rsa.sign(&claims("gw-lin", "grid_worker"));
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        parts[1] = enc(claims("admin", "admin").to_string().as_bytes());
        assert_eq!(v.verify(&parts.join("."), NOW), Err(JwtError::Signature));
    }

    #[test]
    fn alg_none_hmac_and_unknown_algorithms_are_refused() {
        let key = TestKey::es256("k1");
        let v = verifier(&[&key]);
        let body = enc(claims("admin", "admin").to_string().as_bytes());
        let none = format!("{}.{body}.", enc(br#"{"alg":"none","kid":"k1"}"#));
        assert!(is_jws_shaped(&none));
        assert_eq!(
            v.verify(&none, NOW),
            Err(JwtError::Algorithm("none".into()))
        );
        // HS256 keyed with the public key's bytes: the classic confusion attack.
        let hs = format!(
            "{}.{body}.{}",
            enc(br#"{"alg":"HS256","kid":"k1"}"#),
            enc(b"mac")
        );
        assert_eq!(v.verify(&hs, NOW), Err(JwtError::Algorithm("HS256".into())));
        let ps = format!("{}.{body}.{}", enc(br#"{"alg":"PS512"}"#), enc(b"sig"));
        assert_eq!(v.verify(&ps, NOW), Err(JwtError::Algorithm("PS512".into())));
        let crit = key.sign_with_header(
            &json!({"alg": "ES256", "kid": "k1", "crit": ["exp"]}),
            &claims("gw-lin", "grid_worker"),
        );
        assert!(matches!(v.verify(&crit, NOW), Err(JwtError::Malformed(_))));
    }

    #[test]
    fn unknown_kid_missing_kid_among_several_and_mismatched_keys_are_refused() {
        let a = TestKey::es256("a");
        let b = TestKey::rs256("b");
        let v = verifier(&[&a, &b]);
        let c = claims("gw-lin", "grid_worker");
        let unknown = a.sign_with_header(&json!({"alg": "ES256", "kid": "zzz"}), &c);
        assert!(matches!(
            v.verify(&unknown, NOW),
            Err(JwtError::UnknownKey(_))
        ));
        let no_kid = a.sign_with_header(&json!({"alg": "ES256"}), &c);
        assert!(matches!(
            v.verify(&no_kid, NOW),
            Err(JwtError::UnknownKey(_))
        ));
        // A single key needs no kid.
        let single = verifier(&[&a]);
        assert!(single.verify(&no_kid, NOW).is_ok());
        // An ES256 header naming the RSA key, and an RS256 header naming the EC key.
        let es_on_rsa = a.sign_with_header(&json!({"alg": "ES256", "kid": "b"}), &c);
        assert!(matches!(
            v.verify(&es_on_rsa, NOW),
            Err(JwtError::KeyMismatch(_))
        ));
        let rs_on_ec = b.sign_with_header(&json!({"alg": "RS256", "kid": "a"}), &c);
        assert!(matches!(
            v.verify(&rs_on_ec, NOW),
            Err(JwtError::KeyMismatch(_))
        ));
        // A key whose own alg differs.
        let mut jwk = a.jwk();
        jwk["alg"] = json!("ES384");
        let v = JwtVerifier::new(
            JwtConfig::new(ISS, AUD),
            &json!({"keys": [jwk]}).to_string(),
        )
        .expect("verifier");
        assert!(matches!(
            v.verify(&a.sign(&c), NOW),
            Err(JwtError::KeyMismatch(_))
        ));
    }

    #[test]
    fn issuer_audience_and_time_claims_are_checked_with_leeway() {
        let key = TestKey::es256("k1");
        let v = verifier(&[&key]);
        let c = claims("gw-lin", "grid_worker");
        let t = |c: Value| v.verify(&key.sign(&c), NOW).map(|p| p.id);
        assert_eq!(
            t(with(c.clone(), "iss", json!("https://evil.example"))),
            Err(JwtError::Issuer)
        );
        assert_eq!(t(without(c.clone(), "iss")), Err(JwtError::Issuer));
        assert_eq!(
            t(with(c.clone(), "aud", json!("someone-else"))),
            Err(JwtError::Audience)
        );
        assert_eq!(
            t(with(c.clone(), "aud", json!(["a", "b"]))),
            Err(JwtError::Audience)
        );
        assert_eq!(t(without(c.clone(), "aud")), Err(JwtError::Audience));
        assert_eq!(
            t(with(c.clone(), "exp", json!(now_secs() - 61))),
            Err(JwtError::Expired)
        );
        assert!(
            t(with(c.clone(), "exp", json!(now_secs() - 30))).is_ok(),
            "within leeway"
        );
        assert_eq!(
            t(without(c.clone(), "exp")),
            Err(JwtError::Claim {
                name: "exp".into(),
                reason: "required".into()
            })
        );
        assert!(matches!(
            t(with(c.clone(), "exp", json!("tomorrow"))),
            Err(JwtError::Claim { .. })
        ));
        assert_eq!(
            t(with(c.clone(), "nbf", json!(now_secs() + 120))),
            Err(JwtError::NotYetValid)
        );
        assert!(
            t(with(c.clone(), "nbf", json!(now_secs() + 30))).is_ok(),
            "within leeway"
        );
        assert!(
            t(with(c, "exp", json!(now_secs() as f64 + 99.5))).is_ok(),
            "fractional"
        );
    }

    #[test]
    fn whistle_claims_are_required_and_validated() {
        let key = TestKey::es256("k1");
        let v = verifier(&[&key]);
        let claim_of = |c: Value| match v.verify(&key.sign(&c), NOW) {
            Err(JwtError::Claim { name, .. }) => name,
            other => panic!("expected a claim refusal, got {other:?}"),
        };
        let gw = claims("gw-lin", "grid_worker");
        assert_eq!(
            claim_of(without(gw.clone(), "whistle_role")),
            "whistle_role"
        );
        assert_eq!(
            claim_of(with(gw.clone(), "whistle_role", json!("system"))),
            "whistle_role"
        );
        assert_eq!(
            claim_of(with(gw.clone(), "whistle_role", json!("root"))),
            "whistle_role"
        );
        assert_eq!(
            claim_of(with(gw.clone(), "whistle_role", json!(7))),
            "whistle_role"
        );
        assert_eq!(claim_of(without(gw.clone(), "sub")), "sub");
        assert_eq!(claim_of(with(gw.clone(), "sub", json!(""))), "sub");
        assert_eq!(
            claim_of(claims("fire-desk", "department")),
            "whistle_department"
        );
        assert_eq!(
            claim_of(with(gw.clone(), "whistle_department", json!("fire"))),
            "whistle_department"
        );
        assert_eq!(
            claim_of(with(
                with(gw.clone(), "whistle_scope", json!("dongfeng")),
                "whistle_grids",
                json!(["g-liuyin"])
            )),
            "whistle_grids"
        );
        assert_eq!(
            claim_of(with(
                claims("r", "resident"),
                "whistle_scope",
                json!("dongfeng")
            )),
            "whistle_scope"
        );
        assert_eq!(
            claim_of(with(gw.clone(), "whistle_grids", json!("g-liuyin"))),
            "whistle_grids"
        );
        assert_eq!(
            claim_of(with(gw, "whistle_grids", json!(["bad grid"]))),
            "whistle_grids"
        );
        // A custom role claim.
        let mut cfg = JwtConfig::new(ISS, AUD);
        cfg.role_claim = "roles_whistle".into();
        let v2 = JwtVerifier::new(cfg, &json!({"keys": [key.jwk()]}).to_string()).expect("v");
        let c = with(
            without(claims("h", "handler"), "whistle_role"),
            "roles_whistle",
            json!("handler"),
        );
        assert_eq!(
            v2.verify(&key.sign(&c), NOW).map(|p| p.role),
            Ok(Role::Handler)
        );
    }

    #[test]
    fn malformed_tokens_are_refused_without_panicking() {
        let key = TestKey::es256("k1");
        let v = verifier(&[&key]);
        let good = key.sign(&claims("gw-lin", "grid_worker"));
        let parts: Vec<&str> = good.split('.').collect();
        let malformed = [
            "a.b".to_string(),
            "a.b.c.d".to_string(),
            format!("!!!.{}.{}", parts[1], parts[2]),
            format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
            format!("{}.{}.{}", enc(b"not json"), parts[1], parts[2]),
            format!("{}.{}.{}", enc(b"[1,2]"), parts[1], parts[2]),
            format!("{}.{}.{}", enc(br#"{"kid":"k1"}"#), parts[1], parts[2]),
            format!(
                "{}.{}.{}",
                enc(br#"{"alg":"ES256","kid":5}"#),
                parts[1],
                parts[2]
            ),
            format!("{}.{}.%%", parts[0], parts[1]),
            "x".repeat(MAX_TOKEN_LEN + 1),
        ];
        for t in &malformed {
            assert!(
                matches!(v.verify(t, NOW), Err(JwtError::Malformed(_))),
                "{t:.40}"
            );
        }
        // A correctly signed payload that is not JSON.
        let signed_garbage = {
            let input = format!("{}.{}", parts[0], enc(b"not json"));
            let Signer::Es(pair) = &key.signer else {
                unreachable!()
            };
            let sig = pair
                .sign(&SystemRandom::new(), input.as_bytes())
                .expect("sign");
            format!("{input}.{}", enc(sig.as_ref()))
        };
        assert_eq!(
            v.verify(&signed_garbage, NOW),
            Err(JwtError::Malformed("payload is not a JSON object"))
        );
        // Errors never carry the token.
        for t in &malformed[..9] {
            if let Err(e) = v.verify(t, NOW) {
                assert!(!e.to_string().contains(parts[1]), "{e}");
            }
        }
    }

    #[test]
    fn jws_shape_tells_jwts_from_whistle_tokens() {
        assert!(is_jws_shaped("eyJh.eyJz.c2ln"));
        assert!(is_jws_shaped("eyJh.eyJz."));
        assert!(!is_jws_shaped(&format!("wst_{}", "ab".repeat(32))));
        assert!(!is_jws_shaped("a.b"));
        assert!(!is_jws_shaped(".b.c"));
        assert!(!is_jws_shaped("a.b.c.d"));
        assert!(!is_jws_shaped("a+b.c.d"));
    }

    #[test]
    fn key_sets_and_settings_are_checked_at_start() {
        let key = TestKey::es256("k1");
        let ok = json!({"keys": [key.jwk()]}).to_string();
        let new = |cfg: JwtConfig, jwks: &str| JwtVerifier::new(cfg, jwks).map(|_| ());
        assert!(new(JwtConfig::new(ISS, AUD), &ok).is_ok());
        assert!(matches!(
            new(JwtConfig::new("", AUD), &ok),
            Err(JwksError::Config(_))
        ));
        assert!(matches!(
            new(JwtConfig::new(ISS, ""), &ok),
            Err(JwksError::Config(_))
        ));
        let mut slow = JwtConfig::new(ISS, AUD);
        slow.leeway_secs = 3600;
        assert!(matches!(new(slow, &ok), Err(JwksError::Config(_))));
        assert!(matches!(
            new(JwtConfig::new(ISS, AUD), "{"),
            Err(JwksError::Json(_))
        ));
        assert!(matches!(
            new(JwtConfig::new(ISS, AUD), "{}"),
            Err(JwksError::Json(_))
        ));
        let dup = json!({"keys": [key.jwk(), key.jwk()]}).to_string();
        assert_eq!(
            new(JwtConfig::new(ISS, AUD), &dup),
            Err(JwksError::DuplicateKid("k1".into()))
        );
        let only_hmac = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}).to_string();
        assert_eq!(
            new(JwtConfig::new(ISS, AUD), &only_hmac),
            Err(JwksError::NoUsableKey)
        );
        let mut short = key.jwk();
        short["x"] = json!(enc(b"short"));
        let short = json!({"keys": [short]}).to_string();
        assert!(matches!(
            new(JwtConfig::new(ISS, AUD), &short),
            Err(JwksError::Key { .. })
        ));
        // An encryption key beside the signing key is kept but never used.
        let mut enc_key = TestKey::es256("e1").jwk();
        enc_key["use"] = json!("enc");
        let mixed = json!({"keys": [key.jwk(), enc_key]}).to_string();
        let v = JwtVerifier::new(JwtConfig::new(ISS, AUD), &mixed).expect("mixed");
        assert_eq!(v.key_count(), 2);
        let c = claims("gw-lin", "grid_worker");
        let on_enc = key.sign_with_header(&json!({"alg": "ES256", "kid": "e1"}), &c);
        assert!(matches!(
            v.verify(&on_enc, NOW),
            Err(JwtError::KeyMismatch(_))
        ));
        assert!(v.verify(&key.sign(&c), NOW).is_ok());
    }
}
