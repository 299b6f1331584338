//! [`Delivery`]: one event as a department receives it, parsed from a NATS message
//! (headers + JSON payload, see `whistle_bus::message`) or from a gRPC
//! `Assignment` — the same fields either way, so one handler serves both.

use time::OffsetDateTime;
use uuid::Uuid;
use whistle_bus::message as h;
use whistle_domain::EventBody;
use whistle_proto::v1 as pb;

/// A message that is not a well-formed whistle event.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// A required header is missing.
    #[error("missing header {0}")]
    Missing(&'static str),
    /// A header does not parse.
    #[error("header {name}: {value:?} is not valid")]
    Invalid {
        /// Header name.
        name: &'static str,
        /// Its value.
        value: String,
    },
    /// The payload is not JSON.
    #[error("payload is not JSON: {0}")]
    Payload(#[from] serde_json::Error),
}

/// One delivered event.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// Unique event id (`Nats-Msg-Id`): handle each once.
    pub event_id: Uuid,
    /// Global position in whistle's log (the `WatchAssignments` cursor).
    pub position: i64,
    /// The case.
    pub case_id: Uuid,
    /// Case version after this event.
    pub version: u64,
    /// e.g. `CaseAssigned`.
    pub event_type: String,
    /// The NATS subject.
    pub subject: String,
    /// The case's compound.
    pub compound: String,
    /// The department it is routed to.
    pub department: String,
    /// Principal who caused it.
    pub actor: String,
    /// Role they acted in.
    pub actor_role: String,
    /// When it happened.
    pub occurred_at: Option<OffsetDateTime>,
    /// The event body as JSON (`whistle_domain::EventBody`, tagged by `"type"`).
    pub payload: serde_json::Value,
    /// How many times JetStream has delivered this message (1 on first delivery;
    /// always 1 over gRPC).
    pub delivered: i64,
}

fn parse<T: std::str::FromStr>(name: &'static str, value: &str) -> Result<T, DeliveryError> {
    value.parse().map_err(|_| DeliveryError::Invalid {
        name,
        value: value.chars().take(80).collect(),
    })
}

impl Delivery {
    /// Parses a JetStream message.
    pub fn from_message(
        m: &async_nats::Message,
        delivered: i64,
    ) -> Result<Delivery, DeliveryError> {
        let headers = m
            .headers
            .as_ref()
            .ok_or(DeliveryError::Missing(h::MSG_ID))?;
        let get = |name: &'static str| {
            headers
                .get(name)
                .map(|v| v.as_str().to_owned())
                .ok_or(DeliveryError::Missing(name))
        };
        Ok(Delivery {
            event_id: parse(h::MSG_ID, &get(h::MSG_ID)?)?,
            position: parse(h::POSITION, &get(h::POSITION)?)?,
            case_id: parse(h::CASE_ID, &get(h::CASE_ID)?)?,
            version: parse(h::VERSION, &get(h::VERSION)?)?,
            event_type: get(h::EVENT_TYPE)?,
            subject: m.subject.to_string(),
            compound: get(h::COMPOUND).unwrap_or_default(),
            department: get(h::DEPARTMENT).unwrap_or_default(),
            actor: get(h::ACTOR).unwrap_or_default(),
            actor_role: get(h::ACTOR_ROLE).unwrap_or_default(),
            occurred_at: get(h::OCCURRED_AT).ok().and_then(|t| {
                OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339).ok()
            }),
            payload: serde_json::from_slice(&m.payload)?,
            delivered,
        })
    }

    /// Parses a gRPC `Assignment`.
    pub fn from_assignment(a: &pb::Assignment) -> Result<Delivery, DeliveryError> {
        let actor = a.actor.clone().unwrap_or_default();
        Ok(Delivery {
            event_id: parse(h::MSG_ID, &a.event_id)?,
            position: a.position,
            case_id: parse(h::CASE_ID, &a.case_id)?,
            version: a.version,
            event_type: a.event_type.clone(),
            subject: a.subject.clone(),
            compound: a.compound.clone(),
            department: a.department.clone(),
            actor: actor.principal_id,
            actor_role: actor.role,
            occurred_at: a.occurred_at.as_ref().and_then(|t| {
                OffsetDateTime::from_unix_timestamp(t.seconds)
                    .ok()
                    .map(|s| s + time::Duration::nanoseconds(i64::from(t.nanos)))
            }),
            payload: serde_json::from_str(&a.payload_json)?,
            delivered: 1,
        })
    }

    /// The event body as whistle's domain type (Rust departments); other languages
    /// read the JSON (`"type"` names the variant).
    pub fn body(&self) -> Result<EventBody, serde_json::Error> {
        serde_json::from_value(self.payload.clone())
    }
}
