//! Duplicate and reordered client retries: a command retried concurrently is applied
//! once and every copy gets the first answer; retries arriving after later commands
//! (in reverse order, after the case moved on) are answered from the first outcome and
//! change nothing — they are never decided again on the changed case.

use crate::both_backends;
use crate::support::{Backend, Client, spawn_app};
use whistle_proto::v1 as pb;
use whistle_store::EventStore;

both_backends!(duplicate_and_reordered_retries_are_answered_from_the_first_outcome);

async fn report(c: &Client, key: &str) -> Result<pb::ReportCaseResponse, tonic::Status> {
    c.report("leak_from_above", "hongqi-jiayuan-b3-u2", "retried", key)
        .await
}

async fn sign_for(c: &Client, case_id: &str, key: &str) -> Result<pb::CommandAck, tonic::Status> {
    let req = pb::CaseCommandRequest {
        case_id: case_id.into(),
        expected_version: None,
        idempotency_key: key.into(),
    };
    c.handling()
        .acknowledge_case(c.req(req))
        .await
        .map(|r| r.into_inner())
}

async fn escalate(c: &Client, case_id: &str, key: &str) -> Result<pb::CommandAck, tonic::Status> {
    let req = pb::ReasonRequest {
        case_id: case_id.into(),
        expected_version: None,
        idempotency_key: key.into(),
        reason: "needs the building unit".into(),
    };
    c.handling()
        .escalate_case(c.req(req))
        .await
        .map(|r| r.into_inner())
}

/// The answer with the replay flag cleared: a retry gets the first answer, marked
/// `replayed`.
fn as_first<T: Clone>(answer: &T, ack: impl Fn(&mut T) -> &mut pb::CommandAck) -> T {
    let mut a = answer.clone();
    ack(&mut a).replayed = false;
    a
}

fn report_ack(r: &mut pb::ReportCaseResponse) -> &mut pb::CommandAck {
    r.ack.as_mut().expect("ack")
}

fn ack(a: &mut pb::CommandAck) -> &mut pb::CommandAck {
    a
}

async fn duplicate_and_reordered_retries_are_answered_from_the_first_outcome(b: Backend) {
    let app = spawn_app(&b).await;
    let gw = app.client("gw-lin").await;
    let wang = app.client("h-wang").await;

    // Eight copies of one report at once: one case, one answer for all.
    let copies: Vec<_> = (0..8)
        .map(|_| {
            let gw = gw.clone();
            tokio::spawn(async move { report(&gw, "dup-1").await })
        })
        .collect();
    let mut answers = Vec::new();
    for c in copies {
        answers.push(c.await.expect("task").expect("report"));
    }
    let fresh = answers
        .iter()
        .filter(|a| !a.ack.as_ref().expect("ack").replayed)
        .count();
    assert_eq!(fresh, 1, "one copy decided, seven replayed: {answers:?}");
    let first_answer = as_first(&answers[0], report_ack);
    assert!(
        answers
            .iter()
            .all(|a| as_first(a, report_ack) == first_answer),
        "every copy got the first answer: {answers:?}"
    );
    let after_dup = app.event_count().await;

    // In order: two reports, sign for the first, escalate it.
    let first = report(&gw, "k1").await.expect("k1");
    let second = report(&gw, "k2").await.expect("k2");
    let c1 = first.ack.clone().expect("ack").case_id;
    let signed = sign_for(&wang, &c1, "a1").await.expect("a1");
    let escalated = escalate(&wang, &c1, "e1").await.expect("e1");
    let count = app.event_count().await;
    assert!(count > after_dup);

    // The retries, newest first. Signing for again would now be refused (the case left
    // wang's rung): the answer must come from the first outcome, not a new decision.
    let again = escalate(&wang, &c1, "e1").await.expect("e1 again");
    assert!(again.replayed);
    assert_eq!(as_first(&again, ack), escalated);
    let again = sign_for(&wang, &c1, "a1").await.expect("a1 again");
    assert!(again.replayed);
    assert_eq!(as_first(&again, ack), signed);
    let again = report(&gw, "k2").await.expect("k2 again");
    assert_eq!(as_first(&again, report_ack), second);
    let again = report(&gw, "k1").await.expect("k1 again");
    assert_eq!(as_first(&again, report_ack), first);
    assert!(
        sign_for(&wang, &c1, "a1-new").await.is_err(),
        "a fresh sign-for is decided on the case as it is now"
    );
    assert_eq!(app.event_count().await, count, "the retries wrote nothing");
    let store = b.store().await;
    let reported = store.count_events().await.expect("count");
    assert_eq!(reported, count);
    app.stop().await;
}
