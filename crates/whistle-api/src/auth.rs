//! Bearer-token authentication. Tokens are random 256-bit secrets shown once; only their
//! SHA-256 is kept (a random token needs no slow hash: there is nothing to brute-force).
//! Every refusal is logged with the reason, never with the token.
//!
//! Two sources of tokens: the principals of the config file (or the demo), fixed for the
//! life of the process, and tokens issued at run time through `AdminService`, folded from
//! the `admin-tokens` stream into a [`TokenTable`] that the admin follower replaces
//! ([`TokenAuthenticator::set_issued`]). An issued token is refused once revoked or once
//! the application clock passes its expiry, checked at every request. After
//! authentication every request takes one unit of its principal's rate limit
//! ([`crate::limits`]).
//!
//! Districts with an identity provider may also configure JWT verification
//! ([`crate::jwt`]): a bearer token with the JWS shape (three base64url segments) is then
//! verified as a JWT and its claims become the principal; any other token is looked up
//! by hash as before. A refused JWT is `UNAUTHENTICATED` naming the reason.
//!
//! With mutual TLS for departments on ([`TokenAuthenticator::require_department_certificates`]),
//! a department account must also come with a client certificate naming its department
//! ([`crate::tls`]). The check is here, between resolving the token and taking the rate
//! limit, so it holds on every service a department may call (and a stolen token without
//! its certificate cannot spend the department's rate limit). gRPC services authenticate
//! with [`TokenAuthenticator::authenticate_request`], which sees the connection's
//! certificates; [`TokenAuthenticator::authenticate`] sees only headers (the HTTP port,
//! `AdminService`), so there a department account is refused under mutual TLS.

use crate::clock::{Clock, SystemClock};
use crate::jwt::{JwtError, JwtVerifier, is_jws_shaped};
use crate::limits::{RateLimiter, RateLimits};
use crate::live::Live;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use time::OffsetDateTime;
use tonic::metadata::MetadataMap;
use tonic::transport::CertificateDer;
use tonic::{Request, Status};
use whistle_domain::{Actor, DepartmentId, GridId, OrgId, PrincipalId, Role, Scope};

/// Prefix of every token whistle generates, so secret scanners can recognise one.
pub const TOKEN_PREFIX: &str = "wst_";

/// A principal as configured: who they are and what they may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub id: PrincipalId,
    pub role: Role,
    /// Required for department accounts: the department they sign for.
    pub department: Option<DepartmentId>,
    /// Display name, for logs and the CLI.
    pub name: String,
    /// Where a grid worker, handler or supervisor sees and acts.
    pub scope: Scope,
}

impl Principal {
    pub fn actor(&self) -> Actor {
        Actor {
            principal: self.id.clone(),
            role: self.role,
            department: self.department.clone(),
            scope: self.scope.clone(),
        }
    }
}

/// Why a principal's description (a config file entry, a JWT's claims) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrincipalError {
    #[error("unknown role {0:?}")]
    UnknownRole(String),
    #[error("a department account needs `department`")]
    DepartmentRequired,
    #[error("give `scope` or `grids`, not both")]
    ScopeAndGrids,
    #[error("only grid workers, handlers and supervisors have a scope")]
    ScopeNotAllowed,
}

/// A principal as its describers give it: the config file's `[[principals]]` and a JWT's
/// claims go through this one function, so both accept and refuse the same shapes. The
/// district (does the department, org node or grid exist?) is checked by the caller.
pub fn principal_from_parts(
    id: &str,
    role: &str,
    department: Option<&str>,
    name: Option<&str>,
    scope: Option<&str>,
    grids: &[String],
) -> Result<Principal, PrincipalError> {
    // `system` is whistle itself: no token or claim may present it.
    let role = Role::parse(role)
        .filter(|r| *r != Role::System)
        .ok_or_else(|| PrincipalError::UnknownRole(role.to_string()))?;
    if role == Role::Department && department.is_none() {
        return Err(PrincipalError::DepartmentRequired);
    }
    let scope = match (scope, grids.is_empty()) {
        (Some(_), false) => return Err(PrincipalError::ScopeAndGrids),
        (Some(org), true) => Scope::Org(OrgId::new(org)),
        (None, false) => Scope::Grids(grids.iter().map(GridId::new).collect()),
        (None, true) => Scope::District,
    };
    if scope != Scope::District
        && !matches!(role, Role::GridWorker | Role::Handler | Role::Supervisor)
    {
        return Err(PrincipalError::ScopeNotAllowed);
    }
    Ok(Principal {
        id: PrincipalId::new(id),
        role,
        department: department.map(DepartmentId::new),
        name: name.unwrap_or(id).to_string(),
        scope,
    })
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

/// A fresh bearer token: 256 bits from the operating system's generator, hex, with
/// [`TOKEN_PREFIX`]. `None` when the system has no randomness to give.
pub fn new_token() -> Option<String> {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf).ok()?;
    let mut out = String::with_capacity(TOKEN_PREFIX.len() + 64);
    out.push_str(TOKEN_PREFIX);
    for b in buf {
        out.push_str(&format!("{b:02x}"));
    }
    Some(out)
}

/// A token issued through `AdminService.IssueToken`, as the admin stream left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// Public handle (lists, revocation).
    pub token_id: String,
    pub principal: Principal,
    /// Lower-case hex SHA-256 of the token.
    pub token_sha256: String,
    pub issued_at: OffsetDateTime,
    /// The admin who issued it.
    pub issued_by: String,
    /// Refused from this instant on; `None`: until revoked.
    pub expires_at: Option<OffsetDateTime>,
    /// Set once revoked: refused from then on.
    pub revoked_at: Option<OffsetDateTime>,
}

impl IssuedToken {
    /// Neither revoked nor expired at `now`.
    pub fn is_active(&self, now: OffsetDateTime) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
}

/// The tokens issued at run time: every issued token by id (oldest first: ids sort by
/// time), revoked ones included, and an index by hash.
#[derive(Debug, Clone, Default)]
pub struct TokenTable {
    by_id: BTreeMap<String, IssuedToken>,
    by_hash: HashMap<String, String>,
}

impl TokenTable {
    pub fn issue(&mut self, token: IssuedToken) {
        self.by_hash
            .insert(token.token_sha256.clone(), token.token_id.clone());
        self.by_id.insert(token.token_id.clone(), token);
    }

    /// Mark a token revoked (the first revocation counts). `false` if unknown.
    pub fn revoke(&mut self, token_id: &str, at: OffsetDateTime) -> bool {
        match self.by_id.get_mut(token_id) {
            Some(t) => {
                t.revoked_at.get_or_insert(at);
                true
            }
            None => false,
        }
    }

    pub fn get(&self, token_id: &str) -> Option<&IssuedToken> {
        self.by_id.get(token_id)
    }

    fn by_hash(&self, hash: &str) -> Option<&IssuedToken> {
        self.by_hash.get(hash).and_then(|id| self.by_id.get(id))
    }

    /// Oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &IssuedToken> {
        self.by_id.values()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// Maps token hashes to principals, and limits each principal's request rate.
pub struct TokenAuthenticator {
    /// Principals of the config file or the demo, by token hash; fixed at start.
    configured: HashMap<String, Principal>,
    /// Tokens issued at run time; replaced as the `admin-tokens` stream is followed.
    issued: Live<TokenTable>,
    /// Expiry is judged by the application's clock (virtual in tests).
    clock: Arc<dyn Clock>,
    limiter: RateLimiter,
    /// Verifier of the identity provider's JWTs; `None`: whistle's own tokens only.
    /// Replaceable so that a rotated key set can be put in force without a restart.
    jwt: Live<Option<JwtVerifier>>,
    /// Mutual TLS for departments: a department account must present a client
    /// certificate naming its department. Set when the gRPC server starts.
    department_certificates: AtomicBool,
}

impl std::fmt::Debug for TokenAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAuthenticator")
            .field("configured", &self.configured.len())
            .field("issued", &self.issued.get().len())
            .field("limits", &self.limiter.limits())
            .field("jwt", &self.jwt.get())
            .field(
                "department_certificates",
                &self.department_certificates.load(Ordering::Relaxed),
            )
            .finish()
    }
}

impl Default for TokenAuthenticator {
    fn default() -> Self {
        TokenAuthenticator::new(Vec::new())
    }
}

impl TokenAuthenticator {
    /// `entries` are (lower-case hex SHA-256 of the token, principal). The system clock
    /// and the default rate limits until told otherwise.
    pub fn new(entries: impl IntoIterator<Item = (String, Principal)>) -> Self {
        TokenAuthenticator {
            configured: entries
                .into_iter()
                .map(|(h, p)| (h.to_ascii_lowercase(), p))
                .collect(),
            issued: Live::new(TokenTable::default()),
            clock: Arc::new(SystemClock),
            limiter: RateLimiter::default(),
            jwt: Live::new(None),
            department_certificates: AtomicBool::new(false),
        }
    }

    /// Whether department accounts must present a client certificate naming their
    /// department (the gRPC port has a client CA); off by default.
    pub fn require_department_certificates(&self, on: bool) {
        self.department_certificates.store(on, Ordering::Relaxed);
    }

    /// Also accept JWTs this verifier accepts (`None`: whistle's own tokens only).
    pub fn with_jwt(self, jwt: Option<JwtVerifier>) -> Self {
        self.jwt.set(jwt);
        self
    }

    /// Replace the JWT verifier (a rotated key set), or turn JWTs off with `None`.
    pub fn set_jwt(&self, jwt: Option<JwtVerifier>) {
        self.jwt.set(jwt);
    }

    /// Judge expiry by this clock (the application's).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn with_limits(mut self, limits: RateLimits) -> Self {
        self.limiter = RateLimiter::new(limits);
        self
    }

    /// Configured principals (config file or demo).
    pub fn len(&self) -> usize {
        self.configured.len()
    }

    pub fn is_empty(&self) -> bool {
        self.configured.is_empty()
    }

    /// A configured principal with this id (the first, if several tokens share it).
    pub fn configured_principal(&self, id: &PrincipalId) -> Option<&Principal> {
        self.configured.values().find(|p| &p.id == id)
    }

    /// The issued tokens in force now.
    pub fn issued(&self) -> Arc<TokenTable> {
        self.issued.get()
    }

    /// Replace the issued tokens (the admin follower, or the node that changed them).
    pub fn set_issued(&self, table: TokenTable) {
        self.issued.set(table);
    }

    /// The actor behind a gRPC request's `authorization: Bearer <token>` header, with the
    /// client certificate of its connection checked for department accounts.
    pub fn authenticate_request<T>(
        &self,
        request: &Request<T>,
        rpc: &'static str,
    ) -> Result<Actor, Status> {
        let certs: Option<Arc<Vec<CertificateDer<'static>>>> = request.peer_certs();
        let leaf = certs.as_deref().and_then(|c| c.first());
        self.authenticate_with(request.metadata(), leaf, rpc)
    }

    /// The actor behind the `authorization: Bearer <token>` header, where the connection's
    /// certificate is unknown (the HTTP port, `AdminService`): under mutual TLS for
    /// departments a department account is refused here as if it presented none.
    pub fn authenticate(&self, metadata: &MetadataMap, rpc: &'static str) -> Result<Actor, Status> {
        self.authenticate_with(metadata, None, rpc)
    }

    /// Token (or JWT) → principal, then the department certificate check against the
    /// connection's leaf certificate `leaf` (already verified by rustls against the client
    /// CA), then the rate limit.
    fn authenticate_with(
        &self,
        metadata: &MetadataMap,
        leaf: Option<&CertificateDer<'static>>,
        rpc: &'static str,
    ) -> Result<Actor, Status> {
        let deny = |reason: &'static str| {
            tracing::warn!(rpc, reason, "authentication refused");
            crate::metrics::denied("unauthenticated");
            Status::unauthenticated(reason)
        };
        let deny_jwt = |e: JwtError| {
            tracing::warn!(rpc, reason = e.reason(), error = %e, "authentication refused: JWT");
            crate::metrics::denied("unauthenticated");
            Status::unauthenticated(format!("JWT refused: {e}"))
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
            .filter(|t| !t.is_empty())
            .ok_or_else(|| deny("authorization header must be `Bearer <token>`"))?;
        // whistle's tokens never have the JWS shape, so the shape alone picks the path.
        if let Some(verifier) = self.jwt.get().as_ref()
            && is_jws_shaped(token)
        {
            let principal = verifier.verify(token, self.clock.now()).map_err(deny_jwt)?;
            if let Some(reason) = self.clashes(&principal) {
                tracing::warn!(rpc, principal = %principal.id, reason = "jwt_claim", "authentication refused: JWT subject clashes with a whistle principal");
                return Err(deny_jwt(JwtError::Claim {
                    name: "sub".into(),
                    reason: reason.into(),
                }));
            }
            return self.admit(&principal, leaf, rpc);
        }
        if token.len() > 256 {
            return Err(deny("authorization header must be `Bearer <token>`"));
        }
        let hash = hash_token(token);
        let issued;
        let principal = match self.configured.get(&hash) {
            Some(p) => p,
            None => {
                issued = self.issued.get();
                let t = issued
                    .by_hash(&hash)
                    .ok_or_else(|| deny("unknown or revoked token"))?;
                if t.revoked_at.is_some() {
                    tracing::warn!(rpc, token_id = %t.token_id, principal = %t.principal.id, "revoked token refused");
                    return Err(deny("unknown or revoked token"));
                }
                if t.expires_at.is_some_and(|e| self.clock.now() >= e) {
                    tracing::warn!(rpc, token_id = %t.token_id, principal = %t.principal.id, "expired token refused");
                    return Err(deny("token expired"));
                }
                &t.principal
            }
        };
        self.admit(principal, leaf, rpc)
    }

    /// One principal id is one person or account (as `IssueToken` insists): a JWT
    /// subject that is also a configured principal or holds an active issued token must
    /// agree with it on role and department, else the identity provider could present
    /// a local account's id with other powers. `Some(reason)` when it does not.
    fn clashes(&self, p: &Principal) -> Option<&'static str> {
        let differs =
            |q: &Principal| q.id == p.id && (q.role != p.role || q.department != p.department);
        let now = self.clock.now();
        let issued = self.issued.get();
        (self.configured.values().any(differs)
            || issued
                .iter()
                .any(|t| t.is_active(now) && differs(&t.principal)))
        .then_some("a whistle principal with this id has another role or department")
    }

    /// Check a department account's certificate, then take one unit of the authenticated
    /// principal's rate limit.
    fn admit(
        &self,
        principal: &Principal,
        leaf: Option<&CertificateDer<'static>>,
        rpc: &'static str,
    ) -> Result<Actor, Status> {
        crate::tls::check_client_certificate(
            self.department_certificates.load(Ordering::Relaxed),
            leaf,
            principal,
            rpc,
        )?;
        if !self.limiter.try_acquire(&principal.id) {
            let limits = self.limiter.limits();
            tracing::warn!(
                rpc,
                principal = %principal.id,
                reason = "rate_limited",
                per_second = limits.per_second,
                burst = limits.burst,
                "request refused: rate limit"
            );
            crate::metrics::denied("rate_limited");
            return Err(Status::resource_exhausted(format!(
                "rate limit: at most {} requests per second (bursts of {}) per principal; retry later",
                limits.per_second, limits.burst
            )));
        }
        Ok(principal.actor())
    }
}
