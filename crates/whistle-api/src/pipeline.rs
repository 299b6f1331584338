//! The command pipeline every mutating RPC goes through: idempotency look-up → load the
//! case → version check → `decide` → append (group-committed, durable on return).
//! Functions over the [`AppState`] values, no manager objects.

use crate::convert::decode;
use crate::error::ApiError;
use crate::server::AppState;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use whistle_domain::sla::deadline_ops;
use whistle_domain::{
    Actor, Case, CaseId, CaseState, Command, Ctx, Event, MergeCase, evolve, process, process_merge,
};
use whistle_store::{
    AppendOutcome, AppendRequest, DeadlineChange, EventStore, ExpectedVersion, IdempotencyKey,
    NewEvent, PersonalData, PersonalOp, RecordedEvent, StoreError, StreamId,
};

/// What a successful command returns.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub case: Case,
    pub recorded_at: OffsetDateTime,
    /// The original result of an earlier request with the same idempotency key.
    pub replayed: bool,
    /// This call appended events (false for replays and for commands that decided to
    /// nothing, such as a stale deadline fire).
    pub appended: bool,
}

/// A case folded from its stream, with the stored records (for timelines).
pub struct Loaded {
    pub state: CaseState,
    pub records: Vec<RecordedEvent>,
    pub events: Vec<Event>,
}

pub fn stream_of(id: CaseId) -> StreamId {
    StreamId(id.stream_name())
}

pub async fn load(state: &AppState, id: CaseId) -> Result<Loaded, ApiError> {
    let records = state.store.read_stream(&stream_of(id), 0).await?;
    let events = records.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
    let case = events.iter().fold(None, evolve);
    Ok(Loaded {
        state: case,
        records,
        events,
    })
}

pub async fn load_case(state: &AppState, id: CaseId) -> Result<(Case, Loaded), ApiError> {
    let mut loaded = load(state, id).await?;
    match loaded.state.take() {
        Some(case) => Ok((case, loaded)),
        None => Err(whistle_domain::DomainError::NotFound.into()),
    }
}

/// The case as its view row holds it (written with its events: read-your-writes, one
/// row read instead of folding the stream); folded from the log when the view is missing
/// (a log written before views existed, or a view rebuild in progress).
pub async fn read_case(state: &AppState, id: CaseId) -> Result<Case, ApiError> {
    if let Some(row) = state.store.get_case_view(&id.to_string()).await? {
        match serde_json::from_str::<Case>(&row.doc) {
            Ok(case) => return Ok(case),
            Err(error) => {
                tracing::warn!(case_id = %id, %error, "case view does not decode; folding the log")
            }
        }
    }
    Ok(load_case(state, id).await?.0)
}

/// The time a command is decided at: UTC, whole microseconds — what the store keeps, so
/// the case folded in memory after a command (and its view) equals the case read back
/// from the log, whatever clock is plugged in.
fn command_time(state: &AppState) -> OffsetDateTime {
    let t = state.clock.now().to_offset(time::UtcOffset::UTC);
    t.replace_nanosecond(t.nanosecond() / 1000 * 1000)
        .unwrap_or(t)
}

fn check_role(actor: &Actor, allowed: &[whistle_domain::Role], what: &str) -> Result<(), ApiError> {
    if allowed.contains(&actor.role) {
        Ok(())
    } else {
        tracing::warn!(principal = %actor.principal, role = %actor.role, command = what, "permission denied by role");
        crate::metrics::denied("role");
        Err(ApiError::PermissionDenied(format!(
            "role {} may not {what}",
            actor.role
        )))
    }
}

fn fingerprint(parts: std::fmt::Arguments<'_>) -> String {
    let digest = Sha256::digest(parts.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn to_new_events(events: &[Event]) -> Result<Vec<NewEvent>, ApiError> {
    events
        .iter()
        .map(|e| {
            Ok(NewEvent {
                event_id: uuid::Uuid::now_v7(),
                event_type: e.body.event_type().to_string(),
                payload: serde_json::to_value(&e.body).map_err(|err| {
                    ApiError::Corrupt(format!("encoding {}: {err}", e.body.event_type()))
                })?,
                actor_id: e.actor.principal.0.clone(),
                actor_role: e.actor.role.as_str().to_string(),
                occurred_at: e.occurred_at,
            })
        })
        .collect()
}

/// The deadline rows the events imply, for the store to write in the same transaction.
fn deadline_changes(events: &[Event]) -> Vec<DeadlineChange> {
    deadline_ops(events)
        .into_iter()
        .map(|op| DeadlineChange {
            key: op.key,
            due_at: op.due,
        })
        .collect()
}

/// The personal-data changes a command implies: store the contact given with a report,
/// delete the record an erasure names.
fn personal_ops(given: Option<&PersonalData>, events: &[Event]) -> Vec<PersonalOp> {
    let mut ops: Vec<PersonalOp> = given.cloned().map(PersonalOp::Put).into_iter().collect();
    for e in events {
        if let whistle_domain::EventBody::ContactErased { contact, .. } = &e.body {
            ops.push(PersonalOp::Erase(contact.0));
        }
    }
    ops
}

/// Counts breached clocks (`whistle_breaches_total{milestone, level}`) once they are
/// committed.
fn count_breaches(events: &[Event]) {
    for e in events {
        if let whistle_domain::EventBody::MilestoneBreached { key } = &e.body {
            // Clock keys read `<milestone>@<rung>#<n>` (rung-scoped) or `<milestone>`.
            let (milestone, rest) = key.split_once('@').unwrap_or((key.as_str(), "case"));
            let level = rest.split('#').next().unwrap_or("case");
            metrics::counter!("whistle_breaches_total", "milestone" => milestone.to_string(), "level" => level.to_string()).increment(1);
        }
    }
}

/// The case's view row, written by the store in the append's transaction.
fn view_of(case: &Case) -> Result<whistle_store::CaseViewRow, ApiError> {
    whistle_projections::case_view_row(case).map_err(|e| ApiError::Corrupt(e.to_string()))
}

fn expected(version: u64) -> ExpectedVersion {
    if version == 0 {
        ExpectedVersion::NoStream
    } else {
        ExpectedVersion::Exact(version)
    }
}

/// The case as the command that ended at `version` left it, not as it is now: a retry
/// arriving after later commands must get the first answer (its version, the level it
/// reported).
async fn case_as_of(state: &AppState, id: CaseId, version: u64) -> Result<Case, ApiError> {
    let records = state.store.read_stream(&stream_of(id), 0).await?;
    let mut case = None;
    for r in records.iter().take_while(|r| r.version <= version) {
        case = evolve(case, &decode(r)?);
    }
    case.ok_or_else(|| {
        ApiError::Corrupt(format!(
            "an idempotency record names version {version} of case {id}, which holds no case"
        ))
    })
}

/// A previously committed result for (actor, key), if any. A key reused for a different
/// request is refused rather than silently answered with the wrong case.
async fn replay(
    state: &AppState,
    actor: &Actor,
    key: &str,
    fp: &str,
) -> Result<Option<Outcome>, ApiError> {
    let Some(rec) = state
        .store
        .find_idempotent(actor.principal.as_str(), key)
        .await?
    else {
        return Ok(None);
    };
    if rec.fingerprint != fp {
        return Err(ApiError::bad(
            "idempotency_key",
            "already used for a different request",
        ));
    }
    let id = rec
        .appended
        .stream
        .as_str()
        .strip_prefix("case-")
        .and_then(|u| uuid::Uuid::parse_str(u).ok())
        .map(CaseId)
        .ok_or_else(|| {
            ApiError::Corrupt(format!(
                "idempotency record names stream {}",
                rec.appended.stream
            ))
        })?;
    let case = case_as_of(state, id, rec.appended.last_version).await?;
    Ok(Some(Outcome {
        case,
        recorded_at: rec.appended.recorded_at,
        replayed: true,
        appended: false,
    }))
}

/// Run one command against one case.
#[tracing::instrument(skip_all, fields(command = cmd.name(), case_id = %case_id, principal = %actor.principal, role = %actor.role))]
pub async fn execute(
    state: &AppState,
    actor: &Actor,
    case_id: CaseId,
    expected_version: Option<u64>,
    idempotency_key: Option<String>,
    cmd: Command,
) -> Result<Outcome, ApiError> {
    execute_with(
        state,
        actor,
        case_id,
        expected_version,
        idempotency_key,
        cmd,
        None,
    )
    .await
}

/// [`execute`] for a report that carries the resident's contact details: they are stored
/// apart from the log (the command holds only their id), in the same transaction.
#[tracing::instrument(skip_all, fields(command = cmd.name(), case_id = %case_id, principal = %actor.principal, role = %actor.role))]
pub async fn execute_with(
    state: &AppState,
    actor: &Actor,
    case_id: CaseId,
    expected_version: Option<u64>,
    idempotency_key: Option<String>,
    cmd: Command,
    personal: Option<PersonalData>,
) -> Result<Outcome, ApiError> {
    check_role(actor, cmd.allowed_roles(), cmd.name())?;
    let is_report = matches!(cmd, Command::Report { .. });
    // A report's case id (and contact id) is fresh on every try, so its fingerprint must
    // not include them; the contact details themselves are part of the request.
    let fp = if is_report {
        let contact = personal
            .as_ref()
            .map(|p| format!("{}|{}|{}", p.name, p.phone, p.address));
        fingerprint(format_args!("report|{:?}|{contact:?}", strip_case_id(&cmd)))
    } else {
        fingerprint(format_args!("{case_id}|{expected_version:?}|{cmd:?}"))
    };
    if let Some(key) = &idempotency_key
        && let Some(done) = replay(state, actor, key, &fp).await?
    {
        tracing::info!("idempotent replay");
        return Ok(done);
    }
    // Without an expected version the caller asked for "this command on the case as it
    // is": a concurrent write (often the scheduler recording a clock event) is not the
    // caller's conflict, so decide again on the fresh state. With one, ABORTED.
    let mut tries = 0;
    loop {
        tries += 1;
        let request = Attempt {
            actor,
            case_id,
            expected_version,
            idempotency_key: idempotency_key.clone(),
            cmd: &cmd,
            fingerprint: &fp,
            // A report's stream is new by construction: nothing to load.
            load: !is_report,
            personal: personal.as_ref(),
        };
        match attempt(state, request).await {
            Err(ApiError::Store(StoreError::Conflict { .. }))
                if expected_version.is_none() && tries < 3 =>
            {
                tracing::debug!(tries, "concurrent write; deciding again");
            }
            other => return other,
        }
    }
}

/// The inputs of one round of [`execute`].
struct Attempt<'a> {
    actor: &'a Actor,
    case_id: CaseId,
    expected_version: Option<u64>,
    idempotency_key: Option<String>,
    cmd: &'a Command,
    fingerprint: &'a str,
    /// Whether the case must be loaded (not for a report: its stream is new).
    load: bool,
    /// Contact details to store with a report.
    personal: Option<&'a PersonalData>,
}

/// One load → decide → append round of [`execute`].
async fn attempt(state: &AppState, a: Attempt<'_>) -> Result<Outcome, ApiError> {
    let Attempt {
        actor,
        case_id,
        expected_version,
        idempotency_key,
        cmd,
        fingerprint: fp,
        load: must_load,
        personal,
    } = a;
    let current = if must_load {
        load(state, case_id).await?.state
    } else {
        None
    };
    let version = current.as_ref().map_or(0, |c| c.version);
    if let Some(expected) = expected_version
        && expected != version
    {
        return Err(ApiError::StaleVersion {
            expected,
            actual: version,
        });
    }
    let (district, sla) = (state.district.get(), state.sla.get());
    let ctx = Ctx {
        district: &district,
        actor,
        now: command_time(state),
    };
    let events = process(&current, cmd, &ctx, &sla)?;
    if events.is_empty() {
        // Nothing happens (a stale deadline fire): nothing to append.
        let case = current.ok_or_else(|| ApiError::Corrupt("no case and no events".into()))?;
        return Ok(Outcome {
            recorded_at: ctx.now,
            case,
            replayed: false,
            appended: false,
        });
    }
    let after = events
        .iter()
        .fold(current, evolve)
        .ok_or_else(|| ApiError::Corrupt("command produced no case".into()))?;
    let request = AppendRequest {
        stream: stream_of(case_id),
        expected: expected(version),
        events: to_new_events(&events)?,
        idempotency: idempotency_key.map(|key| IdempotencyKey {
            scope: actor.principal.0.clone(),
            key,
            fingerprint: fp.to_string(),
        }),
        deadlines: deadline_changes(&events),
        view: Some(view_of(&after)?),
        personal: personal_ops(personal, &events),
    };
    let started = std::time::Instant::now();
    let appended = state.store.append(vec![request]).await;
    metrics::histogram!("whistle_append_duration_seconds").record(started.elapsed().as_secs_f64());
    let outcome = appended?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::Corrupt("append returned no outcome".into()))?;
    match outcome {
        AppendOutcome::Appended(a) => {
            count_breaches(&events);
            let case = after;
            tracing::info!(
                version = case.version,
                position = a.last_position,
                "command committed"
            );
            Ok(Outcome {
                case,
                recorded_at: a.recorded_at,
                replayed: false,
                appended: true,
            })
        }
        AppendOutcome::Duplicate(a) => {
            // A concurrent retry with the same key won the race: answer with its result.
            let id = a
                .stream
                .as_str()
                .strip_prefix("case-")
                .and_then(|u| uuid::Uuid::parse_str(u).ok())
                .map(CaseId)
                .unwrap_or(case_id);
            let case = case_as_of(state, id, a.last_version).await?;
            Ok(Outcome {
                case,
                recorded_at: a.recorded_at,
                replayed: true,
                appended: false,
            })
        }
    }
}

fn strip_case_id(cmd: &Command) -> Command {
    match cmd {
        Command::Report {
            category,
            location,
            description,
            channel,
            urgency,
            ..
        } => Command::Report {
            case_id: CaseId(uuid::Uuid::nil()),
            category: category.clone(),
            location: location.clone(),
            description: description.clone(),
            channel: *channel,
            urgency: *urgency,
            contact: None,
        },
        other => other.clone(),
    }
}

/// Merge `dup` into `cmd.into`: both streams are appended in one atomic unit.
#[tracing::instrument(skip_all, fields(command = "MergeCase", case_id = %dup, into = %cmd.into, principal = %actor.principal))]
pub async fn merge(
    state: &AppState,
    actor: &Actor,
    dup: CaseId,
    expected_version: Option<u64>,
    idempotency_key: Option<String>,
    cmd: MergeCase,
) -> Result<Outcome, ApiError> {
    check_role(actor, MergeCase::ALLOWED_ROLES, "MergeCase")?;
    let fp = fingerprint(format_args!("merge|{dup}|{expected_version:?}|{cmd:?}"));
    if let Some(key) = &idempotency_key
        && let Some(done) = replay(state, actor, key, &fp).await?
    {
        return Ok(done);
    }
    let dup_state = load(state, dup).await?.state;
    let target_state = if cmd.into == dup {
        dup_state.clone()
    } else {
        load(state, cmd.into).await?.state
    };
    let dup_version = dup_state.as_ref().map_or(0, |c| c.version);
    if let Some(expected) = expected_version
        && expected != dup_version
    {
        return Err(ApiError::StaleVersion {
            expected,
            actual: dup_version,
        });
    }
    let (district, sla) = (state.district.get(), state.sla.get());
    let ctx = Ctx {
        district: &district,
        actor,
        now: command_time(state),
    };
    let (dup_events, target_events) = process_merge(&dup_state, &target_state, &cmd, &ctx, &sla)?;
    let target_version = target_state.as_ref().map_or(0, |c| c.version);
    let dup_after = dup_events.iter().fold(dup_state, evolve);
    let target_after = target_events.iter().fold(target_state, evolve);
    let unit = vec![
        AppendRequest {
            stream: stream_of(dup),
            expected: expected(dup_version),
            events: to_new_events(&dup_events)?,
            idempotency: idempotency_key.map(|key| IdempotencyKey {
                scope: actor.principal.0.clone(),
                key,
                fingerprint: fp,
            }),
            deadlines: deadline_changes(&dup_events),
            view: dup_after.as_ref().map(view_of).transpose()?,
            personal: Vec::new(),
        },
        AppendRequest {
            stream: stream_of(cmd.into),
            expected: expected(target_version),
            events: to_new_events(&target_events)?,
            idempotency: None,
            deadlines: deadline_changes(&target_events),
            view: target_after.as_ref().map(view_of).transpose()?,
            personal: Vec::new(),
        },
    ];
    let outcomes = state.store.append(unit).await?;
    let first = outcomes
        .first()
        .ok_or_else(|| ApiError::Corrupt("append returned no outcome".into()))?;
    let replayed = first.is_duplicate();
    let recorded_at = first.appended().recorded_at;
    let case = if replayed {
        case_as_of(state, dup, first.appended().last_version).await?
    } else {
        dup_after.ok_or_else(|| ApiError::Corrupt("merge produced no case".into()))?
    };
    Ok(Outcome {
        case,
        recorded_at,
        replayed,
        appended: !replayed,
    })
}
