//! `DepartmentService`: department integrations without NATS.
//!
//! `WatchAssignments` streams the events routed to the caller's department from a
//! cursor (the global position): catch-up with `read_all`, then live through the
//! store's commit notification — the in-process bus, so it works the same with or
//! without NATS. Routing is `whistle_bus::Router`, the fold the relay uses, so the
//! stream carries exactly what the department's NATS subjects carry.
//!
//! The handling commands are those of `CaseHandlingService`, scoped: only
//! department principals may call them, and only on a case their department holds
//! (or, for `AcknowledgeCase`, an unassigned case at `ESCALATED` it may claim).
//! Any other case is `NOT_FOUND` to them, so a department cannot probe others' work.

use std::pin::Pin;

use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use whistle_bus::advisories::{DeliveryFailure, Recorded};
use whistle_bus::{Follower, Routed, Router, subject};
use whistle_domain::{
    Actor, CaseId, Command, DepartmentId, Handler, Level, Role, Stage, Status as CaseStatus,
};
use whistle_proto::v1 as pb;
use whistle_proto::v1::department_service_server::DepartmentService;
use whistle_store::{EventStore, StoreError};

use crate::convert::{self, case_id, idempotency_key};
use crate::error::ApiError;
use crate::pipeline;
use crate::server::AppState;

/// Events read from the log per step of a `WatchAssignments` stream.
const WATCH_BATCH: u32 = 512;

/// Assignments buffered per stream before the reader waits for the client.
const WATCH_BUFFER: usize = 256;

/// The department service.
pub struct Departments {
    state: AppState,
    /// Turns true when the server starts shutting down: open streams end.
    closing: watch::Receiver<bool>,
}

impl Departments {
    /// The service over `state`; its streams end when `closing` turns true.
    pub fn new(state: AppState, closing: watch::Receiver<bool>) -> Departments {
        Departments { state, closing }
    }
}

/// The caller's department, or `PERMISSION_DENIED` for anyone else.
fn department_of(actor: &Actor, rpc: &str) -> Result<DepartmentId, Status> {
    match (&actor.role, &actor.department) {
        (Role::Department, Some(d)) => Ok(d.clone()),
        _ => {
            tracing::warn!(principal = %actor.principal, role = %actor.role, rpc, "permission denied: not a department");
            Err(
                ApiError::PermissionDenied(format!("only department accounts may call {rpc}"))
                    .into(),
            )
        }
    }
}

/// The assignment message of a routed event.
pub fn assignment(district: &str, r: &Routed) -> pb::Assignment {
    let rec = &r.record;
    let department = r.route.department.as_ref().map(|d| d.as_str());
    pb::Assignment {
        position: rec.position,
        event_id: rec.event_id.to_string(),
        case_id: rec
            .stream
            .as_str()
            .strip_prefix(whistle_bus::route::CASE_STREAM_PREFIX)
            .unwrap_or(rec.stream.as_str())
            .to_string(),
        version: rec.version,
        event_type: rec.event_type.clone(),
        subject: subject::event_subject(district, &r.route.compound, department, &rec.event_type),
        district: district.to_string(),
        compound: r.route.compound.clone(),
        department: department.unwrap_or(subject::NO_DEPARTMENT).to_string(),
        actor: Some(pb::Actor {
            principal_id: rec.actor_id.clone(),
            role: rec.actor_role.clone(),
        }),
        occurred_at: Some(convert::timestamp(rec.occurred_at)),
        recorded_at: Some(convert::timestamp(rec.recorded_at)),
        payload_json: rec.payload.to_string(),
    }
}

/// Completes once the server starts shutting down.
/// Resolves once the server starts shutting down (shared by the server streams).
pub(crate) async fn closed(closing: &mut watch::Receiver<bool>) {
    loop {
        let now = *closing.borrow_and_update();
        if now {
            return;
        }
        if closing.changed().await.is_err() {
            return;
        }
    }
}

/// Feeds one `WatchAssignments` stream until the client goes away or the store fails.
async fn watch(
    state: AppState,
    department: DepartmentId,
    after: i64,
    tx: mpsc::Sender<Result<pb::Assignment, Status>>,
    mut closing: watch::Receiver<bool>,
) {
    let mut follower = Follower::new(state.store.clone(), after, WATCH_BATCH);
    let mut router = Router::default();
    loop {
        let batch = tokio::select! {
            b = follower.next_batch() => b,
            _ = tx.closed() => return,
            _ = closed(&mut closing) => {
                let _ = tx
                    .send(Err(Status::unavailable(
                        "server shutting down; resume from your last position",
                    )))
                    .await;
                return;
            }
        };
        let batch = match batch {
            Ok(b) => b,
            Err(error) => {
                let _ = tx.send(Err(ApiError::Store(error).into())).await;
                return;
            }
        };
        for rec in batch {
            let routed = match router.route(&*state.store, rec).await {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(error) => {
                    tracing::error!(%error, "WatchAssignments cannot route an event");
                    let _ = tx
                        .send(Err(Status::internal("internal error routing events")))
                        .await;
                    return;
                }
            };
            if routed.route.department.as_ref() != Some(&department) {
                continue;
            }
            if tx
                .send(Ok(assignment(&state.district.get().id, &routed)))
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

fn ack(o: &pipeline::Outcome) -> pb::CommandAck {
    pb::CommandAck {
        case_id: o.case.id.to_string(),
        version: o.case.version,
        recorded_at: Some(convert::timestamp(o.recorded_at)),
        replayed: o.replayed,
    }
}

impl Departments {
    /// Authenticates, scopes and runs one command.
    async fn run<T>(
        &self,
        request: &Request<T>,
        rpc: &'static str,
        id: &str,
        expected_version: Option<u64>,
        key: &str,
        cmd: impl FnOnce() -> Result<Command, ApiError>,
    ) -> Result<Response<pb::CommandAck>, Status> {
        let actor = self.state.auth.authenticate_request(request, rpc)?;
        let department = department_of(&actor, rpc)?;
        let id: CaseId = case_id("case_id", id)?;
        let key = idempotency_key(key)?;
        let cmd = cmd()?;
        self.scope(&actor, &department, id, &cmd, key.as_deref())
            .await?;
        let outcome =
            pipeline::execute(&self.state, &actor, id, expected_version, key, cmd).await?;
        Ok(Response::new(ack(&outcome)))
    }

    /// `NOT_FOUND` unless the case is the department's to act on. A retried command
    /// (same idempotency key) is let through so that it replays its original result.
    async fn scope(
        &self,
        actor: &Actor,
        department: &DepartmentId,
        id: CaseId,
        cmd: &Command,
        key: Option<&str>,
    ) -> Result<(), ApiError> {
        if let Some(key) = key
            && self
                .state
                .store
                .find_idempotent(actor.principal.as_str(), key)
                .await?
                .is_some()
        {
            // A committed key: the pipeline replays its original result (or refuses
            // a different request under the same key).
            return Ok(());
        }
        let (case, _) = pipeline::load_case(&self.state, id).await?;
        let mine = Handler::Department(department.clone());
        let holds = case.handler() == Some(&mine);
        let may_claim = matches!(cmd, Command::Acknowledge)
            && case.level == Level::Escalated
            && matches!(case.status, CaseStatus::Open(Stage::Unassigned));
        if holds || may_claim {
            Ok(())
        } else {
            Err(whistle_domain::DomainError::NotFound.into())
        }
    }
}

type AssignmentStream = Pin<Box<dyn Stream<Item = Result<pb::Assignment, Status>> + Send>>;

#[tonic::async_trait]
impl DepartmentService for Departments {
    type WatchAssignmentsStream = AssignmentStream;

    async fn watch_assignments(
        &self,
        request: Request<pb::WatchAssignmentsRequest>,
    ) -> Result<Response<Self::WatchAssignmentsStream>, Status> {
        let actor = self
            .state
            .auth
            .authenticate_request(&request, "WatchAssignments")?;
        let department = department_of(&actor, "WatchAssignments")?;
        let after = request.get_ref().after_position;
        if after < 0 {
            return Err(ApiError::bad("after_position", "must not be negative").into());
        }
        tracing::info!(principal = %actor.principal, department = %department, after, "WatchAssignments opened");
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        tokio::spawn(watch(
            self.state.clone(),
            department,
            after,
            tx,
            self.closing.clone(),
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn acknowledge_case(
        &self,
        request: Request<pb::CaseCommandRequest>,
    ) -> Result<Response<pb::CommandAck>, Status> {
        let r = request.get_ref();
        self.run(
            &request,
            "AcknowledgeCase",
            &r.case_id,
            r.expected_version,
            &r.idempotency_key,
            || Ok(Command::Acknowledge),
        )
        .await
    }

    async fn arrive_on_site(
        &self,
        request: Request<pb::CaseCommandRequest>,
    ) -> Result<Response<pb::CommandAck>, Status> {
        let r = request.get_ref();
        self.run(
            &request,
            "ArriveOnSite",
            &r.case_id,
            r.expected_version,
            &r.idempotency_key,
            || Ok(Command::ArriveOnSite),
        )
        .await
    }

    async fn resolve_case(
        &self,
        request: Request<pb::ResolveCaseRequest>,
    ) -> Result<Response<pb::CommandAck>, Status> {
        let r = request.get_ref();
        self.run(
            &request,
            "ResolveCase",
            &r.case_id,
            r.expected_version,
            &r.idempotency_key,
            || {
                Ok(Command::Resolve {
                    summary: r.summary.clone(),
                    evidence: convert::evidence(&r.evidence),
                })
            },
        )
        .await
    }

    async fn decline_case(
        &self,
        request: Request<pb::ReasonRequest>,
    ) -> Result<Response<pb::CommandAck>, Status> {
        let r = request.get_ref();
        self.run(
            &request,
            "DeclineCase",
            &r.case_id,
            r.expected_version,
            &r.idempotency_key,
            || {
                Ok(Command::Decline {
                    reason: r.reason.clone(),
                })
            },
        )
        .await
    }

    async fn transfer_case(
        &self,
        request: Request<pb::TransferCaseRequest>,
    ) -> Result<Response<pb::CommandAck>, Status> {
        let r = request.get_ref();
        self.run(
            &request,
            "TransferCase",
            &r.case_id,
            r.expected_version,
            &r.idempotency_key,
            || {
                Ok(Command::Transfer {
                    to: convert::handler("to", r.to.as_ref())?,
                    reason: r.reason.clone(),
                })
            },
        )
        .await
    }

    async fn pause_clock(
        &self,
        request: Request<pb::ReasonRequest>,
    ) -> Result<Response<pb::CommandAck>, Status> {
        let r = request.get_ref();
        self.run(
            &request,
            "PauseClock",
            &r.case_id,
            r.expected_version,
            &r.idempotency_key,
            || {
                Ok(Command::Pause {
                    reason: r.reason.clone(),
                })
            },
        )
        .await
    }

    async fn resume_clock(
        &self,
        request: Request<pb::CaseCommandRequest>,
    ) -> Result<Response<pb::CommandAck>, Status> {
        let r = request.get_ref();
        self.run(
            &request,
            "ResumeClock",
            &r.case_id,
            r.expected_version,
            &r.idempotency_key,
            || Ok(Command::Resume),
        )
        .await
    }

    async fn add_note(
        &self,
        request: Request<pb::AddNoteRequest>,
    ) -> Result<Response<pb::CommandAck>, Status> {
        let r = request.get_ref();
        self.run(
            &request,
            "AddNote",
            &r.case_id,
            r.expected_version,
            &r.idempotency_key,
            || {
                Ok(Command::AddNote {
                    text: r.text.clone(),
                    evidence: convert::evidence(&r.evidence),
                })
            },
        )
        .await
    }
}

/// Records a department's delivery failure (JetStream gave up on a message) as a
/// `DeliveryFailed` event on the case, as the system, idempotently per event and
/// department. The SLA rules decide what follows (a department that never signed for
/// the case loses it to the district).
pub async fn record_delivery_failure(state: AppState, f: DeliveryFailure) -> Recorded {
    if f.event_type == "DeliveryFailed" {
        // The notice of a failure is itself routed to the failing department; recording
        // its failure would feed an endless loop of notices while the department is down.
        tracing::info!(case_id = %f.case_id, department = %f.department, "a delivery-failure notice was not delivered either; not recording it");
        return Recorded::Skip;
    }
    if !whistle_domain::ids::is_valid_code(&f.department) {
        tracing::error!(department = %f.department, "delivery failure names no valid department");
        return Recorded::Skip;
    }
    let cmd = Command::RecordDeliveryFailure {
        department: DepartmentId::new(f.department.clone()),
        event_id: f.event_id.clone(),
        deliveries: u32::try_from(f.deliveries).unwrap_or(u32::MAX),
    };
    let key = format!("dlv-{}-{}", f.event_id, f.department);
    match pipeline::execute(
        &state,
        &Actor::system(),
        CaseId(f.case_id),
        None,
        Some(key),
        cmd,
    )
    .await
    {
        Ok(outcome) => {
            tracing::info!(case_id = %f.case_id, department = %f.department, replayed = outcome.replayed, "delivery failure recorded");
            Recorded::Done
        }
        Err(ApiError::Store(e))
            if e.is_unavailable() || e.is_conflict() || matches!(e, StoreError::Closed) =>
        {
            Recorded::Retry
        }
        Err(ApiError::StaleVersion { .. }) => Recorded::Retry,
        Err(error) => {
            tracing::warn!(%error, case_id = %f.case_id, department = %f.department, "delivery failure not recorded");
            Recorded::Skip
        }
    }
}
