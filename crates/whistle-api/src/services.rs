//! The tonic service implementations. Each RPC authenticates with its `Request` (the
//! token, and under mutual TLS a department account's client certificate:
//! [`crate::auth::TokenAuthenticator::authenticate_request`]), parses its request into a
//! domain command (errors name the field), and hands it to the [`crate::pipeline`].

use crate::convert::{self, case_id, code, idempotency_key};
use crate::error::ApiError;
use crate::pipeline::{self, Outcome};
use crate::server::AppState;
use tonic::{Request, Response, Status};
use whistle_domain::{Actor, CaseId, CategoryCode, Command, MergeCase, OrgId, Role};
use whistle_proto::v1 as pb;
use whistle_proto::v1::case_handling_service_server::CaseHandlingService;
use whistle_proto::v1::case_query_service_server::CaseQueryService;
use whistle_proto::v1::intake_service_server::IntakeService;

pub struct Intake(pub AppState);
pub struct CaseHandling(pub AppState);
pub struct CaseQuery(pub AppState);

fn ack(o: &Outcome) -> pb::CommandAck {
    pb::CommandAck {
        case_id: o.case.id.to_string(),
        version: o.case.version,
        recorded_at: Some(convert::timestamp(o.recorded_at)),
        replayed: o.replayed,
    }
}

/// The fields every case command carries.
struct Target {
    case_id: CaseId,
    expected_version: Option<u64>,
    idempotency_key: Option<String>,
}

fn target(id: &str, expected_version: Option<u64>, key: &str) -> Result<Target, ApiError> {
    Ok(Target {
        case_id: case_id("case_id", id)?,
        expected_version,
        idempotency_key: idempotency_key(key)?,
    })
}

async fn run(
    state: &AppState,
    actor: &Actor,
    t: Result<Target, ApiError>,
    cmd: impl FnOnce() -> Result<Command, ApiError>,
) -> Result<Response<pb::CommandAck>, Status> {
    let t = t?;
    let cmd = cmd()?;
    let outcome = pipeline::execute(
        state,
        actor,
        t.case_id,
        t.expected_version,
        t.idempotency_key,
        cmd,
    )
    .await?;
    Ok(Response::new(ack(&outcome)))
}

impl Intake {
    fn actor<T>(&self, req: &Request<T>, rpc: &'static str) -> Result<Actor, Status> {
        self.0.auth.authenticate_request(req, rpc)
    }
}

#[tonic::async_trait]
impl IntakeService for Intake {
    async fn report_case(
        &self,
        request: Request<pb::ReportCaseRequest>,
    ) -> Result<Response<pb::ReportCaseResponse>, Status> {
        let actor = self.actor(&request, "ReportCase")?;
        let r = request.into_inner();
        let case_uuid = uuid::Uuid::now_v7();
        let contact = convert::resident_contact(r.contact.as_ref())?;
        let personal = contact.map(|(name, phone, address)| whistle_store::PersonalData {
            contact_id: uuid::Uuid::now_v7(),
            case_id: case_uuid.to_string(),
            name,
            phone,
            address,
        });
        let cmd = Command::Report {
            case_id: CaseId(case_uuid),
            category: CategoryCode(code("category", &r.category)?),
            location: OrgId(code("location", &r.location)?),
            description: r.description,
            channel: convert::channel(r.channel, actor.role)?,
            urgency: convert::urgency(r.urgency)?,
            contact: personal
                .as_ref()
                .map(|p| whistle_domain::ContactId(p.contact_id)),
        };
        let Command::Report { case_id, .. } = &cmd else {
            return Err(Status::internal("unreachable"));
        };
        let case_id = *case_id;
        let key = idempotency_key(&r.idempotency_key)?;
        let o = pipeline::execute_with(&self.0, &actor, case_id, None, key, cmd, personal).await?;
        Ok(Response::new(pb::ReportCaseResponse {
            ack: Some(ack(&o)),
            level: convert::level(o.case.level).into(),
            policy_class: convert::policy_class(o.case.policy_class).into(),
            fast_channel: o.case.fast_channel,
        }))
    }

    async fn add_note(
        &self,
        request: Request<pb::AddNoteRequest>,
    ) -> Result<Response<pb::CommandAck>, Status> {
        let actor = self.actor(&request, "AddNote")?;
        let r = request.into_inner();
        let t = target(&r.case_id, r.expected_version, &r.idempotency_key);
        run(&self.0, &actor, t, || {
            Ok(Command::AddNote {
                text: r.text,
                evidence: convert::evidence(&r.evidence),
            })
        })
        .await
    }

    async fn withdraw_case(
        &self,
        request: Request<pb::WithdrawCaseRequest>,
    ) -> Result<Response<pb::CommandAck>, Status> {
        let actor = self.actor(&request, "WithdrawCase")?;
        let r = request.into_inner();
        let t = target(&r.case_id, r.expected_version, &r.idempotency_key);
        run(&self.0, &actor, t, || {
            Ok(Command::Withdraw { reason: r.reason })
        })
        .await
    }

    async fn confirm_resolution(
        &self,
        request: Request<pb::ConfirmResolutionRequest>,
    ) -> Result<Response<pb::CommandAck>, Status> {
        let actor = self.actor(&request, "ConfirmResolution")?;
        let r = request.into_inner();
        let t = target(&r.case_id, r.expected_version, &r.idempotency_key);
        run(&self.0, &actor, t, || {
            Ok(Command::Confirm {
                satisfaction: u8::try_from(r.satisfaction)
                    .map_err(|_| ApiError::bad("satisfaction", "must be 1 to 5"))?,
                comment: r.comment,
            })
        })
        .await
    }

    async fn reopen_case(
        &self,
        request: Request<pb::ReopenCaseRequest>,
    ) -> Result<Response<pb::CommandAck>, Status> {
        let actor = self.actor(&request, "ReopenCase")?;
        let r = request.into_inner();
        let t = target(&r.case_id, r.expected_version, &r.idempotency_key);
        run(&self.0, &actor, t, || {
            Ok(Command::Reopen { reason: r.reason })
        })
        .await
    }
}

#[tonic::async_trait]
impl CaseHandlingService for CaseHandling {
    async fn assign_case(
        &self,
        request: Request<pb::AssignCaseRequest>,
    ) -> Result<Response<pb::CommandAck>, Status> {
        let actor = self.0.auth.authenticate_request(&request, "AssignCase")?;
        let r = request.into_inner();
        let t = target(&r.case_id, r.expected_version, &r.idempotency_key);
        run(&self.0, &actor, t, || {
            Ok(Command::Assign {
                handler: convert::handler("handler", r.handler.as_ref())?,
            })
        })
        .await
    }

    async fn acknowledge_case(
        &self,
        request: Request<pb::CaseCommandRequest>,
    ) -> Result<Response<pb::CommandAck>, Status> {
        let actor = self
            .0
            .auth
            .authenticate_request(&request, "AcknowledgeCase")?;
        let r = request.into_inner();
        let t = target(&r.case_id, r.expected_version, &r.idempotency_key);
        run(&self.0, &actor, t, || Ok(Command::Acknowledge)).await
    }

    async fn arrive_on_site(
        &self,
        request: Request<pb::CaseCommandRequest>,
    ) -> Result<Response<pb::CommandAck>, Status> {
        let actor = self.0.auth.authenticate_request(&request, "ArriveOnSite")?;
        let r = request.into_inner();
        let t = target(&r.case_id, r.expected_version, &r.idempotency_key);
        run(&self.0, &actor, t, || Ok(Command::ArriveOnSite)).await
    }

    async fn resolve_case(
        &self,
        request: Request<pb::ResolveCaseRequest>,
    ) -> Result<Response<pb::CommandAck>, Status> {
        let actor = self.0.auth.authenticate_request(&request, "ResolveCase")?;
        let r = request.into_inner();
        let t = target(&r.case_id, r.expected_version, &r.idempotency_key);
        run(&self.0, &actor, t, || {
            Ok(Command::Resolve {
                summary: r.summary,
                evidence: convert::evidence(&r.evidence),
            })
        })
        .await
    }

    async fn escalate_case(
        &self,
        request: Request<pb::ReasonRequest>,
    ) -> Result<Response<pb::CommandAck>, Status> {
        let actor = self.0.auth.authenticate_request(&request, "EscalateCase")?;
        let r = request.into_inner();
        let t = target(&r.case_id, r.expected_version, &r.idempotency_key);
        run(&self.0, &actor, t, || {
            Ok(Command::Escalate { reason: r.reason })
        })
        .await
    }

    async fn transfer_case(
        &self,
        request: Request<pb::TransferCaseRequest>,
    ) -> Result<Response<pb::CommandAck>, Status> {
        let actor = self.0.auth.authenticate_request(&request, "TransferCase")?;
        let r = request.into_inner();
        let t = target(&r.case_id, r.expected_version, &r.idempotency_key);
        run(&self.0, &actor, t, || {
            Ok(Command::Transfer {
                to: convert::handler("to", r.to.as_ref())?,
                reason: r.reason,
            })
        })
        .await
    }

    async fn decline_case(
        &self,
        request: Request<pb::ReasonRequest>,
    ) -> Result<Response<pb::CommandAck>, Status> {
        let actor = self.0.auth.authenticate_request(&request, "DeclineCase")?;
        let r = request.into_inner();
        let t = target(&r.case_id, r.expected_version, &r.idempotency_key);
        run(&self.0, &actor, t, || {
            Ok(Command::Decline { reason: r.reason })
        })
        .await
    }

    async fn pause_clock(
        &self,
        request: Request<pb::ReasonRequest>,
    ) -> Result<Response<pb::CommandAck>, Status> {
        let actor = self.0.auth.authenticate_request(&request, "PauseClock")?;
        let r = request.into_inner();
        let t = target(&r.case_id, r.expected_version, &r.idempotency_key);
        run(&self.0, &actor, t, || {
            Ok(Command::Pause { reason: r.reason })
        })
        .await
    }

    async fn resume_clock(
        &self,
        request: Request<pb::CaseCommandRequest>,
    ) -> Result<Response<pb::CommandAck>, Status> {
        let actor = self.0.auth.authenticate_request(&request, "ResumeClock")?;
        let r = request.into_inner();
        let t = target(&r.case_id, r.expected_version, &r.idempotency_key);
        run(&self.0, &actor, t, || Ok(Command::Resume)).await
    }

    async fn reject_case(
        &self,
        request: Request<pb::ReasonRequest>,
    ) -> Result<Response<pb::CommandAck>, Status> {
        let actor = self.0.auth.authenticate_request(&request, "RejectCase")?;
        let r = request.into_inner();
        let t = target(&r.case_id, r.expected_version, &r.idempotency_key);
        run(&self.0, &actor, t, || {
            Ok(Command::Reject { reason: r.reason })
        })
        .await
    }

    async fn erase_contact(
        &self,
        request: Request<pb::ReasonRequest>,
    ) -> Result<Response<pb::CommandAck>, Status> {
        let actor = self.0.auth.authenticate_request(&request, "EraseContact")?;
        let r = request.into_inner();
        let t = target(&r.case_id, r.expected_version, &r.idempotency_key);
        tracing::info!(principal = %actor.principal, case_id = %r.case_id, "erasing a reporter's personal data");
        run(&self.0, &actor, t, || {
            Ok(Command::EraseContact { reason: r.reason })
        })
        .await
    }

    async fn merge_case(
        &self,
        request: Request<pb::MergeCaseRequest>,
    ) -> Result<Response<pb::CommandAck>, Status> {
        let actor = self.0.auth.authenticate_request(&request, "MergeCase")?;
        let r = request.into_inner();
        let t = target(&r.case_id, r.expected_version, &r.idempotency_key)?;
        let into = case_id("into_case_id", &r.into_case_id)?;
        let o = pipeline::merge(
            &self.0,
            &actor,
            t.case_id,
            t.expected_version,
            t.idempotency_key,
            MergeCase {
                into,
                reason: r.reason,
            },
        )
        .await?;
        Ok(Response::new(ack(&o)))
    }
}

/// The case's contact details as `actor` may see them (read from the personal-data table;
/// never from the log, which holds only the reference).
async fn contact(
    state: &AppState,
    actor: &Actor,
    case: &whistle_domain::Case,
) -> Result<Option<pb::ContactView>, ApiError> {
    let personal = match case.contact {
        Some(id) => state.store.get_personal(id.0).await?,
        None => None,
    };
    Ok(convert::contact_view(actor, case, personal.as_ref()))
}

/// Roles that may read cases. Scoping rows to the caller's grid, department or area is
/// layered on top (DESIGN §6).
const READERS: &[Role] = &[
    Role::Resident,
    Role::GridWorker,
    Role::Handler,
    Role::Department,
    Role::Supervisor,
    Role::Admin,
];

/// Outside the caller's view reads as "not found" (see `whistle_domain::scope`).
fn in_view(state: &AppState, actor: &Actor, case: &whistle_domain::Case) -> Result<(), Status> {
    if whistle_domain::scope::visible_to(actor, case, &state.district.get()) {
        return Ok(());
    }
    tracing::warn!(principal = %actor.principal, role = %actor.role, case_id = %case.id, "read outside scope refused");
    crate::metrics::denied("scope");
    Err(ApiError::Domain(whistle_domain::DomainError::NotFound).into())
}

#[tonic::async_trait]
impl CaseQueryService for CaseQuery {
    async fn get_case(
        &self,
        request: Request<pb::GetCaseRequest>,
    ) -> Result<Response<pb::CaseView>, Status> {
        let actor = self.0.auth.authenticate_request(&request, "GetCase")?;
        if !READERS.contains(&actor.role) {
            return Err(
                ApiError::PermissionDenied(format!("role {} may not GetCase", actor.role)).into(),
            );
        }
        let id = case_id("case_id", &request.get_ref().case_id)?;
        let case = pipeline::read_case(&self.0, id).await?;
        in_view(&self.0, &actor, &case)?;
        let mut view = convert::case_view(&case, self.0.clock.now());
        view.contact = contact(&self.0, &actor, &case).await?;
        Ok(Response::new(view))
    }

    async fn get_case_timeline(
        &self,
        request: Request<pb::GetCaseTimelineRequest>,
    ) -> Result<Response<pb::GetCaseTimelineResponse>, Status> {
        let actor = self
            .0
            .auth
            .authenticate_request(&request, "GetCaseTimeline")?;
        if !READERS.contains(&actor.role) {
            return Err(ApiError::PermissionDenied(format!(
                "role {} may not GetCaseTimeline",
                actor.role
            ))
            .into());
        }
        let id = case_id("case_id", &request.get_ref().case_id)?;
        let (case, loaded) = pipeline::load_case(&self.0, id).await?;
        in_view(&self.0, &actor, &case)?;
        let entries = loaded
            .records
            .iter()
            .zip(&loaded.events)
            .map(|(rec, ev)| convert::timeline_entry(rec, ev))
            .collect();
        let mut view = convert::case_view(&case, self.0.clock.now());
        view.contact = contact(&self.0, &actor, &case).await?;
        Ok(Response::new(pb::GetCaseTimelineResponse {
            case: Some(view),
            entries,
        }))
    }
}
