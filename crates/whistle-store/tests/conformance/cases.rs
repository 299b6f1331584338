//! The conformance cases, generic over `S: EventStore` (the last two need the
//! concrete `Store` for `migrate` and `close`).

use std::sync::Arc;

use serde_json::json;
use time::OffsetDateTime;
use time::macros::datetime;
use tokio::sync::Barrier;
use tokio::task::JoinSet;
use uuid::Uuid;
use whistle_store::{
    AppendOutcome, AppendRequest, EventStore, ExpectedVersion, NewEvent, Store, StoreError,
    StreamId,
};

use crate::support::{append_one, event, events, key, new_stream, read_everything, req};

pub async fn round_trip<S: EventStore>(store: &S) {
    let stream = new_stream();
    let occurred = datetime!(2025-03-04 05:06:07.123_456_789 +08:00);
    let first = NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "CaseReported".into(),
        payload: json!({
            "title": "路灯不亮 — streetlight out",
            "count": 42,
            "ratio": 1.5,
            "big": 9_007_199_254_740_993_u64,
            "flags": [true, false, null],
            "nested": { "a": [1, 2, { "b": "c\"quoted\"" }], "empty": {} },
        }),
        actor_id: "citizen-17".into(),
        actor_role: "citizen".into(),
        occurred_at: occurred,
    };
    let mut second = event("CaseRouted", json!({"to": "dept-water"}));
    second.actor_role = "dispatcher".into();
    let before = OffsetDateTime::now_utc();
    let outcome = append_one(
        store,
        req(
            &stream,
            ExpectedVersion::NoStream,
            vec![first.clone(), second.clone()],
        ),
    )
    .await
    .expect("append");
    let after = OffsetDateTime::now_utc();
    let AppendOutcome::Appended(a) = outcome else {
        panic!("expected Appended, got {outcome:?}");
    };
    assert_eq!(a.stream, stream);
    assert_eq!((a.first_version, a.last_version), (1, 2));
    assert_eq!(a.last_position, a.first_position + 1);
    assert_eq!(
        a.recorded_at.nanosecond() % 1_000,
        0,
        "microsecond precision"
    );
    let slack = time::Duration::seconds(5);
    assert!(a.recorded_at >= before - slack && a.recorded_at <= after + slack);

    let read = store.read_stream(&stream, 0).await.expect("read_stream");
    assert_eq!(read.len(), 2);
    for (got, (sent, version)) in read.iter().zip([(&first, 1), (&second, 2)]) {
        assert_eq!(got.stream, stream);
        assert_eq!(got.version, version);
        assert_eq!(got.position, a.first_position + version as i64 - 1);
        assert_eq!(got.event_id, sent.event_id);
        assert_eq!(got.event_type, sent.event_type);
        assert_eq!(got.payload, sent.payload);
        assert_eq!(got.actor_id, sent.actor_id);
        assert_eq!(got.actor_role, sent.actor_role);
        assert_eq!(got.recorded_at, a.recorded_at);
        // Stored to the microsecond (rounded down), returned in UTC.
        let expected = sent.occurred_at
            - time::Duration::nanoseconds(i64::from(sent.occurred_at.nanosecond() % 1_000));
        assert_eq!(got.occurred_at, expected);
    }
    assert_eq!(
        read[0].occurred_at,
        datetime!(2025-03-03 21:06:07.123_456 UTC)
    );

    let tail = store
        .read_stream(&stream, 1)
        .await
        .expect("read_stream tail");
    assert_eq!(tail.len(), 1);
    assert_eq!(tail[0].event_id, second.event_id);
    assert!(
        store
            .read_stream(&stream, 2)
            .await
            .expect("read")
            .is_empty()
    );
    assert!(
        store
            .read_stream(&new_stream(), 0)
            .await
            .expect("read unknown")
            .is_empty()
    );
    assert_eq!(store.stream_version(&stream).await.expect("version"), 2);
    assert_eq!(
        store.stream_version(&new_stream()).await.expect("version"),
        0
    );
    assert_eq!(store.head_position().await.expect("head"), a.last_position);
    assert_eq!(store.count_events().await.expect("count"), 2);

    let all = store.read_all(0, 10).await.expect("read_all");
    assert_eq!(all, read);
}

pub async fn expected_version_conflicts<S: EventStore>(store: &S) {
    let s = new_stream();
    append_one(store, req(&s, ExpectedVersion::NoStream, events(1)))
        .await
        .expect("create");

    for expected in [
        ExpectedVersion::NoStream,
        ExpectedVersion::Exact(0),
        ExpectedVersion::Exact(2),
        ExpectedVersion::Exact(u64::MAX),
    ] {
        let err = append_one(store, req(&s, expected, events(1)))
            .await
            .expect_err("must conflict");
        match err {
            StoreError::Conflict {
                stream,
                expected: e,
                actual,
            } => {
                assert_eq!(stream, s);
                assert_eq!(e, expected);
                assert_eq!(actual, 1);
            }
            other => panic!("expected Conflict for {expected:?}, got {other:?}"),
        }
    }
    assert_eq!(store.count_events().await.expect("count"), 1);

    let ok = append_one(store, req(&s, ExpectedVersion::Exact(1), events(2)))
        .await
        .expect("exact");
    assert_eq!(ok.appended().first_version, 2);
    assert_eq!(ok.appended().last_version, 3);
    let ok = append_one(store, req(&s, ExpectedVersion::Any, events(1)))
        .await
        .expect("any");
    assert_eq!(ok.appended().first_version, 4);

    let fresh = new_stream();
    let err = append_one(store, req(&fresh, ExpectedVersion::Exact(3), events(1)))
        .await
        .expect_err("exact on a missing stream");
    assert!(
        matches!(err, StoreError::Conflict { actual: 0, .. }),
        "{err:?}"
    );
    let ok = append_one(store, req(&fresh, ExpectedVersion::Any, events(1)))
        .await
        .expect("any on a new stream");
    assert_eq!(ok.appended().first_version, 1);
    assert_eq!(store.count_events().await.expect("count"), 5);
}

pub async fn conflict_does_not_fail_the_rest_of_the_batch<S: EventStore + Clone>(store: &S) {
    const RACERS: usize = 32;
    let contested = new_stream();
    append_one(store, req(&contested, ExpectedVersion::NoStream, events(1)))
        .await
        .expect("create");
    let barrier = Arc::new(Barrier::new(2 * RACERS));
    let mut tasks = JoinSet::new();
    for i in 0..2 * RACERS {
        let store = store.clone();
        let barrier = Arc::clone(&barrier);
        let contested = contested.clone();
        tasks.spawn(async move {
            let (stream, expected) = if i % 2 == 0 {
                (contested, ExpectedVersion::Exact(1))
            } else {
                (new_stream(), ExpectedVersion::NoStream)
            };
            barrier.wait().await;
            let result = append_one(&store, req(&stream, expected, events(1))).await;
            (i % 2 == 0, result)
        });
    }
    let mut winners = 0;
    let mut conflicts = 0;
    let mut bystanders = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("task") {
            (true, Ok(AppendOutcome::Appended(a))) => {
                winners += 1;
                assert_eq!(a.first_version, 2);
            }
            (true, Err(StoreError::Conflict { actual, .. })) => {
                conflicts += 1;
                assert_eq!(actual, 2);
            }
            (false, Ok(AppendOutcome::Appended(a))) => {
                bystanders += 1;
                assert_eq!(a.first_version, 1);
            }
            (contested, other) => panic!("unexpected result (contested={contested}): {other:?}"),
        }
    }
    assert_eq!(winners, 1);
    assert_eq!(conflicts, RACERS - 1);
    assert_eq!(bystanders, RACERS);
    assert_eq!(store.stream_version(&contested).await.expect("version"), 2);
    assert_eq!(
        store.count_events().await.expect("count"),
        1 + 1 + RACERS as u64
    );
}

pub async fn idempotent_retry_returns_the_original<S: EventStore>(store: &S) {
    let s = new_stream();
    let client_key = Uuid::now_v7().to_string();
    let mut first = req(&s, ExpectedVersion::NoStream, events(2));
    first.idempotency = Some(key("principal-1", &client_key, "fp-1"));
    let original = append_one(store, first.clone()).await.expect("first");
    let AppendOutcome::Appended(original) = original else {
        panic!("first attempt must append: {original:?}");
    };
    assert_eq!(store.count_events().await.expect("count"), 2);

    // The retry carries new event ids (the API may regenerate them) and an
    // expected version that would now conflict: the key wins.
    let mut retry = req(&s, ExpectedVersion::NoStream, events(2));
    retry.idempotency = first.idempotency.clone();
    let again = append_one(store, retry).await.expect("retry");
    assert_eq!(again, AppendOutcome::Duplicate(original.clone()));
    assert_eq!(store.count_events().await.expect("count"), 2);
    assert_eq!(store.stream_version(&s).await.expect("version"), 2);

    let record = store
        .find_idempotent("principal-1", &client_key)
        .await
        .expect("find")
        .expect("committed key");
    assert_eq!(record.appended, original);
    assert_eq!(record.fingerprint, "fp-1");
    assert!(
        store
            .find_idempotent("principal-2", &client_key)
            .await
            .expect("find")
            .is_none()
    );
    assert!(
        store
            .find_idempotent("principal-1", "other")
            .await
            .expect("find")
            .is_none()
    );

    // The same client key in another scope is another key.
    let other = new_stream();
    let mut other_scope = req(&other, ExpectedVersion::NoStream, events(1));
    other_scope.idempotency = Some(key("principal-2", &client_key, "fp-1"));
    let outcome = append_one(store, other_scope).await.expect("other scope");
    assert!(!outcome.is_duplicate());
    assert_eq!(store.count_events().await.expect("count"), 3);
}

pub async fn idempotency_key_with_other_fingerprint_is_rejected<S: EventStore>(store: &S) {
    let s = new_stream();
    let mut first = req(&s, ExpectedVersion::Any, events(1));
    first.idempotency = Some(key("principal-1", "k-1", "fp-1"));
    append_one(store, first).await.expect("first");

    let mut misuse = req(&s, ExpectedVersion::Any, events(1));
    misuse.idempotency = Some(key("principal-1", "k-1", "fp-2"));
    let err = append_one(store, misuse).await.expect_err("mismatch");
    match err {
        StoreError::IdempotencyMismatch { scope, key } => {
            assert_eq!(scope, "principal-1");
            assert_eq!(key, "k-1");
        }
        other => panic!("expected IdempotencyMismatch, got {other:?}"),
    }
    assert_eq!(store.count_events().await.expect("count"), 1);
    let record = store
        .find_idempotent("principal-1", "k-1")
        .await
        .expect("find")
        .expect("key");
    assert_eq!(record.fingerprint, "fp-1");
}

pub async fn concurrent_retries_with_one_key_append_once<S: EventStore + Clone>(store: &S) {
    const RETRIES: usize = 16;
    let s = new_stream();
    let barrier = Arc::new(Barrier::new(RETRIES));
    let mut tasks = JoinSet::new();
    for _ in 0..RETRIES {
        let store = store.clone();
        let barrier = Arc::clone(&barrier);
        let mut request = req(&s, ExpectedVersion::Any, events(1));
        request.idempotency = Some(key("principal-9", "same-key", "fp"));
        tasks.spawn(async move {
            barrier.wait().await;
            append_one(&store, request).await
        });
    }
    let mut appended = Vec::new();
    let mut duplicates = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("task").expect("append") {
            AppendOutcome::Appended(a) => appended.push(a),
            AppendOutcome::Duplicate(a) => duplicates.push(a),
        }
    }
    assert_eq!(appended.len(), 1, "exactly one attempt writes");
    assert_eq!(duplicates.len(), RETRIES - 1);
    assert!(duplicates.iter().all(|d| *d == appended[0]));
    assert_eq!(store.count_events().await.expect("count"), 1);
}

pub async fn duplicate_first_event_id_returns_the_original<S: EventStore>(store: &S) {
    let s = new_stream();
    let request = req(&s, ExpectedVersion::NoStream, events(2));
    let original = append_one(store, request.clone()).await.expect("first");
    assert!(!original.is_duplicate());

    // Same events again (no idempotency key): recognised by the first event id,
    // although NoStream would now conflict.
    let again = append_one(store, request.clone()).await.expect("retry");
    assert_eq!(again, AppendOutcome::Duplicate(original.appended().clone()));
    assert_eq!(store.count_events().await.expect("count"), 2);

    // Reusing a stored id anywhere else is a client bug.
    let mut reuse_later = events(1);
    reuse_later.push(request.events[0].clone());
    let err = append_one(store, req(&s, ExpectedVersion::Any, reuse_later))
        .await
        .expect_err("stored id in second place");
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    let err = append_one(
        store,
        req(&new_stream(), ExpectedVersion::Any, request.events.clone()),
    )
    .await
    .expect_err("same events on another stream");
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert_eq!(store.count_events().await.expect("count"), 2);
}

pub async fn multi_request_unit_is_all_or_nothing<S: EventStore>(store: &S) {
    let x = new_stream();
    let y = new_stream();
    let before = store.count_events().await.expect("count");
    let err = store
        .append(vec![
            req(&x, ExpectedVersion::NoStream, events(2)),
            req(&y, ExpectedVersion::Exact(5), events(1)),
        ])
        .await
        .expect_err("second request conflicts");
    match err {
        StoreError::Conflict { stream, actual, .. } => {
            assert_eq!(stream, y);
            assert_eq!(actual, 0);
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(store.stream_version(&x).await.expect("version"), 0);
    assert_eq!(store.count_events().await.expect("count"), before);

    // A merge: two streams, one transaction.
    let outcomes = store
        .append(vec![
            req(&x, ExpectedVersion::NoStream, events(1)),
            req(&y, ExpectedVersion::NoStream, events(2)),
        ])
        .await
        .expect("merge");
    assert_eq!(outcomes.len(), 2);
    let (ax, ay) = (outcomes[0].appended(), outcomes[1].appended());
    assert!(!outcomes[0].is_duplicate() && !outcomes[1].is_duplicate());
    assert_eq!(
        (ax.stream.clone(), ax.first_version, ax.last_version),
        (x.clone(), 1, 1)
    );
    assert_eq!(
        (ay.stream.clone(), ay.first_version, ay.last_version),
        (y.clone(), 1, 2)
    );
    assert_eq!(ay.first_position, ax.last_position + 1);
    assert_eq!(ay.last_position, ay.first_position + 1);

    // Two requests on one stream in one unit see each other.
    let outcomes = store
        .append(vec![
            req(&x, ExpectedVersion::Exact(1), events(1)),
            req(&x, ExpectedVersion::Exact(2), events(1)),
        ])
        .await
        .expect("chained");
    assert_eq!(outcomes[1].appended().last_version, 3);
    assert_eq!(store.count_events().await.expect("count"), before + 5);
}

pub async fn read_all_pages_in_commit_order<S: EventStore>(store: &S) {
    assert_eq!(store.head_position().await.expect("head"), 0);
    assert!(store.read_all(0, 10).await.expect("empty").is_empty());
    let streams = [new_stream(), new_stream(), new_stream()];
    let mut order = Vec::new();
    for i in 0..25 {
        let e = event("Tick", json!({ "i": i }));
        order.push(e.event_id);
        append_one(store, req(&streams[i % 3], ExpectedVersion::Any, vec![e]))
            .await
            .expect("append");
    }
    let mut cursor = 0;
    let mut seen = Vec::new();
    let mut pages = Vec::new();
    loop {
        let page = store.read_all(cursor, 10).await.expect("page");
        pages.push(page.len());
        let Some(last) = page.last() else { break };
        for e in &page {
            assert!(e.position > cursor, "positions strictly increase");
            cursor = e.position;
        }
        assert_eq!(last.position, cursor);
        seen.extend(page.iter().map(|e| e.event_id));
    }
    assert_eq!(pages, vec![10, 10, 5, 0]);
    assert_eq!(seen, order);
    assert_eq!(store.head_position().await.expect("head"), cursor);
    assert!(store.read_all(0, 0).await.expect("limit 0").is_empty());
    assert!(
        store
            .read_all(cursor, 10)
            .await
            .expect("at head")
            .is_empty()
    );
    let versions: Vec<u64> = store
        .read_all(0, 100)
        .await
        .expect("all")
        .iter()
        .filter(|e| e.stream == streams[1])
        .map(|e| e.version)
        .collect();
    assert_eq!(versions, (1..=8).collect::<Vec<_>>());
}

pub async fn concurrent_appenders_get_contiguous_versions<S: EventStore + Clone>(store: &S) {
    const TASKS: usize = 64;
    const APPENDS: u64 = 50;
    let start = store.stats();
    let mut tasks = JoinSet::new();
    let streams: Vec<StreamId> = (0..TASKS).map(|_| new_stream()).collect();
    for stream in streams.clone() {
        let store = store.clone();
        tasks.spawn(async move {
            for v in 0..APPENDS {
                let outcome =
                    append_one(&store, req(&stream, ExpectedVersion::Exact(v), events(1)))
                        .await
                        .unwrap_or_else(|e| panic!("append {v} to {stream}: {e}"));
                assert_eq!(outcome.appended().first_version, v + 1);
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("appender");
    }
    let total = TASKS as u64 * APPENDS;
    assert_eq!(store.count_events().await.expect("count"), total);
    for stream in &streams {
        let read = store.read_stream(stream, 0).await.expect("read");
        let versions: Vec<u64> = read.iter().map(|e| e.version).collect();
        assert_eq!(versions, (1..=APPENDS).collect::<Vec<_>>(), "{stream}");
        assert!(read.windows(2).all(|w| w[0].position < w[1].position));
    }
    let all = read_everything(store, 500).await;
    assert_eq!(all.len() as u64, total);
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    let stats = store.stats();
    assert_eq!(stats.units - start.units, total);
    assert!(
        stats.batches - start.batches < total,
        "group commit never grouped: {stats:?}"
    );
}

pub async fn concurrent_units_are_grouped_into_batches<S: EventStore + Clone>(store: &S) {
    const UNITS: usize = 256;
    let start = store.stats();
    let barrier = Arc::new(Barrier::new(UNITS));
    let mut tasks = JoinSet::new();
    for _ in 0..UNITS {
        let store = store.clone();
        let barrier = Arc::clone(&barrier);
        tasks.spawn(async move {
            barrier.wait().await;
            append_one(
                &store,
                req(&new_stream(), ExpectedVersion::NoStream, events(1)),
            )
            .await
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("task").expect("append");
    }
    let stats = store.stats();
    let (batches, units) = (stats.batches - start.batches, stats.units - start.units);
    assert_eq!(units, UNITS as u64);
    assert_eq!(stats.events - start.events, UNITS as u64);
    assert!(batches >= 1);
    assert!(
        batches < units,
        "{units} concurrent units took {batches} batches: no grouping"
    );
}

pub async fn invalid_requests_write_nothing<S: EventStore>(store: &S) {
    let s = new_stream();
    let invalid = |r: Result<Vec<AppendOutcome>, StoreError>| {
        assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
    };
    invalid(store.append(Vec::new()).await);
    invalid(
        store
            .append(vec![req(&s, ExpectedVersion::Any, Vec::new())])
            .await,
    );
    let twice = event("T", json!({}));
    invalid(
        store
            .append(vec![req(
                &s,
                ExpectedVersion::Any,
                vec![twice.clone(), twice.clone()],
            )])
            .await,
    );
    invalid(
        store
            .append(vec![
                req(&s, ExpectedVersion::Any, vec![twice.clone()]),
                req(&new_stream(), ExpectedVersion::Any, vec![twice]),
            ])
            .await,
    );
    invalid(
        store
            .append(vec![req(
                &StreamId::new(""),
                ExpectedVersion::Any,
                events(1),
            )])
            .await,
    );
    invalid(
        store
            .append(vec![req(
                &StreamId::new("a\0b"),
                ExpectedVersion::Any,
                events(1),
            )])
            .await,
    );
    invalid(
        store
            .append(vec![req(
                &s,
                ExpectedVersion::Any,
                vec![event("T", json!({"text": "nul \u{0} inside"}))],
            )])
            .await,
    );
    let mut keyed: AppendRequest = req(&s, ExpectedVersion::Any, events(1));
    keyed.idempotency = Some(key("p", "", "f"));
    invalid(store.append(vec![keyed]).await);
    assert_eq!(store.count_events().await.expect("count"), 0);
    // The store still works afterwards.
    append_one(store, req(&s, ExpectedVersion::NoStream, events(1)))
        .await
        .expect("valid append");
}

pub async fn migrate_is_idempotent(store: &Store) {
    append_one(store, req(&new_stream(), ExpectedVersion::Any, events(1)))
        .await
        .expect("append");
    store.migrate().await.expect("second migrate");
    assert_eq!(store.count_events().await.expect("count"), 1);
}

pub async fn closed_store_refuses_appends(store: &Store) {
    let s = new_stream();
    append_one(store, req(&s, ExpectedVersion::Any, events(1)))
        .await
        .expect("append");
    let clone = store.clone();
    store.close().await;
    let err = append_one(&clone, req(&s, ExpectedVersion::Any, events(1)))
        .await
        .expect_err("closed");
    assert!(matches!(err, StoreError::Closed), "{err:?}");
    // Closing twice is harmless.
    store.close().await;
}

/// Deadline rows are written with the events that carry them (never for a conflicting
/// request), the last change per key wins, a claim hides a row for its lease, and a
/// cleared or deleted row is gone.
pub async fn deadlines_follow_their_appends_and_are_claimed_once_per_lease(store: &Store) {
    use time::Duration;
    use whistle_store::DeadlineChange;
    let t0 = datetime!(2025-03-03 09:00:00 +08:00);
    let set = |key: &str, due| DeadlineChange {
        key: key.into(),
        due_at: Some(due),
    };
    let a = new_stream();
    let b = new_stream();
    let mut first = req(&a, ExpectedVersion::NoStream, events(1));
    first.deadlines = vec![
        set("respond#1/warn", t0 + Duration::minutes(6)),
        set("respond#1/breach", t0 + Duration::minutes(8)),
        set("resolve#2/breach", t0 + Duration::days(1)),
        // The last change for a key wins within one request.
        set("resolve#2/breach", t0 + Duration::days(2)),
    ];
    let mut other = req(&b, ExpectedVersion::NoStream, events(1));
    other.deadlines = vec![set("respond#1/breach", t0 + Duration::minutes(7))];
    store.append(vec![first]).await.expect("append a");
    store.append(vec![other]).await.expect("append b");
    // A conflicting request writes none of its deadline rows.
    let mut stale = req(&a, ExpectedVersion::NoStream, events(1));
    stale.deadlines = vec![set("bogus/breach", t0)];
    assert!(matches!(
        store.append(vec![stale]).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        store.deadline_summary().await.expect("summary"),
        (4, Some(t0 + Duration::minutes(6)))
    );

    let lease = Duration::seconds(30);
    assert!(
        store
            .claim_due_deadlines(t0 + Duration::minutes(5), 10, lease)
            .await
            .expect("claim")
            .is_empty()
    );
    let due = store
        .claim_due_deadlines(t0 + Duration::minutes(8), 10, lease)
        .await
        .expect("claim");
    let got: Vec<(String, String, OffsetDateTime)> = due
        .iter()
        .map(|d| (d.stream.to_string(), d.key.clone(), d.due_at))
        .collect();
    assert_eq!(
        got,
        [
            (
                a.to_string(),
                "respond#1/warn".to_string(),
                t0 + Duration::minutes(6)
            ),
            (
                b.to_string(),
                "respond#1/breach".to_string(),
                t0 + Duration::minutes(7)
            ),
            (
                a.to_string(),
                "respond#1/breach".to_string(),
                t0 + Duration::minutes(8)
            ),
        ],
        "due rows, oldest first"
    );
    // Claimed rows stay hidden until the lease ends, then come back.
    let now = t0 + Duration::minutes(8) + Duration::seconds(10);
    assert!(
        store
            .claim_due_deadlines(now, 10, lease)
            .await
            .expect("claim")
            .is_empty()
    );
    let again = store
        .claim_due_deadlines(t0 + Duration::minutes(9), 10, lease)
        .await
        .expect("claim after lease");
    assert_eq!(again.len(), 3);

    // The next append on stream a clears one row and moves another (un-claiming it).
    let mut next = req(&a, ExpectedVersion::Exact(1), events(1));
    next.deadlines = vec![
        DeadlineChange {
            key: "respond#1/warn".into(),
            due_at: None,
        },
        set("respond#1/breach", t0 + Duration::minutes(28)),
    ];
    store.append(vec![next]).await.expect("append a again");
    store
        .delete_deadline(&b, "respond#1/breach")
        .await
        .expect("delete");
    assert_eq!(
        store.deadline_summary().await.expect("summary"),
        (2, Some(t0 + Duration::minutes(28)))
    );
    let moved = store
        .claim_due_deadlines(t0 + Duration::minutes(28), 10, lease)
        .await
        .expect("claim moved");
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].key, "respond#1/breach");
}
