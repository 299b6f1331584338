//! Input validation and the in-memory decision of a batch.
//!
//! The writer never lets the database reject a unit: under the batch lock it
//! loads, with a few indexed queries, the current version of every stream in
//! the batch, the already stored event ids and idempotency keys of the batch
//! (a [`Snapshot`]), and then [`plan`] walks the units in order. It keeps the
//! versions, event ids and keys of the units accepted so far, so two units on
//! the same stream in one batch are checked against each other exactly as if
//! they had been committed one after the other. A unit is all-or-nothing: its
//! requests are decided against a private overlay that is merged only when the
//! whole unit is accepted. Rejected units (conflict, idempotency mismatch) and
//! duplicates write nothing and do not affect the others; the accepted rows go
//! to the database in one insert.
//!
//! Positions are only known after the insert, so results are kept as ranges of
//! event ids and [`Plan::resolve`]d afterwards.

use std::collections::{HashMap, HashSet};

use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::StoreError;
use crate::types::{
    AppendOutcome, AppendRequest, Appended, IdempotencyKey, IdempotentRecord, NewEvent, StreamId,
};

/// Longest stream id, idempotency scope and key, in bytes. They are indexed;
/// PostgreSQL rejects btree entries above ~2.7 kB, which would fail a whole batch.
pub(crate) const MAX_KEY_BYTES: usize = 512;
/// Deepest nesting accepted in a payload (the same limit serde_json parses with).
pub(crate) const MAX_PAYLOAD_DEPTH: usize = 128;

/// Result of one unit, as handed back to its caller.
pub(crate) type UnitReply = Result<Vec<AppendOutcome>, StoreError>;

/// Checks a unit before it is queued, so that nothing in it can make the batch
/// insert fail for everyone: empty parts, duplicate event ids, NUL characters
/// (PostgreSQL text and jsonb refuse them), oversized keys, absurd nesting.
pub(crate) fn validate_unit(unit: &[AppendRequest]) -> Result<(), StoreError> {
    if unit.is_empty() {
        return Err(StoreError::Invalid(
            "a unit needs at least one request".into(),
        ));
    }
    let mut ids = HashSet::new();
    for req in unit {
        check_key_text("stream id", req.stream.as_str())?;
        if req.events.is_empty() {
            return Err(StoreError::Invalid(format!(
                "no events to append to stream {}",
                req.stream
            )));
        }
        for event in &req.events {
            if !ids.insert(event.event_id) {
                return Err(StoreError::Invalid(format!(
                    "event id {} appears twice in one unit",
                    event.event_id
                )));
            }
            if event.event_type.is_empty() {
                return Err(StoreError::Invalid(format!(
                    "event {} has an empty event type",
                    event.event_id
                )));
            }
            check_text("event type", &event.event_type)?;
            check_text("actor id", &event.actor_id)?;
            check_text("actor role", &event.actor_role)?;
            check_payload(&event.payload, 0).map_err(|why| {
                StoreError::Invalid(format!("payload of event {}: {why}", event.event_id))
            })?;
        }
        if let Some(key) = &req.idempotency {
            check_key_text("idempotency scope", &key.scope)?;
            check_key_text("idempotency key", &key.key)?;
            check_text("idempotency fingerprint", &key.fingerprint)?;
        }
    }
    Ok(())
}

fn check_text(what: &str, text: &str) -> Result<(), StoreError> {
    if text.contains('\0') {
        return Err(StoreError::Invalid(format!(
            "{what} contains a NUL character"
        )));
    }
    Ok(())
}

fn check_key_text(what: &str, text: &str) -> Result<(), StoreError> {
    if text.is_empty() {
        return Err(StoreError::Invalid(format!("{what} is empty")));
    }
    if text.len() > MAX_KEY_BYTES {
        return Err(StoreError::Invalid(format!(
            "{what} is longer than {MAX_KEY_BYTES} bytes"
        )));
    }
    check_text(what, text)
}

fn check_payload(value: &serde_json::Value, depth: usize) -> Result<(), &'static str> {
    use serde_json::Value;
    if depth > MAX_PAYLOAD_DEPTH {
        return Err("nested too deeply");
    }
    match value {
        Value::String(s) if s.contains('\0') => Err("contains a NUL character"),
        Value::Array(items) => items.iter().try_for_each(|v| check_payload(v, depth + 1)),
        Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            if k.contains('\0') {
                return Err("contains a NUL character");
            }
            check_payload(v, depth + 1)
        }),
        _ => Ok(()),
    }
}

/// A stored event as far as deciding duplicates is concerned.
#[derive(Debug, Clone)]
pub(crate) struct StoredEvent {
    pub stream: String,
    pub version: u64,
    pub position: i64,
    pub recorded_at: OffsetDateTime,
}

/// What the database holds for the streams, event ids and keys of a batch.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    /// Current version per stream (absent = 0).
    pub versions: HashMap<String, u64>,
    /// Already stored event ids of the batch.
    pub events: HashMap<Uuid, StoredEvent>,
    /// Already committed idempotency keys of the batch, by (scope, key).
    pub keys: HashMap<(String, String), IdempotentRecord>,
}

/// The distinct streams, event ids and idempotency keys of a batch: what the
/// snapshot queries ask for.
#[derive(Debug, Default)]
pub(crate) struct BatchKeys {
    pub streams: Vec<String>,
    pub event_ids: Vec<Uuid>,
    pub idempotency: Vec<(String, String)>,
}

impl BatchKeys {
    pub(crate) fn of(units: &[Vec<AppendRequest>]) -> Self {
        let mut streams = HashSet::new();
        let mut idempotency = HashSet::new();
        let mut out = BatchKeys::default();
        for req in units.iter().flatten() {
            if streams.insert(req.stream.as_str()) {
                out.streams.push(req.stream.0.clone());
            }
            // Event ids are unique within a unit (validated); across units a
            // repeat only costs a duplicate array element.
            out.event_ids.extend(req.events.iter().map(|e| e.event_id));
            if let Some(k) = &req.idempotency
                && idempotency.insert((k.scope.as_str(), k.key.as_str()))
            {
                out.idempotency.push((k.scope.clone(), k.key.clone()));
            }
        }
        out
    }
}

/// One accepted event to insert.
#[derive(Debug)]
pub(crate) struct Row<'a> {
    pub event: &'a NewEvent,
    pub stream: &'a str,
    pub version: i64,
    /// The payload serialized once, as the backends bind it (text).
    pub payload: String,
    /// `event.occurred_at` truncated to the microsecond, which both backends
    /// store, so what is read back equals what was acknowledged.
    pub occurred_at: OffsetDateTime,
}

/// The events of one request, identified by their first and last event ids;
/// turned into an [`Appended`] once positions are known.
#[derive(Debug, Clone)]
struct Range<'a> {
    stream: &'a StreamId,
    first_version: u64,
    last_version: u64,
    first_event: Uuid,
    last_event: Uuid,
}

/// What the database assigned to an inserted event.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Inserted {
    pub position: i64,
    pub recorded_at: OffsetDateTime,
}

impl Range<'_> {
    fn resolve(&self, inserted: &HashMap<Uuid, Inserted>) -> Result<Appended, StoreError> {
        let missing = |id: Uuid| {
            StoreError::Corrupt(format!(
                "inserted event {id} is missing from the insert result"
            ))
        };
        let first = inserted
            .get(&self.first_event)
            .ok_or_else(|| missing(self.first_event))?;
        let last = inserted
            .get(&self.last_event)
            .ok_or_else(|| missing(self.last_event))?;
        Ok(Appended {
            stream: self.stream.clone(),
            first_version: self.first_version,
            last_version: self.last_version,
            first_position: first.position,
            last_position: last.position,
            recorded_at: first.recorded_at,
        })
    }
}

#[derive(Debug)]
enum Planned<'a> {
    /// A duplicate of something committed before this batch.
    Known(Appended),
    /// Written by this batch: by this request, or (`duplicate`) by an earlier
    /// unit of the same batch that this request repeats.
    Pending { range: Range<'a>, duplicate: bool },
}

/// An idempotency key to store with the result of its request.
#[derive(Debug)]
pub(crate) struct KeyRow<'a> {
    pub key: &'a IdempotencyKey,
    pub appended: Appended,
}

/// The decided batch: per-unit results, the rows to insert (in order) and the
/// keys to store.
#[derive(Debug)]
pub(crate) struct Plan<'a> {
    units: Vec<Result<Vec<Planned<'a>>, StoreError>>,
    /// Accepted events in batch order (unit order, then request and event
    /// order); positions must be assigned in this order.
    pub rows: Vec<Row<'a>>,
    keys: Vec<(&'a IdempotencyKey, Range<'a>)>,
    /// Deadline changes of the accepted requests, in batch order.
    pub deadlines: Vec<(&'a str, &'a crate::DeadlineChange)>,
    /// Views of the accepted requests with the id of the request's last event (whose
    /// position the view records), in batch order.
    pub views: Vec<(&'a crate::views::CaseViewRow, Uuid)>,
    /// Personal-data changes of the accepted requests, in batch order.
    pub personal: Vec<&'a crate::personal::PersonalOp>,
}

impl Plan<'_> {
    /// The views to write, newest per case, with the positions the insert assigned.
    pub(crate) fn positioned_views(
        &self,
        inserted: &HashMap<Uuid, Inserted>,
    ) -> Vec<crate::views::CaseViewRow> {
        let owned: Vec<crate::views::CaseViewRow> = self
            .views
            .iter()
            .map(|(v, last)| {
                let mut v = (*v).clone();
                v.position = inserted.get(last).map_or(v.position, |i| i.position);
                v
            })
            .collect();
        crate::views::newest_views(&owned)
            .into_iter()
            .cloned()
            .collect()
    }

    /// The net deadline changes of the batch: for each (stream, key) the last change.
    pub(crate) fn net_deadlines(&self) -> Vec<(&str, &str, Option<OffsetDateTime>)> {
        let mut last: HashMap<(&str, &str), Option<OffsetDateTime>> = HashMap::new();
        let mut order = Vec::new();
        for (stream, change) in &self.deadlines {
            let k = (*stream, change.key.as_str());
            if last
                .insert(k, change.due_at.map(truncate_to_micros))
                .is_none()
            {
                order.push(k);
            }
        }
        order
            .into_iter()
            .map(|k| (k.0, k.1, last.get(&k).copied().flatten()))
            .collect()
    }
}

/// Results of a committed-to-be batch: one reply per unit, and the
/// idempotency rows to insert before COMMIT.
pub(crate) struct Resolved<'a> {
    pub replies: Vec<UnitReply>,
    pub keys: Vec<KeyRow<'a>>,
}

impl<'a> Plan<'a> {
    /// Attaches the positions assigned by the insert to every result.
    pub(crate) fn resolve(
        self,
        inserted: &HashMap<Uuid, Inserted>,
    ) -> Result<Resolved<'a>, StoreError> {
        let mut replies = Vec::with_capacity(self.units.len());
        for unit in self.units {
            replies.push(match unit {
                Err(e) => Err(e),
                Ok(planned) => Ok(planned
                    .into_iter()
                    .map(|p| match p {
                        Planned::Known(a) => Ok(AppendOutcome::Duplicate(a)),
                        Planned::Pending { range, duplicate } => {
                            let a = range.resolve(inserted)?;
                            Ok(if duplicate {
                                AppendOutcome::Duplicate(a)
                            } else {
                                AppendOutcome::Appended(a)
                            })
                        }
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?),
            });
        }
        let keys = self
            .keys
            .into_iter()
            .map(|(key, range)| {
                Ok(KeyRow {
                    key,
                    appended: range.resolve(inserted)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Resolved { replies, keys })
    }
}

/// What the units accepted so far (in the batch, or in the current unit) wrote.
#[derive(Debug, Default)]
struct Written<'a> {
    versions: HashMap<&'a str, u64>,
    ids: HashMap<Uuid, (&'a str, u64)>,
    keys: HashMap<(&'a str, &'a str), (&'a str, Range<'a>)>,
}

impl<'a> Written<'a> {
    fn merge(&mut self, other: Written<'a>) {
        self.versions.extend(other.versions);
        self.ids.extend(other.ids);
        self.keys.extend(other.keys);
    }
}

/// Lookups through the current unit's overlay, then the batch, then the snapshot.
struct View<'s, 'a> {
    snap: &'s Snapshot,
    batch: &'s Written<'a>,
    unit: &'s Written<'a>,
}

impl<'a> View<'_, 'a> {
    fn version(&self, stream: &str) -> u64 {
        self.unit
            .versions
            .get(stream)
            .or_else(|| self.batch.versions.get(stream))
            .or_else(|| self.snap.versions.get(stream))
            .copied()
            .unwrap_or(0)
    }

    fn pending_id(&self, id: &Uuid) -> Option<(&'a str, u64)> {
        self.unit
            .ids
            .get(id)
            .or_else(|| self.batch.ids.get(id))
            .copied()
    }

    fn pending_key(&self, k: &'a IdempotencyKey) -> Option<&(&'a str, Range<'a>)> {
        let key = (k.scope.as_str(), k.key.as_str());
        self.unit
            .keys
            .get(&key)
            .or_else(|| self.batch.keys.get(&key))
    }
}

/// Decides every unit of a batch in order (see the module docs).
pub(crate) fn plan<'a>(units: &'a [Vec<AppendRequest>], snap: &Snapshot) -> Plan<'a> {
    let mut batch = Written::default();
    let mut out = Plan {
        units: Vec::with_capacity(units.len()),
        rows: Vec::new(),
        keys: Vec::new(),
        deadlines: Vec::new(),
        views: Vec::new(),
        personal: Vec::new(),
    };
    for unit in units {
        let mut written = Written::default();
        let mut rows = Vec::new();
        let mut keys = Vec::new();
        let mut deadlines = Vec::new();
        let mut views = Vec::new();
        let mut personal = Vec::new();
        let mut planned = Vec::with_capacity(unit.len());
        let mut failed = None;
        for req in unit {
            let view = View {
                snap,
                batch: &batch,
                unit: &written,
            };
            match plan_request(req, &view) {
                Ok(Decision::Duplicate(p)) => planned.push(p),
                Ok(Decision::Accept {
                    range,
                    rows: req_rows,
                }) => {
                    written
                        .versions
                        .insert(req.stream.as_str(), range.last_version);
                    for (row, version) in req_rows.iter().zip(range.first_version..) {
                        written
                            .ids
                            .insert(row.event.event_id, (row.stream, version));
                    }
                    if let Some(k) = &req.idempotency {
                        written.keys.insert(
                            (k.scope.as_str(), k.key.as_str()),
                            (k.fingerprint.as_str(), range.clone()),
                        );
                        keys.push((k, range.clone()));
                    }
                    rows.extend(req_rows);
                    deadlines.extend(req.deadlines.iter().map(|d| (req.stream.as_str(), d)));
                    personal.extend(req.personal.iter());
                    if let (Some(view), Some(last)) = (&req.view, req.events.last()) {
                        views.push((view, last.event_id));
                    }
                    planned.push(Planned::Pending {
                        range,
                        duplicate: false,
                    });
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        match failed {
            Some(e) => out.units.push(Err(e)),
            None => {
                batch.merge(written);
                out.rows.extend(rows);
                out.keys.extend(keys);
                out.deadlines.extend(deadlines);
                out.views.extend(views);
                out.personal.extend(personal);
                out.units.push(Ok(planned));
            }
        }
    }
    out
}

enum Decision<'a> {
    Duplicate(Planned<'a>),
    Accept {
        range: Range<'a>,
        rows: Vec<Row<'a>>,
    },
}

fn plan_request<'a>(
    req: &'a AppendRequest,
    view: &View<'_, 'a>,
) -> Result<Decision<'a>, StoreError> {
    let (Some(first), Some(last)) = (req.events.first(), req.events.last()) else {
        return Err(StoreError::Invalid(format!(
            "no events to append to stream {}",
            req.stream
        )));
    };

    // 1. A committed (or earlier in this batch) idempotency key.
    if let Some(k) = &req.idempotency {
        if let Some((fingerprint, range)) = view.pending_key(k) {
            if *fingerprint != k.fingerprint {
                return Err(mismatch(k));
            }
            return Ok(Decision::Duplicate(Planned::Pending {
                range: range.clone(),
                duplicate: true,
            }));
        }
        if let Some(rec) = view.snap.keys.get(&(k.scope.clone(), k.key.clone())) {
            if rec.fingerprint != k.fingerprint {
                return Err(mismatch(k));
            }
            return Ok(Decision::Duplicate(Planned::Known(rec.appended.clone())));
        }
    }

    // 2. A retry recognised by its first event id.
    if let Some((stream, first_version)) = view.pending_id(&first.event_id) {
        let same = stream == req.stream.as_str()
            && req
                .events
                .iter()
                .zip(first_version..)
                .all(|(e, v)| view.pending_id(&e.event_id) == Some((stream, v)));
        if !same {
            return Err(reused_ids(req, first.event_id));
        }
        let n = req.events.len() as u64;
        return Ok(Decision::Duplicate(Planned::Pending {
            range: Range {
                stream: &req.stream,
                first_version,
                last_version: first_version + n - 1,
                first_event: first.event_id,
                last_event: last.event_id,
            },
            duplicate: true,
        }));
    }
    if let Some(stored_first) = view.snap.events.get(&first.event_id) {
        let stored: Option<Vec<&StoredEvent>> = req
            .events
            .iter()
            .zip(stored_first.version..)
            .map(|(e, v)| {
                view.snap
                    .events
                    .get(&e.event_id)
                    .filter(|s| s.stream == req.stream.as_str() && s.version == v)
            })
            .collect();
        let Some(stored_last) = stored.as_ref().and_then(|s| s.last()) else {
            return Err(reused_ids(req, first.event_id));
        };
        return Ok(Decision::Duplicate(Planned::Known(Appended {
            stream: req.stream.clone(),
            first_version: stored_first.version,
            last_version: stored_last.version,
            first_position: stored_first.position,
            last_position: stored_last.position,
            recorded_at: stored_first.recorded_at,
        })));
    }

    // 3. Any other event id must be new.
    for e in &req.events[1..] {
        if view.pending_id(&e.event_id).is_some() || view.snap.events.contains_key(&e.event_id) {
            return Err(StoreError::Invalid(format!(
                "event id {} is already stored",
                e.event_id
            )));
        }
    }

    // 4. Optimistic concurrency.
    let actual = view.version(req.stream.as_str());
    if !req.expected.matches(actual) {
        return Err(StoreError::Conflict {
            stream: req.stream.clone(),
            expected: req.expected,
            actual,
        });
    }

    // 5. Accept.
    let n = req.events.len() as u64;
    let last_version = actual
        .checked_add(n)
        .filter(|v| i64::try_from(*v).is_ok())
        .ok_or_else(|| StoreError::Invalid(format!("stream {} version overflow", req.stream)))?;
    let first_version = actual + 1;
    let mut rows = Vec::with_capacity(req.events.len());
    for (event, version) in req.events.iter().zip(first_version..) {
        let payload = serde_json::to_string(&event.payload).map_err(|e| {
            StoreError::Invalid(format!("payload of event {}: {e}", event.event_id))
        })?;
        rows.push(Row {
            event,
            stream: req.stream.as_str(),
            // Fits: version <= last_version, which was checked to fit i64.
            version: i64::try_from(version).unwrap_or(i64::MAX),
            payload,
            occurred_at: truncate_to_micros(event.occurred_at),
        });
    }
    Ok(Decision::Accept {
        range: Range {
            stream: &req.stream,
            first_version,
            last_version,
            first_event: first.event_id,
            last_event: last.event_id,
        },
        rows,
    })
}

fn mismatch(k: &IdempotencyKey) -> StoreError {
    StoreError::IdempotencyMismatch {
        scope: k.scope.clone(),
        key: k.key.clone(),
    }
}

fn reused_ids(req: &AppendRequest, id: Uuid) -> StoreError {
    StoreError::Invalid(format!(
        "event id {id} is already stored, but not as the same events of stream {}",
        req.stream
    ))
}

/// Drops sub-microsecond precision (rounding down), which neither backend keeps.
pub(crate) fn truncate_to_micros(t: OffsetDateTime) -> OffsetDateTime {
    let sub_micro = i64::from(t.nanosecond() % 1_000);
    t - time::Duration::nanoseconds(sub_micro)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ExpectedVersion;

    fn ev() -> NewEvent {
        NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "T".into(),
            payload: serde_json::json!({"a": 1}),
            actor_id: "u".into(),
            actor_role: "r".into(),
            occurred_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn req(stream: &str, expected: ExpectedVersion, n: usize) -> AppendRequest {
        AppendRequest {
            stream: stream.into(),
            expected,
            events: (0..n).map(|_| ev()).collect(),
            idempotency: None,
            deadlines: Vec::new(),
            view: None,
            personal: Vec::new(),
        }
    }

    fn fake_insert(plan: &Plan<'_>) -> HashMap<Uuid, Inserted> {
        plan.rows
            .iter()
            .zip(1..)
            .map(|(r, p)| {
                (
                    r.event.event_id,
                    Inserted {
                        position: p,
                        recorded_at: OffsetDateTime::UNIX_EPOCH,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn units_in_one_batch_are_checked_against_each_other() {
        let mut snap = Snapshot::default();
        snap.versions.insert("s".into(), 1);
        let units = vec![
            vec![req("s", ExpectedVersion::Exact(1), 2)],
            vec![req("s", ExpectedVersion::Exact(1), 1)], // conflicts with the first
            vec![req("s", ExpectedVersion::Exact(3), 1)], // follows the first
            vec![req("t", ExpectedVersion::NoStream, 1)],
        ];
        let plan = plan(&units, &snap);
        assert_eq!(plan.rows.len(), 4);
        let inserted = fake_insert(&plan);
        let resolved = plan.resolve(&inserted).expect("resolves");
        let r = &resolved.replies;
        assert!(matches!(&r[0], Ok(o) if o[0].appended().last_version == 3));
        assert!(matches!(&r[1], Err(StoreError::Conflict { actual: 3, .. })));
        assert!(matches!(&r[2], Ok(o) if o[0].appended().first_version == 4));
        assert!(matches!(&r[3], Ok(o) if o[0].appended().first_version == 1));
    }

    #[test]
    fn failed_unit_leaves_no_trace_in_the_batch() {
        let snap = Snapshot::default();
        let units = vec![
            vec![
                req("a", ExpectedVersion::NoStream, 1),
                req("b", ExpectedVersion::Exact(7), 1),
            ],
            vec![req("a", ExpectedVersion::NoStream, 1)],
        ];
        let plan = plan(&units, &snap);
        assert_eq!(plan.rows.len(), 1);
        let inserted = fake_insert(&plan);
        let resolved = plan.resolve(&inserted).expect("resolves");
        assert!(matches!(
            &resolved.replies[0],
            Err(StoreError::Conflict { actual: 0, .. })
        ));
        assert!(resolved.replies[1].is_ok());
    }

    #[test]
    fn repeated_key_and_event_ids_in_one_batch_are_duplicates() {
        let snap = Snapshot::default();
        let mut a = req("s", ExpectedVersion::NoStream, 2);
        a.idempotency = Some(IdempotencyKey {
            scope: "p".into(),
            key: "k".into(),
            fingerprint: "f".into(),
        });
        let mut by_key = req("s", ExpectedVersion::NoStream, 2);
        by_key.idempotency = a.idempotency.clone();
        let mut other_fp = by_key.clone();
        if let Some(k) = other_fp.idempotency.as_mut() {
            k.fingerprint = "g".into();
        }
        let mut by_id = a.clone();
        by_id.idempotency = None;
        let units = vec![vec![a], vec![by_key], vec![other_fp], vec![by_id]];
        let plan = plan(&units, &snap);
        assert_eq!(plan.rows.len(), 2);
        let inserted = fake_insert(&plan);
        let resolved = plan.resolve(&inserted).expect("resolves");
        let r = &resolved.replies;
        let original = r[0].as_ref().expect("first is appended")[0].clone();
        assert!(!original.is_duplicate());
        let dup = r[1].as_ref().expect("dup by key")[0].clone();
        assert_eq!(dup, AppendOutcome::Duplicate(original.appended().clone()));
        assert!(matches!(&r[2], Err(StoreError::IdempotencyMismatch { .. })));
        let dup = r[3].as_ref().expect("dup by id")[0].clone();
        assert_eq!(dup, AppendOutcome::Duplicate(original.appended().clone()));
        assert_eq!(resolved.keys.len(), 1);
    }

    #[test]
    fn validation_rejects_poison() {
        let mut r = req("s", ExpectedVersion::Any, 1);
        r.events[0].payload = serde_json::json!({"x": "a\u{0}b"});
        assert!(matches!(validate_unit(&[r]), Err(StoreError::Invalid(_))));
        let r = req("s\u{0}", ExpectedVersion::Any, 1);
        assert!(matches!(validate_unit(&[r]), Err(StoreError::Invalid(_))));
        let mut deep = serde_json::Value::Null;
        for _ in 0..200 {
            deep = serde_json::Value::Array(vec![deep]);
        }
        let mut r = req("s", ExpectedVersion::Any, 1);
        r.events[0].payload = deep;
        assert!(matches!(validate_unit(&[r]), Err(StoreError::Invalid(_))));
        assert!(matches!(validate_unit(&[]), Err(StoreError::Invalid(_))));
    }

    #[test]
    fn truncation_rounds_down_to_the_microsecond() {
        let t = OffsetDateTime::UNIX_EPOCH + time::Duration::nanoseconds(1_234_567);
        assert_eq!(
            truncate_to_micros(t),
            OffsetDateTime::UNIX_EPOCH + time::Duration::nanoseconds(1_234_000)
        );
        let t = OffsetDateTime::UNIX_EPOCH - time::Duration::nanoseconds(1);
        assert_eq!(
            truncate_to_micros(t),
            OffsetDateTime::UNIX_EPOCH - time::Duration::microseconds(1)
        );
    }
}
