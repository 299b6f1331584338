//! Bearer tokens issued and revoked at run time (`AdminService.IssueToken`,
//! `RevokeToken`, `ListTokens`). Every change is an event on the admin stream
//! [`TOKENS_STREAM`]; a token is generated here, returned once and never stored, only
//! its SHA-256. Every node folds the stream into the authenticator's [`TokenTable`] at
//! start and as it follows the admin streams; the node that makes a change applies it
//! before answering, so a token it revoked is refused by its very next request.

use crate::auth::{IssuedToken, Principal, TokenTable, hash_token, new_token};
use crate::convert;
use crate::error::ApiError;
use crate::server::AppState;
use prost_types::Timestamp;
use time::OffsetDateTime;
use whistle_domain::admin::{AdminEvent, TOKENS_STREAM};
use whistle_domain::{Actor, DepartmentId, GridId, OrgId, PrincipalId, Role, Scope};
use whistle_proto::v1 as pb;
use whistle_store::{
    AppendOutcome, AppendRequest, EventStore, ExpectedVersion, NewEvent, StreamId,
};

/// Longest lifetime a token may be issued with.
pub const MAX_TTL_SECONDS: u64 = 10 * 366 * 86_400;
/// Longest display name.
pub const MAX_NAME_CHARS: usize = 200;

/// Apply the events of [`TOKENS_STREAM`] this node has not applied yet. Serialised by
/// the applied-version lock, so a slower refresh never puts back an older table.
pub async fn refresh(state: &AppState) -> Result<(), ApiError> {
    let mut applied = state.applied.tokens.lock().await;
    let records = state
        .store
        .read_stream(&StreamId::new(TOKENS_STREAM), *applied)
        .await?;
    let Some(last) = records.last().map(|r| r.version) else {
        return Ok(());
    };
    let mut table = TokenTable::clone(&state.auth.issued());
    for rec in &records {
        let event: AdminEvent = serde_json::from_value(rec.payload.clone())
            .map_err(|e| ApiError::Corrupt(format!("{TOKENS_STREAM} v{}: {e}", rec.version)))?;
        match event {
            AdminEvent::TokenIssued {
                token_id,
                principal,
                role,
                department,
                scope,
                name,
                token_sha256,
                expires_at,
            } => table.issue(IssuedToken {
                token_id,
                principal: Principal {
                    id: principal,
                    role,
                    department,
                    name,
                    scope,
                },
                token_sha256,
                issued_at: rec.occurred_at,
                issued_by: rec.actor_id.clone(),
                expires_at,
                revoked_at: None,
            }),
            AdminEvent::TokenRevoked { token_id } => {
                if !table.revoke(&token_id, rec.occurred_at) {
                    tracing::warn!(%token_id, version = rec.version, "revocation of an unknown token ignored");
                }
            }
            other => {
                return Err(ApiError::Corrupt(format!(
                    "{TOKENS_STREAM} v{}: unexpected {}",
                    rec.version,
                    other.event_type()
                )));
            }
        }
    }
    let tokens = table.len();
    state.auth.set_issued(table);
    tracing::debug!(
        version = last,
        tokens,
        "issued tokens loaded from the admin stream"
    );
    *applied = last;
    Ok(())
}

/// The version of [`TOKENS_STREAM`] this node has applied.
pub async fn applied_version(state: &AppState) -> u64 {
    *state.applied.tokens.lock().await
}

/// Append one event to [`TOKENS_STREAM`]; token events are independent of each other,
/// so any version will do.
async fn append(
    state: &AppState,
    actor: &Actor,
    event: &AdminEvent,
) -> Result<(u64, OffsetDateTime), ApiError> {
    let payload = serde_json::to_value(event)
        .map_err(|e| ApiError::Corrupt(format!("encoding {}: {e}", event.event_type())))?;
    let req = AppendRequest {
        stream: StreamId::new(TOKENS_STREAM),
        expected: ExpectedVersion::Any,
        events: vec![NewEvent {
            event_id: uuid::Uuid::now_v7(),
            event_type: event.event_type().to_string(),
            payload,
            actor_id: actor.principal.0.clone(),
            actor_role: actor.role.as_str().to_string(),
            occurred_at: state.clock.now(),
        }],
        idempotency: None,
        deadlines: Vec::new(),
        view: None,
        personal: Vec::new(),
    };
    match state.store.append(vec![req]).await?.into_iter().next() {
        Some(AppendOutcome::Appended(a) | AppendOutcome::Duplicate(a)) => {
            Ok((a.last_version, a.recorded_at))
        }
        None => Err(ApiError::Corrupt("append returned no outcome".into())),
    }
}

fn time_of(field: &'static str, t: &Timestamp) -> Result<OffsetDateTime, ApiError> {
    let nanos = i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos);
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .map_err(|_| ApiError::bad(field, "out of range"))
}

/// The principal an `IssueTokenRequest` describes, checked against the district and
/// against the principals already known under that id.
fn principal_of(state: &AppState, r: &pb::IssueTokenRequest) -> Result<Principal, ApiError> {
    let id = PrincipalId::new(convert::code("principal_id", &r.principal_id)?);
    if id == Actor::system().principal {
        return Err(ApiError::bad(
            "principal_id",
            format!("{id} is reserved for whistle itself"),
        ));
    }
    let role = Role::parse(&r.role)
        .filter(|r| *r != Role::System)
        .ok_or_else(|| {
            ApiError::bad(
                "role",
                "must be resident, grid_worker, handler, department, supervisor or admin",
            )
        })?;
    let district = state.district.get();
    let department = match (role, r.department.is_empty()) {
        (Role::Department, true) => {
            return Err(ApiError::bad(
                "department",
                "is required for a department account",
            ));
        }
        (Role::Department, false) => {
            let d = DepartmentId::new(convert::code("department", &r.department)?);
            if !district.departments.contains_key(&d) {
                return Err(ApiError::bad(
                    "department",
                    format!("unknown department {d}"),
                ));
            }
            Some(d)
        }
        (_, false) => {
            return Err(ApiError::bad(
                "department",
                "only department accounts have one",
            ));
        }
        (_, true) => None,
    };
    let scope = match (r.scope.is_empty(), r.grids.is_empty()) {
        (true, true) => Scope::District,
        (false, false) => return Err(ApiError::bad("grids", "give scope or grids, not both")),
        (false, true) => {
            let org = OrgId::new(convert::code("scope", &r.scope)?);
            if district.org.get(&org).is_none() {
                return Err(ApiError::bad(
                    "scope",
                    format!("{org} is not an org node of the district"),
                ));
            }
            Scope::Org(org)
        }
        (true, false) => {
            if r.grids.len() > 1000 {
                return Err(ApiError::bad("grids", "more than 1000 grids"));
            }
            let grids = r
                .grids
                .iter()
                .map(|g| {
                    let g = GridId::new(convert::code("grids", g)?);
                    match district.org.grid(&g) {
                        Some(_) => Ok(g),
                        None => Err(ApiError::bad("grids", format!("unknown grid {g}"))),
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            Scope::Grids(grids)
        }
    };
    if scope != Scope::District
        && !matches!(role, Role::GridWorker | Role::Handler | Role::Supervisor)
    {
        let field = if r.grids.is_empty() { "scope" } else { "grids" };
        return Err(ApiError::bad(
            field,
            "only grid workers, handlers and supervisors have a scope",
        ));
    }
    let name = if r.name.is_empty() {
        id.0.clone()
    } else if r.name.chars().count() > MAX_NAME_CHARS || r.name.chars().any(char::is_control) {
        return Err(ApiError::bad(
            "name",
            format!("at most {MAX_NAME_CHARS} characters, no control characters"),
        ));
    } else {
        r.name.clone()
    };
    // One principal id is one person or account: its tokens agree on role and department.
    let now = state.clock.now();
    let issued = state.auth.issued();
    let known = state.auth.configured_principal(&id).or_else(|| {
        issued
            .iter()
            .filter(|t| t.principal.id == id && t.is_active(now))
            .map(|t| &t.principal)
            .next()
    });
    if let Some(p) = known
        && (p.role != role || p.department != department)
    {
        return Err(ApiError::bad(
            "role",
            format!(
                "principal {id} already holds tokens as {}{}; use another principal id",
                p.role,
                p.department
                    .as_ref()
                    .map(|d| format!(" of department {d}"))
                    .unwrap_or_default()
            ),
        ));
    }
    Ok(Principal {
        id,
        role,
        department,
        name,
        scope,
    })
}

fn expiry_of(
    r: &pb::IssueTokenRequest,
    now: OffsetDateTime,
) -> Result<Option<OffsetDateTime>, ApiError> {
    match (&r.expires_at, r.ttl_seconds) {
        (Some(_), Some(_)) => Err(ApiError::bad(
            "ttl_seconds",
            "give expires_at or ttl_seconds, not both",
        )),
        (Some(t), None) => {
            let at = time_of("expires_at", t)?;
            if at <= now {
                return Err(ApiError::bad("expires_at", "is not in the future"));
            }
            if at - now > time::Duration::seconds(MAX_TTL_SECONDS as i64) {
                return Err(ApiError::bad("expires_at", "more than ten years ahead"));
            }
            Ok(Some(at))
        }
        (None, Some(0)) => Err(ApiError::bad("ttl_seconds", "must be at least 1")),
        (None, Some(s)) if s > MAX_TTL_SECONDS => Err(ApiError::bad(
            "ttl_seconds",
            format!("at most {MAX_TTL_SECONDS} (ten years)"),
        )),
        (None, Some(s)) => Ok(Some(now + time::Duration::seconds(s as i64))),
        (None, None) => Ok(None),
    }
}

/// What lists show of a token: never the token or its hash.
pub fn info(t: &IssuedToken, now: OffsetDateTime) -> pb::TokenInfo {
    let (scope, grids) = match &t.principal.scope {
        Scope::District => (String::new(), Vec::new()),
        Scope::Org(o) => (o.0.clone(), Vec::new()),
        Scope::Grids(gs) => (String::new(), gs.iter().map(|g| g.0.clone()).collect()),
    };
    pb::TokenInfo {
        token_id: t.token_id.clone(),
        principal_id: t.principal.id.0.clone(),
        role: t.principal.role.as_str().to_string(),
        department: t
            .principal
            .department
            .as_ref()
            .map(|d| d.0.clone())
            .unwrap_or_default(),
        scope,
        grids,
        name: t.principal.name.clone(),
        issued_at: Some(convert::timestamp(t.issued_at)),
        issued_by: t.issued_by.clone(),
        expires_at: t.expires_at.map(convert::timestamp),
        revoked: t.revoked_at.is_some(),
        revoked_at: t.revoked_at.map(convert::timestamp),
        active: t.is_active(now),
    }
}

/// `IssueToken`: validate, generate, record the hash, apply locally, return the token.
pub async fn issue(
    state: &AppState,
    actor: &Actor,
    r: pb::IssueTokenRequest,
) -> Result<pb::IssueTokenResponse, ApiError> {
    refresh(state).await?;
    let principal = principal_of(state, &r)?;
    let expires_at = expiry_of(&r, state.clock.now())?;
    let token = new_token().ok_or_else(|| {
        tracing::error!("the operating system gave no randomness for a token");
        ApiError::Corrupt("no randomness for a token".into())
    })?;
    let token_id = format!("tok-{}", uuid::Uuid::now_v7().simple());
    let event = AdminEvent::TokenIssued {
        token_id: token_id.clone(),
        principal: principal.id.clone(),
        role: principal.role,
        department: principal.department.clone(),
        scope: principal.scope.clone(),
        name: principal.name.clone(),
        token_sha256: hash_token(&token),
        expires_at,
    };
    let (version, _) = append(state, actor, &event).await?;
    refresh(state).await?;
    let now = state.clock.now();
    let issued = state.auth.issued();
    let info = issued
        .get(&token_id)
        .map(|t| info(t, now))
        .ok_or_else(|| ApiError::Corrupt(format!("token {token_id} missing after its issue")))?;
    tracing::info!(
        admin = %actor.principal,
        %token_id,
        principal = %principal.id,
        role = %principal.role,
        expires_at = ?expires_at,
        version,
        "token issued"
    );
    Ok(pb::IssueTokenResponse {
        token,
        info: Some(info),
        version,
    })
}

/// `RevokeToken`: record the revocation and apply it before answering.
pub async fn revoke(
    state: &AppState,
    actor: &Actor,
    r: pb::RevokeTokenRequest,
) -> Result<pb::AdminAck, ApiError> {
    let token_id = r.token_id.trim();
    if token_id.is_empty() {
        return Err(ApiError::bad("token_id", "is required"));
    }
    refresh(state).await?;
    let Some(existing) = state.auth.issued().get(token_id).cloned() else {
        return Err(ApiError::NotFound(format!(
            "no issued token {:?}",
            token_id.chars().take(80).collect::<String>()
        )));
    };
    if let Some(at) = existing.revoked_at {
        return Ok(pb::AdminAck {
            version: applied_version(state).await,
            recorded_at: Some(convert::timestamp(at)),
            changes: vec![format!("token {token_id} was already revoked")],
        });
    }
    let event = AdminEvent::TokenRevoked {
        token_id: existing.token_id.clone(),
    };
    let (version, recorded_at) = append(state, actor, &event).await?;
    refresh(state).await?;
    tracing::info!(
        admin = %actor.principal,
        token_id = %existing.token_id,
        principal = %existing.principal.id,
        version,
        "token revoked"
    );
    Ok(pb::AdminAck {
        version,
        recorded_at: Some(convert::timestamp(recorded_at)),
        changes: vec![format!(
            "token {} of {} revoked",
            existing.token_id, existing.principal.id
        )],
    })
}

/// `ListTokens`: the issued tokens, oldest first.
pub async fn list(
    state: &AppState,
    r: pb::ListTokensRequest,
) -> Result<pb::ListTokensResponse, ApiError> {
    refresh(state).await?;
    let now = state.clock.now();
    let tokens = state
        .auth
        .issued()
        .iter()
        .filter(|t| r.include_inactive || t.is_active(now))
        .map(|t| info(t, now))
        .collect();
    Ok(pb::ListTokensResponse {
        tokens,
        version: applied_version(state).await,
    })
}
