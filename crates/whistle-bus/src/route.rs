//! The routing fold: which department an event belongs to, shared by the
//! relay (NATS subjects) and `WatchAssignments` (gRPC) so both deliver the same
//! events to the same department.
//!
//! The department of an event is the department that holds the case or is
//! dispatched it AT that event:
//!
//! * the holder after the event, when that is a department (`CaseAssigned` /
//!   `CaseTransferred` to a department carry the new one; signing for,
//!   arriving, resolving keep it; a reopened case goes back to whoever resolved
//!   it);
//! * `CaseDeclined` goes to the declining department;
//! * otherwise the holder before the event, when that was a department: an
//!   event that takes the case away from a department (re-assigned to a district
//!   officer, confirmed, withdrawn, rejected, merged) still reaches it;
//! * otherwise no department (`_`): below `ESCALATED`, and after a decline until
//!   the case is dispatched again.
//!
//! The fold keeps, per case, the state as of the last event it routed (folded
//! with `whistle_domain::evolve`, description dropped to save memory). For a
//! case it has not seen since it started (its earlier events lie before the
//! reader's cursor) it reads the case's stream up to the event and folds it.
//! The cache is bounded; a dropped case is simply read again.

use std::collections::HashMap;

use whistle_domain::{Case, CaseState, DepartmentId, Event, EventBody, Handler, PrincipalId, Role};
use whistle_store::{EventStore, RecordedEvent, StoreError, StreamId};

/// Prefix of case streams (`case-<uuid>`); other streams are not routed.
pub const CASE_STREAM_PREFIX: &str = "case-";

/// Cases kept in memory by default.
pub const DEFAULT_CACHE_CASES: usize = 100_000;

/// A stored event that cannot be decoded into a domain event.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The payload is not a known `EventBody`.
    #[error("event {event_id} at position {position}: payload: {source}")]
    Payload {
        /// The event.
        event_id: uuid::Uuid,
        /// Its position.
        position: i64,
        /// Why serde refused it.
        source: serde_json::Error,
    },
    /// The stored actor role is unknown.
    #[error("event {event_id}: unknown actor role {role:?}")]
    Role {
        /// The event.
        event_id: uuid::Uuid,
        /// The stored role.
        role: String,
    },
}

/// Decodes a stored event (payload = JSON of `EventBody`) into a domain event.
/// The one decoder of stored case events; the API's `convert::decode` calls it.
pub fn decode(rec: &RecordedEvent) -> Result<Event, DecodeError> {
    let body: EventBody =
        serde_json::from_value(rec.payload.clone()).map_err(|source| DecodeError::Payload {
            event_id: rec.event_id,
            position: rec.position,
            source,
        })?;
    let role = Role::parse(&rec.actor_role).ok_or_else(|| DecodeError::Role {
        event_id: rec.event_id,
        role: rec.actor_role.clone(),
    })?;
    Ok(Event {
        actor: whistle_domain::Actor {
            principal: PrincipalId(rec.actor_id.clone()),
            role,
            department: None,
            scope: whistle_domain::Scope::District,
        },
        occurred_at: rec.occurred_at,
        body,
    })
}

/// Why an event could not be routed.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// Reading the case's earlier events failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored event does not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The case's stream does not start with a report.
    #[error("stream {0} has no case at version {1}")]
    NoCase(String, u64),
}

/// Where an event goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The case's compound.
    pub compound: String,
    /// The department (see the module docs), `None` for `_`.
    pub department: Option<DepartmentId>,
}

/// A routed event: the store record, the decoded event and its route.
#[derive(Debug, Clone)]
pub struct Routed {
    /// As stored.
    pub record: RecordedEvent,
    /// Decoded.
    pub event: Event,
    /// Compound and department.
    pub route: Route,
}

/// The routing fold over events read in position order.
#[derive(Debug)]
pub struct Router {
    cases: HashMap<StreamId, Case>,
    capacity: usize,
    /// Routing never needs descriptions (they are the bulk of a case's memory); read
    /// models that store the whole case keep them.
    keep_descriptions: bool,
}

impl Default for Router {
    fn default() -> Self {
        Router::new(DEFAULT_CACHE_CASES)
    }
}

fn holder_department(case: &Case) -> Option<&DepartmentId> {
    match case.handler()? {
        Handler::Department(d) => Some(d),
        Handler::Principal(_) => None,
    }
}

impl Router {
    /// A router keeping at most about `capacity` cases in memory.
    pub fn new(capacity: usize) -> Router {
        Router {
            cases: HashMap::new(),
            capacity: capacity.max(1),
            keep_descriptions: false,
        }
    }

    /// A router that keeps whole cases, descriptions included, for folds whose output
    /// must equal the case as the command pipeline folds it (the case view).
    pub fn keeping_descriptions(capacity: usize) -> Router {
        Router {
            keep_descriptions: true,
            ..Router::new(capacity)
        }
    }

    /// The case as of the last event routed for `stream` (if still in memory).
    pub fn case(&self, stream: &StreamId) -> Option<&Case> {
        self.cases.get(stream)
    }

    /// Routes one event. Events must be given in position order (each case's
    /// events in version order). `Ok(None)`: not a case event (not routed).
    pub async fn route<S: EventStore>(
        &mut self,
        store: &S,
        rec: RecordedEvent,
    ) -> Result<Option<Routed>, RouteError> {
        if !rec.stream.as_str().starts_with(CASE_STREAM_PREFIX) {
            return Ok(None);
        }
        let event = decode(&rec)?;
        let before: CaseState = match self.cases.remove(&rec.stream) {
            Some(case) if case.version + 1 == rec.version => Some(case),
            _ if rec.version == 1 => None,
            _ => self.load(store, &rec.stream, rec.version).await?,
        };
        let before_department = before.as_ref().and_then(holder_department).cloned();
        let after = whistle_domain::evolve(before, &event);
        let Some(mut case) = after else {
            return Err(RouteError::NoCase(rec.stream.0.clone(), rec.version));
        };
        let department = match &event.body {
            EventBody::CaseDeclined { department, .. } => Some(department.clone()),
            _ => holder_department(&case).cloned().or(before_department),
        };
        let route = Route {
            compound: case.compound.0.clone(),
            department,
        };
        if !self.keep_descriptions {
            case.description = String::new();
        }
        self.remember(rec.stream.clone(), case);
        Ok(Some(Routed {
            record: rec,
            event,
            route,
        }))
    }

    /// The case as of `version - 1`, read from the store.
    async fn load<S: EventStore>(
        &self,
        store: &S,
        stream: &StreamId,
        version: u64,
    ) -> Result<CaseState, RouteError> {
        let records = store.read_stream(stream, 0).await?;
        let mut state = None;
        for r in records.iter().take_while(|r| r.version < version) {
            state = whistle_domain::evolve(state, &decode(r)?);
        }
        Ok(state)
    }

    fn remember(&mut self, stream: StreamId, case: Case) {
        if self.cases.len() >= self.capacity {
            self.cases.retain(|_, c| !c.is_closed());
            if self.cases.len() >= self.capacity {
                self.cases.clear();
            }
        }
        self.cases.insert(stream, case);
    }

    /// Cases currently held in memory.
    pub fn cached(&self) -> usize {
        self.cases.len()
    }
}
