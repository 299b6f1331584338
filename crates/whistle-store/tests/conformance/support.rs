//! Builders shared by the cases.

use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;
use whistle_store::{
    AppendOutcome, AppendRequest, EventStore, ExpectedVersion, IdempotencyKey, NewEvent,
    StoreError, StreamId,
};

/// A new, unused stream id.
pub fn new_stream() -> StreamId {
    StreamId(format!("case-{}", Uuid::now_v7()))
}

/// An event with a fresh id.
pub fn event(event_type: &str, payload: Value) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: event_type.to_owned(),
        payload,
        actor_id: "worker-1".to_owned(),
        actor_role: "grid_worker".to_owned(),
        occurred_at: OffsetDateTime::now_utc(),
    }
}

/// `n` simple events.
pub fn events(n: usize) -> Vec<NewEvent> {
    (0..n)
        .map(|i| event("NoteAdded", json!({ "i": i })))
        .collect()
}

/// A request without idempotency key.
pub fn req(stream: &StreamId, expected: ExpectedVersion, events: Vec<NewEvent>) -> AppendRequest {
    AppendRequest {
        stream: stream.clone(),
        expected,
        events,
        idempotency: None,
        deadlines: Vec::new(),
        view: None,
        personal: Vec::new(),
    }
}

/// An idempotency key.
pub fn key(scope: &str, key: &str, fingerprint: &str) -> IdempotencyKey {
    IdempotencyKey {
        scope: scope.to_owned(),
        key: key.to_owned(),
        fingerprint: fingerprint.to_owned(),
    }
}

/// Appends a single-request unit and returns its one outcome.
pub async fn append_one<S: EventStore>(
    store: &S,
    request: AppendRequest,
) -> Result<AppendOutcome, StoreError> {
    let mut outcomes = store.append(vec![request]).await?;
    assert_eq!(outcomes.len(), 1, "one outcome per request");
    Ok(outcomes.remove(0))
}

/// Reads the whole log through `read_all` pages of `page` rows.
pub async fn read_everything<S: EventStore>(
    store: &S,
    page: u32,
) -> Vec<whistle_store::RecordedEvent> {
    let mut all = Vec::new();
    let mut cursor = 0;
    loop {
        let batch = store.read_all(cursor, page).await.expect("read_all");
        let Some(last) = batch.last() else {
            return all;
        };
        cursor = last.position;
        all.extend(batch);
    }
}
