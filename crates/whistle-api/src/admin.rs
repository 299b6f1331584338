//! `AdminService`: the SLA book, the roster and bearer tokens ([`crate::tokens`]),
//! changed by administrators, every change an event on an admin stream (see
//! `whistle_domain::admin`). Also how a node loads the
//! configuration in force at start and follows changes made on other nodes.

use crate::convert;
use crate::error::ApiError;
use crate::server::AppState;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tonic::{Request, Response, Status};
use whistle_domain::admin::{AdminEvent, ROUTING_STREAM, SLA_STREAM, publish_sla, replace_roster};
use whistle_domain::{
    Actor, Level, OrgId, Party, PrincipalId, Role, RosterEntry, SlaBook, SlaSpec,
};
use whistle_proto::v1 as pb;
use whistle_proto::v1::admin_service_server::AdminService;
use whistle_store::{
    AppendOutcome, AppendRequest, EventStore, ExpectedVersion, NewEvent, StreamId,
};

/// Versions of the admin streams this node has applied.
#[derive(Debug, Default)]
pub struct Applied {
    sla: AtomicU64,
    routing: AtomicU64,
    /// Version of `admin-tokens` applied; the lock serialises token refreshes.
    pub(crate) tokens: tokio::sync::Mutex<u64>,
}

pub struct Admin(pub AppState);

fn admin_only(
    state: &AppState,
    req_meta: &tonic::metadata::MetadataMap,
    rpc: &'static str,
) -> Result<Actor, Status> {
    let actor = state.auth.authenticate(req_meta, rpc)?;
    if actor.role != Role::Admin {
        tracing::warn!(principal = %actor.principal, role = %actor.role, rpc, "permission denied: admin only");
        crate::metrics::denied("role");
        return Err(
            ApiError::PermissionDenied(format!("role {} may not {rpc}", actor.role)).into(),
        );
    }
    Ok(actor)
}

fn level_of(v: i32) -> Result<Level, ApiError> {
    match pb::Level::try_from(v) {
        Ok(pb::Level::Neighbour) => Ok(Level::Neighbour),
        Ok(pb::Level::Unit) => Ok(Level::Unit),
        Ok(pb::Level::Branch) => Ok(Level::Branch),
        Ok(pb::Level::Escalated) => Ok(Level::Escalated),
        _ => Err(ApiError::bad("entries", format!("unknown level {v}"))),
    }
}

fn party_of(s: &str) -> Result<Option<Party>, ApiError> {
    if s.is_empty() {
        return Ok(None);
    }
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map(Some)
        .map_err(|_| ApiError::bad("entries", format!("unknown party {s:?}")))
}

/// Append one admin event at the expected version of its stream.
async fn append(
    state: &AppState,
    actor: &Actor,
    stream: &str,
    expected: Option<u64>,
    event: &AdminEvent,
) -> Result<(u64, time::OffsetDateTime), ApiError> {
    let stream = StreamId::new(stream);
    let current = state.store.stream_version(&stream).await?;
    if let Some(e) = expected
        && e != current
    {
        return Err(ApiError::StaleVersion {
            expected: e,
            actual: current,
        });
    }
    let payload = serde_json::to_value(event)
        .map_err(|e| ApiError::Corrupt(format!("encoding {}: {e}", event.event_type())))?;
    let req = AppendRequest {
        stream,
        expected: if current == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(current)
        },
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
    let out = state.store.append(vec![req]).await?;
    match out.into_iter().next() {
        Some(AppendOutcome::Appended(a) | AppendOutcome::Duplicate(a)) => {
            Ok((a.last_version, a.recorded_at))
        }
        None => Err(ApiError::Corrupt("append returned no outcome".into())),
    }
}

/// The latest event of an admin stream, with the stream's version.
async fn latest(state: &AppState, stream: &str) -> Result<Option<(u64, AdminEvent)>, ApiError> {
    let records = state.store.read_stream(&StreamId::new(stream), 0).await?;
    let Some(last) = records.last() else {
        return Ok(None);
    };
    let event: AdminEvent = serde_json::from_value(last.payload.clone())
        .map_err(|e| ApiError::Corrupt(format!("{stream} v{}: {e}", last.version)))?;
    Ok(Some((last.version, event)))
}

/// Apply whatever the admin streams hold beyond what this node applied: at start, and
/// periodically to follow changes made on other nodes.
pub async fn refresh(state: &AppState) -> Result<(), ApiError> {
    if let Some((version, AdminEvent::SlaPublished { spec, .. })) =
        latest(state, SLA_STREAM).await?
        && version != state.applied.sla.load(Ordering::SeqCst)
    {
        let book =
            SlaBook::build(spec).map_err(|e| ApiError::Corrupt(format!("{SLA_STREAM}: {e}")))?;
        state.sla.set(book);
        state.applied.sla.store(version, Ordering::SeqCst);
        tracing::info!(version, "SLA book loaded from the admin stream");
    }
    if let Some((version, AdminEvent::RosterReplaced { roster })) =
        latest(state, ROUTING_STREAM).await?
        && version != state.applied.routing.load(Ordering::SeqCst)
    {
        let district = replace_roster(&state.district.get(), roster)
            .map_err(|e| ApiError::Corrupt(format!("{ROUTING_STREAM}: {e}")))?;
        state.district.set(district);
        state.applied.routing.store(version, Ordering::SeqCst);
        tracing::info!(version, "roster loaded from the admin stream");
    }
    crate::tokens::refresh(state).await?;
    Ok(())
}

/// Follow admin changes made on other nodes until `shutdown`.
pub async fn follow(
    state: AppState,
    every: std::time::Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(every) => {}
        }
        if let Err(e) = refresh(&state).await {
            tracing::warn!(error = %e, "cannot refresh the admin configuration");
        }
    }
}

impl Applied {
    pub fn new() -> Arc<Applied> {
        Arc::new(Applied::default())
    }
}

#[tonic::async_trait]
impl AdminService for Admin {
    async fn get_sla(
        &self,
        request: Request<pb::GetSlaRequest>,
    ) -> Result<Response<pb::SlaDocument>, Status> {
        admin_only(&self.0, request.metadata(), "GetSla")?;
        let spec = self.0.sla.get().to_spec();
        let toml = toml::to_string(&spec)
            .map_err(|e| Status::internal(format!("encoding the book: {e}")))?;
        Ok(Response::new(pb::SlaDocument {
            toml,
            version: self.0.applied.sla.load(Ordering::SeqCst),
        }))
    }

    async fn publish_sla(
        &self,
        request: Request<pb::PublishSlaRequest>,
    ) -> Result<Response<pb::AdminAck>, Status> {
        let actor = admin_only(&self.0, request.metadata(), "PublishSla")?;
        let r = request.into_inner();
        if r.toml.len() > 256 * 1024 {
            return Err(ApiError::bad("toml", "larger than 256 KiB").into());
        }
        let update: SlaSpec =
            toml::from_str(&r.toml).map_err(|e| ApiError::bad("toml", e.to_string()))?;
        refresh(&self.0).await?;
        let (spec, changes) = publish_sla(&self.0.sla.get(), update)
            .map_err(|e| ApiError::bad("toml", e.to_string()))?;
        if changes.is_empty() {
            return Err(ApiError::bad("toml", "changes nothing").into());
        }
        let book =
            SlaBook::build(spec.clone()).map_err(|e| ApiError::bad("toml", e.to_string()))?;
        let event = AdminEvent::SlaPublished {
            spec,
            changes: changes.clone(),
        };
        let (version, recorded_at) =
            append(&self.0, &actor, SLA_STREAM, r.expected_version, &event).await?;
        self.0.sla.set(book);
        self.0.applied.sla.store(version, Ordering::SeqCst);
        tracing::info!(principal = %actor.principal, version, ?changes, "SLA book published");
        Ok(Response::new(pb::AdminAck {
            version,
            recorded_at: Some(convert::timestamp(recorded_at)),
            changes,
        }))
    }

    async fn get_routing(
        &self,
        request: Request<pb::GetRoutingRequest>,
    ) -> Result<Response<pb::RoutingDocument>, Status> {
        admin_only(&self.0, request.metadata(), "GetRouting")?;
        let d = self.0.district.get();
        Ok(Response::new(pb::RoutingDocument {
            entries: d
                .roster
                .iter()
                .map(|r| pb::RosterEntry {
                    level: convert::level(r.level).into(),
                    org: r.org.0.clone(),
                    principal_id: r.principal.0.clone(),
                    party: r.party.map(|p| p.as_str().to_string()).unwrap_or_default(),
                })
                .collect(),
            takeover_principal_id: d
                .takeover_principal
                .as_ref()
                .map(|p| p.0.clone())
                .unwrap_or_default(),
            version: self.0.applied.routing.load(Ordering::SeqCst),
        }))
    }

    async fn set_roster(
        &self,
        request: Request<pb::SetRosterRequest>,
    ) -> Result<Response<pb::AdminAck>, Status> {
        let actor = admin_only(&self.0, request.metadata(), "SetRoster")?;
        let r = request.into_inner();
        if r.entries.len() > 100_000 {
            return Err(ApiError::bad("entries", "more than 100000 entries").into());
        }
        let roster = r
            .entries
            .iter()
            .map(|e| {
                Ok(RosterEntry {
                    level: level_of(e.level)?,
                    org: OrgId(convert::code("entries", &e.org)?),
                    principal: PrincipalId(convert::code("entries", &e.principal_id)?),
                    party: party_of(&e.party)?,
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        refresh(&self.0).await?;
        let district = replace_roster(&self.0.district.get(), roster.clone())
            .map_err(|e| ApiError::bad("entries", e.to_string()))?;
        let event = AdminEvent::RosterReplaced { roster };
        let (version, recorded_at) =
            append(&self.0, &actor, ROUTING_STREAM, r.expected_version, &event).await?;
        self.0.district.set(district);
        self.0.applied.routing.store(version, Ordering::SeqCst);
        tracing::info!(principal = %actor.principal, version, entries = r.entries.len(), "roster replaced");
        Ok(Response::new(pb::AdminAck {
            version,
            recorded_at: Some(convert::timestamp(recorded_at)),
            changes: vec![format!("roster replaced: {} entries", r.entries.len())],
        }))
    }

    async fn issue_token(
        &self,
        request: Request<pb::IssueTokenRequest>,
    ) -> Result<Response<pb::IssueTokenResponse>, Status> {
        let actor = admin_only(&self.0, request.metadata(), "IssueToken")?;
        let r = crate::tokens::issue(&self.0, &actor, request.into_inner()).await?;
        Ok(Response::new(r))
    }

    async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::AdminAck>, Status> {
        let actor = admin_only(&self.0, request.metadata(), "RevokeToken")?;
        let r = crate::tokens::revoke(&self.0, &actor, request.into_inner()).await?;
        Ok(Response::new(r))
    }

    async fn list_tokens(
        &self,
        request: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        admin_only(&self.0, request.metadata(), "ListTokens")?;
        let r = crate::tokens::list(&self.0, request.into_inner()).await?;
        Ok(Response::new(r))
    }
}
