//! The JSON form of events is the stored history: every variant round-trips, its `type`
//! tag is its event type, and the shape of the payload does not drift.

use crate::fixtures::*;
use serde_json::json;
use whistle_domain::{
    CategoryCode, Channel, DepartmentId, EscalationCause, Event, EventBody, GridId, Level, OrgId,
    PolicyClass, Satisfaction, Urgency,
};

/// One sample of every variant. The exhaustive match in [`variant`] fails to compile when a
/// variant is added, and the test below fails when a sample is missing.
fn samples() -> Vec<EventBody> {
    vec![
        EventBody::CaseReported {
            case_id: case_id(CASE),
            category: CategoryCode::new(LIFT),
            policy_class: PolicyClass::Urgent,
            requested_urgency: Some(Urgency::Urgent),
            location: OrgId::new("cp1-b1-u1"),
            compound: OrgId::new(CP1),
            grid: Some(GridId::new(GRID_CP1_B1)),
            channel: Channel::GridWorker,
            description: "电梯困人 \"quoted\" \\ and\nnewline".into(),
            level: Level::Escalated,
            fast_channel: true,
            contact: None,
        },
        EventBody::CaseAssigned {
            level: Level::Neighbour,
            handler: hp("h-1"),
        },
        EventBody::CaseAcknowledged {
            level: Level::Escalated,
            handler: hd(DEPT_FIRE),
        },
        EventBody::ArrivedOnSite {
            level: Level::Unit,
            handler: hp("h-2"),
        },
        EventBody::NoteAdded {
            text: "note".into(),
            evidence: vec![ev(1), ev(2)],
        },
        EventBody::CaseResolved {
            level: Level::Branch,
            handler: hp("h-1"),
            summary: "fixed".into(),
            evidence: vec![ev(3)],
        },
        EventBody::ResolutionConfirmed {
            satisfaction: Satisfaction::new(4).unwrap(),
            comment: "".into(),
        },
        EventBody::CaseReopened {
            reason: "again".into(),
        },
        EventBody::CaseEscalated {
            from: Level::Neighbour,
            to: Level::Unit,
            cause: EscalationCause::Requested {
                reason: "beyond us".into(),
            },
        },
        EventBody::CaseTransferred {
            level: Level::Escalated,
            from: hd(DEPT_FIRE),
            to: hp("officer-1"),
            reason: "兜底".into(),
        },
        EventBody::CaseDeclined {
            department: DepartmentId::new(DEPT_GAS),
            reason: "not ours".into(),
        },
        EventBody::ClockPaused {
            reason: "weather".into(),
        },
        EventBody::ClockResumed {
            paused_seconds: 12_307,
        },
        EventBody::CaseWithdrawn {
            reason: "solved".into(),
        },
        EventBody::CaseRejected {
            reason: "invalid".into(),
        },
        EventBody::CaseMerged {
            into: case_id(OTHER_CASE),
            reason: "duplicate".into(),
        },
        EventBody::DuplicateMerged {
            duplicate: case_id(CASE),
        },
        // A second escalation cause, so both causes are covered.
        EventBody::CaseEscalated {
            from: Level::Branch,
            to: Level::Escalated,
            cause: EscalationCause::MilestoneBreached {
                milestone: "respond".into(),
            },
        },
        EventBody::CaseReported {
            case_id: case_id(7),
            category: CategoryCode::new(NOISE),
            policy_class: PolicyClass::Routine,
            requested_urgency: None,
            location: OrgId::new(CP2),
            compound: OrgId::new(CP2),
            grid: None,
            channel: Channel::WalkIn,
            description: "x".into(),
            level: Level::Neighbour,
            fast_channel: false,
            contact: None,
        },
        EventBody::MilestoneStarted {
            key: "respond@neighbour#1".into(),
            milestone: "respond".into(),
            scope: whistle_domain::ClockScope::Rung,
            level: Level::Neighbour,
            policy: "83012-routine".into(),
            policy_version: 3,
            target_seconds: 480,
            calendar: "24x7".into(),
            warn_at: T0 + time::Duration::seconds(360),
            deadline: T0 + time::Duration::seconds(480),
            on_breach: whistle_domain::BreachAction::Escalate,
        },
        EventBody::MilestoneMet {
            key: "respond@neighbour#1".into(),
            on_time: true,
        },
        EventBody::MilestoneWarned {
            key: "respond@unit#3".into(),
        },
        EventBody::MilestoneBreached {
            key: "respond@unit#3".into(),
        },
        EventBody::MilestoneCancelled {
            key: "on_site@unit#4".into(),
            reason: "rung left".into(),
        },
        EventBody::DeadlineShifted {
            key: "resolve@neighbour#2".into(),
            paused_seconds: 1200,
            warn_at: T0 + time::Duration::hours(18),
            deadline: T0 + time::Duration::hours(24) + time::Duration::minutes(20),
        },
        EventBody::CaseTakenOver {
            principal: whistle_domain::PrincipalId::new("district-duty"),
            milestone: "respond".into(),
        },
        EventBody::DeliveryFailed {
            department: DepartmentId::new(DEPT_FIRE),
            event_id: "01950000-0000-7000-8000-0000000000aa".into(),
            deliveries: 5,
        },
        EventBody::ContactErased {
            contact: whistle_domain::ContactId(uuid::Uuid::from_u128(0xc0)),
            reason: "the resident asked".into(),
        },
    ]
}

fn variant(b: &EventBody) -> usize {
    match b {
        EventBody::CaseReported { .. } => 0,
        EventBody::CaseAssigned { .. } => 1,
        EventBody::CaseAcknowledged { .. } => 2,
        EventBody::ArrivedOnSite { .. } => 3,
        EventBody::NoteAdded { .. } => 4,
        EventBody::CaseResolved { .. } => 5,
        EventBody::ResolutionConfirmed { .. } => 6,
        EventBody::CaseReopened { .. } => 7,
        EventBody::CaseEscalated { .. } => 8,
        EventBody::CaseTransferred { .. } => 9,
        EventBody::CaseDeclined { .. } => 10,
        EventBody::ClockPaused { .. } => 11,
        EventBody::ClockResumed { .. } => 12,
        EventBody::CaseWithdrawn { .. } => 13,
        EventBody::CaseRejected { .. } => 14,
        EventBody::CaseMerged { .. } => 15,
        EventBody::DuplicateMerged { .. } => 16,
        EventBody::MilestoneStarted { .. } => 17,
        EventBody::MilestoneMet { .. } => 18,
        EventBody::MilestoneWarned { .. } => 19,
        EventBody::MilestoneBreached { .. } => 20,
        EventBody::MilestoneCancelled { .. } => 21,
        EventBody::DeadlineShifted { .. } => 22,
        EventBody::CaseTakenOver { .. } => 23,
        EventBody::DeliveryFailed { .. } => 24,
        EventBody::ContactErased { .. } => 25,
    }
}
const VARIANTS: usize = 26;

#[test]
fn every_event_body_round_trips_and_is_tagged_with_its_type() {
    let samples = samples();
    let mut seen = [false; VARIANTS];
    let mut types = std::collections::BTreeSet::new();
    for body in &samples {
        seen[variant(body)] = true;
        let value = serde_json::to_value(body).unwrap();
        assert_eq!(
            value["type"],
            json!(body.event_type()),
            "{}",
            body.event_type()
        );
        let text = serde_json::to_string(body).unwrap();
        let back: EventBody = serde_json::from_str(&text).unwrap();
        assert_eq!(&back, body);
        types.insert(body.event_type());
    }
    assert!(seen.iter().all(|s| *s), "samples miss variants: {seen:?}");
    assert_eq!(types.len(), VARIANTS, "event type names are distinct");
}

#[test]
fn whole_events_round_trip() {
    for (i, body) in samples().into_iter().enumerate() {
        let actor = if i % 2 == 0 { fire() } else { supervisor() };
        let e = Event {
            actor,
            occurred_at: T0 + time::Duration::seconds(i as i64 * 61),
            body,
        };
        let back: Event = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }
}

#[test]
fn stored_json_shape_is_stable() {
    // Renaming a variant or a field breaks stored history: pin a few payloads exactly.
    let reported = &samples()[0];
    assert_eq!(
        serde_json::to_value(reported).unwrap(),
        json!({
            "type": "CaseReported",
            "case_id": case_id(CASE).0.to_string(),
            "category": "lift_fault",
            "policy_class": "urgent",
            "requested_urgency": "urgent",
            "location": "cp1-b1-u1",
            "compound": "cp1",
            "grid": "g-cp1-b1",
            "channel": "grid_worker",
            "description": "电梯困人 \"quoted\" \\ and\nnewline",
            "level": "ESCALATED",
            "fast_channel": true,
        })
    );
    assert_eq!(
        serde_json::to_value(&samples()[17]).unwrap(),
        json!({
            "type": "CaseEscalated",
            "from": "BRANCH",
            "to": "ESCALATED",
            "cause": {"kind": "milestone_breached", "milestone": "respond"},
        })
    );
    assert_eq!(
        serde_json::to_value(&samples()[9]).unwrap(),
        json!({
            "type": "CaseTransferred",
            "level": "ESCALATED",
            "from": {"kind": "department", "id": "fire"},
            "to": {"kind": "principal", "id": "officer-1"},
            "reason": "兜底",
        })
    );
    assert_eq!(
        serde_json::to_value(&samples()[6]).unwrap(),
        json!({"type": "ResolutionConfirmed", "satisfaction": 4, "comment": ""})
    );
}

#[test]
fn stored_json_is_validated_on_the_way_in() {
    // Satisfaction outside 1..=5 cannot be smuggled in through stored JSON.
    for bad in [0, 6, 255] {
        let text = format!(r#"{{"type":"ResolutionConfirmed","satisfaction":{bad},"comment":""}}"#);
        assert!(serde_json::from_str::<EventBody>(&text).is_err(), "{bad}");
    }
    for bad in [
        r#"{"type":"CaseFrobbed"}"#,
        r#"{"type":"CaseEscalated","from":"NEIGHBOUR","to":"SKY","cause":{"kind":"requested","reason":"x"}}"#,
        r#"{"type":"CaseAssigned","level":"UNIT","handler":{"kind":"robot","id":"x"}}"#,
        r#"{"type":"ClockPaused"}"#,
    ] {
        assert!(serde_json::from_str::<EventBody>(bad).is_err(), "{bad}");
    }
    let ok = r#"{"type":"ClockResumed","paused_seconds":5}"#;
    assert_eq!(
        serde_json::from_str::<EventBody>(ok).unwrap(),
        EventBody::ClockResumed { paused_seconds: 5 }
    );
}
