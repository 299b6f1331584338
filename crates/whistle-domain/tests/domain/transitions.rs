//! Table-driven transition tests: every command in every relevant state, allowed and
//! refused, with the exact event types produced (and, via `then`, the state they lead to).

use crate::fixtures::*;
use std::panic::{AssertUnwindSafe, catch_unwind};
use whistle_domain::{
    Actor, Case, Closure, Command, DomainError, Event, Level, MergeCase, Role, Stage, Status,
    decide_merge,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok(Vec<&'static str>),
    Invalid(&'static str),
    NotFound,
    AlreadyExists,
    Forbidden,
    Transition,
}

use Outcome::{AlreadyExists, Forbidden, Invalid, NotFound, Transition};

pub fn ok(types: &[&'static str]) -> Outcome {
    Outcome::Ok(types.to_vec())
}

pub fn outcome(r: &Result<Vec<Event>, DomainError>) -> Outcome {
    match r {
        Ok(events) => Outcome::Ok(events.iter().map(|e| e.body.event_type()).collect()),
        Err(DomainError::Invalid { field, .. }) => Invalid(field),
        Err(DomainError::NotFound) => NotFound,
        Err(DomainError::AlreadyExists) => AlreadyExists,
        Err(DomainError::Forbidden(_)) => Forbidden,
        Err(DomainError::Transition { .. }) => Transition,
    }
}

pub struct Row {
    name: String,
    setup: Setup,
    actor: Actor,
    cmd: Command,
    expect: Outcome,
    then: Option<fn(&Case)>,
}

fn row(name: impl Into<String>, setup: Setup, actor: Actor, cmd: Command, expect: Outcome) -> Row {
    Row {
        name: name.into(),
        setup,
        actor,
        cmd,
        expect,
        then: None,
    }
}

impl Row {
    /// A check on the case after the row's events are folded in.
    fn then(mut self, f: fn(&Case)) -> Row {
        self.then = Some(f);
        self
    }
}

fn long(n: usize) -> String {
    "长".repeat(n)
}

type Setup = fn() -> Sim;

const CLOSURES: [(&str, Setup); 4] = [
    ("confirmed", closed_confirmed),
    ("withdrawn", closed_withdrawn),
    ("rejected", closed_rejected),
    ("merged", closed_merged),
];

#[rustfmt::skip]
fn table() -> Vec<Row> {
    let mut t = vec![
        // ---- ReportCase ------------------------------------------------------------
        row("report: new case", nothing, reporter(), report_cmd(NOISE, "cp1-b1-u1", None), ok(&["CaseReported"]))
            .then(|c| {
                assert_eq!(c.status, Status::Open(Stage::Unassigned));
                assert_eq!(c.reporter.as_str(), "res-1");
                assert_eq!(c.version, 1);
            }),
        row("report: by a grid worker", nothing, grid_worker(), report_cmd(LIFT, "cp2", None), ok(&["CaseReported"]))
            .then(|c| assert_eq!(c.reporter.as_str(), "gw-1")),
        row("report: by a handler", nothing, h1(), report_cmd(LIFT, "cp2-b1", None), ok(&["CaseReported"])),
        row("report: existing case", unassigned, reporter(), report_cmd(NOISE, "cp1-b1-u1", None), AlreadyExists),
        row("report: existing case under another id", unassigned, reporter(),
            report_with(OTHER_CASE, NOISE, "cp1", None, "again"), AlreadyExists),
        row("report: unknown category", nothing, reporter(), report_cmd("no_such", "cp1", None), Invalid("category")),
        row("report: street as location", nothing, reporter(), report_cmd(NOISE, STREET, None), Invalid("location")),

        // ---- AssignCase ------------------------------------------------------------
        row("assign: unassigned to h1", unassigned, supervisor(), assign(hp("h-1")), ok(&["CaseAssigned"]))
            .then(|c| assert_eq!(c.status, Status::Open(Stage::Assigned(hp("h-1"))))),
        row("assign: by the system (routing)", unassigned, system(), assign(hp("h-1")), ok(&["CaseAssigned"])),
        row("assign: re-assign assigned", assigned_h1, supervisor(), assign(hp("h-2")), ok(&["CaseAssigned"]))
            .then(|c| assert_eq!(c.handler(), Some(&hp("h-2")))),
        row("assign: to the current holder", assigned_h1, supervisor(), assign(hp("h-1")), Transition),
        row("assign: to the current signer", acked_h1, admin(), assign(hp("h-1")), Transition),
        row("assign: re-assign acknowledged", acked_h1, supervisor(), assign(hp("h-2")), ok(&["CaseAssigned"]))
            .then(|c| assert_eq!(c.status, Status::Open(Stage::Assigned(hp("h-2"))))),
        row("assign: department below ESCALATED", unassigned, supervisor(), assign(hd(DEPT_FIRE)), Invalid("handler")),
        row("assign: malformed principal id", unassigned, supervisor(), assign(hp("bad id!")), Invalid("handler")),
        row("assign: department at ESCALATED", esc_unassigned, supervisor(), assign(hd(DEPT_FIRE)), ok(&["CaseAssigned"]))
            .then(|c| assert_eq!(c.handler(), Some(&hd(DEPT_FIRE)))),
        row("assign: unknown department", esc_unassigned, supervisor(), assign(hd("police")), Invalid("handler")),
        row("assign: district officer at ESCALATED", esc_declined_fire, supervisor(), assign(hp("officer-1")), ok(&["CaseAssigned"])),
        row("assign: declined department again", esc_declined_fire, supervisor(), assign(hd(DEPT_FIRE)), ok(&["CaseAssigned"])),
        row("assign: while paused", paused_unassigned, supervisor(), assign(hp("h-1")), ok(&["CaseAssigned"]))
            .then(|c| assert!(c.paused.is_some(), "assigning does not resume the clock")),
        row("assign: resolved", resolved_h1, supervisor(), assign(hp("h-2")), Transition),

        // ---- AcknowledgeCase -------------------------------------------------------
        row("ack: claim unassigned", unassigned, h1(), Command::Acknowledge, ok(&["CaseAcknowledged"]))
            .then(|c| assert_eq!(c.status, Status::Open(Stage::Acknowledged(hp("h-1"))))),
        row("ack: assigned to me", assigned_h1, h1(), Command::Acknowledge, ok(&["CaseAcknowledged"]))
            .then(|c| assert_eq!(c.status, Status::Open(Stage::Acknowledged(hp("h-1"))))),
        row("ack: assigned to someone else", assigned_h1, h2(), Command::Acknowledge, Forbidden),
        row("ack: already acknowledged", acked_h1, h1(), Command::Acknowledge, Transition),
        row("ack: already acknowledged, by another", acked_h1, h2(), Command::Acknowledge, Transition),
        row("ack: on site", on_site_h1, h1(), Command::Acknowledge, Transition),
        row("ack: while paused", paused_acked_h1, h1(), Command::Acknowledge, Transition),
        row("ack: unassigned while paused", paused_unassigned, h1(), Command::Acknowledge, Transition),
        row("ack: resolved", resolved_h1, h1(), Command::Acknowledge, Transition),
        row("ack: department below ESCALATED", unassigned, fire(), Command::Acknowledge, NotFound),
        row("ack: department below ESCALATED, assigned", Sim::at_branch, fire(), Command::Acknowledge, NotFound),
        row("ack: handler at ESCALATED", esc_unassigned, h1(), Command::Acknowledge, Forbidden),
        row("ack: department claims at ESCALATED", esc_unassigned, gas(), Command::Acknowledge, ok(&["CaseAcknowledged"]))
            .then(|c| assert_eq!(c.status, Status::Open(Stage::Acknowledged(hd(DEPT_GAS))))),
        row("ack: department without a department", esc_unassigned, stray_dept(), Command::Acknowledge, Forbidden),
        row("ack: another account of the assigned department", esc_assigned_fire, fire2(), Command::Acknowledge, ok(&["CaseAcknowledged"]))
            .then(|c| assert_eq!(c.handler(), Some(&hd(DEPT_FIRE)))),
        row("ack: department it is not dispatched to", esc_assigned_fire, gas(), Command::Acknowledge, NotFound),
        row("ack: declined department reclaims", esc_declined_fire, fire(), Command::Acknowledge, Forbidden),
        row("ack: declined department reclaims via another account", esc_declined_fire, fire2(), Command::Acknowledge, Forbidden),
        row("ack: another department after a decline", esc_declined_fire, chengguan(), Command::Acknowledge, ok(&["CaseAcknowledged"])),
        row("ack: declined department re-assigned by dispatcher",
            || { let mut s = esc_declined_fire(); s.ok(&supervisor(), assign(hd(DEPT_FIRE))); s },
            fire(), Command::Acknowledge, ok(&["CaseAcknowledged"])),
        row("ack: district officer assigned at ESCALATED (兜底)", esc_assigned_officer, officer(), Command::Acknowledge, ok(&["CaseAcknowledged"]))
            .then(|c| assert_eq!(c.status, Status::Open(Stage::Acknowledged(hp("officer-1"))))),
        row("ack: handler not assigned at ESCALATED", esc_assigned_officer, h1(), Command::Acknowledge, Forbidden),
        row("ack: department when the officer holds it", esc_assigned_officer, fire(), Command::Acknowledge, Forbidden),

        // ---- ArriveOnSite ----------------------------------------------------------
        row("on site: holder", acked_h1, h1(), Command::ArriveOnSite, ok(&["ArrivedOnSite"]))
            .then(|c| assert_eq!(c.status, Status::Open(Stage::OnSite(hp("h-1"))))),
        row("on site: not the holder", acked_h1, h2(), Command::ArriveOnSite, Forbidden),
        row("on site: assigned, not signed", assigned_h1, h1(), Command::ArriveOnSite, Transition),
        row("on site: assigned to another", assigned_h1, h2(), Command::ArriveOnSite, Forbidden),
        row("on site: unassigned", unassigned, h1(), Command::ArriveOnSite, Transition),
        row("on site: already on site", on_site_h1, h1(), Command::ArriveOnSite, Transition),
        row("on site: on site, another", on_site_h1, h2(), Command::ArriveOnSite, Forbidden),
        row("on site: while paused", paused_acked_h1, h1(), Command::ArriveOnSite, Transition),
        row("on site: resolved", resolved_h1, h1(), Command::ArriveOnSite, Transition),
        row("on site: department account of the holder", esc_acked_fire, fire2(), Command::ArriveOnSite, ok(&["ArrivedOnSite"]))
            .then(|c| assert_eq!(c.status, Status::Open(Stage::OnSite(hd(DEPT_FIRE))))),
        row("on site: other department", esc_acked_fire, gas(), Command::ArriveOnSite, NotFound),
        row("on site: district officer", esc_acked_officer, officer(), Command::ArriveOnSite, ok(&["ArrivedOnSite"])),

        // ---- AddNote ---------------------------------------------------------------
        row("note: open case", unassigned, reporter(), note("still noisy"), ok(&["NoteAdded"]))
            .then(|c| assert_eq!(c.notes, 1)),
        row("note: resolved case", resolved_h1, h1(), note("follow-up"), ok(&["NoteAdded"])),
        row("note: paused case", paused_acked_h1, supervisor(), note("waiting"), ok(&["NoteAdded"]))
            .then(|c| assert!(c.paused.is_some())),
        row("note: empty", unassigned, reporter(), note(" \n\t "), Invalid("text")),
        row("note: 4001 chars", unassigned, reporter(), note(&long(4001)), Invalid("text")),
        row("note: 4000 chars", unassigned, reporter(), note(&long(4000)), ok(&["NoteAdded"])),
        row("note: 10 evidence items", unassigned, grid_worker(),
            Command::AddNote { text: "photos".into(), evidence: (0..10).map(ev).collect() }, ok(&["NoteAdded"])),
        row("note: 11 evidence items", unassigned, grid_worker(),
            Command::AddNote { text: "photos".into(), evidence: (0..11).map(ev).collect() }, Invalid("evidence")),

        // ---- ResolveCase -----------------------------------------------------------
        row("resolve: before acknowledge (unassigned)", unassigned, h1(), resolve(), Transition),
        row("resolve: before acknowledge (assigned)", assigned_h1, h1(), resolve(), Transition),
        row("resolve: acknowledged", acked_h1, h1(), resolve(), ok(&["CaseResolved"]))
            .then(|c| {
                assert_eq!(c.status, Status::Resolved { by: hp("h-1") });
                assert!(c.resolved_at.is_some());
            }),
        row("resolve: on site", on_site_h1, h1(), resolve(), ok(&["CaseResolved"])),
        row("resolve: not the holder", acked_h1, h2(), resolve(), Forbidden),
        row("resolve: assigned to another", assigned_h1, h2(), resolve(), Forbidden),
        row("resolve: while paused", paused_acked_h1, h1(), resolve(), Transition),
        row("resolve: already resolved", resolved_h1, h1(), resolve(), Transition),
        row("resolve: empty summary", acked_h1, h1(), Command::Resolve { summary: "".into(), evidence: vec![] }, Invalid("summary")),
        row("resolve: bad evidence", acked_h1, h1(),
            Command::Resolve { summary: "done".into(), evidence: vec![whistle_domain::Evidence { url: "ftp://x.example/a".into(), sha256: "0".repeat(64) }] },
            Invalid("evidence")),
        row("resolve: department account", esc_on_site_fire, fire2(), resolve(), ok(&["CaseResolved"]))
            .then(|c| assert_eq!(c.status, Status::Resolved { by: hd(DEPT_FIRE) })),
        row("resolve: other department", esc_acked_fire, gas(), resolve(), NotFound),
        row("resolve: handler at ESCALATED", esc_acked_fire, h1(), resolve(), Forbidden),
        row("resolve: district officer", esc_acked_officer, officer(), resolve(), ok(&["CaseResolved"])),

        // ---- ConfirmResolution ----------------------------------------------------
        row("confirm: reporter", resolved_h1, reporter(), confirm(5), ok(&["ResolutionConfirmed"]))
            .then(|c| {
                assert_eq!(c.status, Status::Closed(Closure::Confirmed { satisfaction: whistle_domain::Satisfaction::new(5).unwrap() }));
                assert!(c.closed_at.is_some());
                assert_eq!(c.handler(), None);
            }),
        row("confirm: satisfaction 1", resolved_h1, reporter(), confirm(1), ok(&["ResolutionConfirmed"])),
        row("confirm: satisfaction 0", resolved_h1, reporter(), confirm(0), Invalid("satisfaction")),
        row("confirm: satisfaction 6", resolved_h1, reporter(), confirm(6), Invalid("satisfaction")),
        row("confirm: satisfaction 255", resolved_h1, reporter(), confirm(255), Invalid("satisfaction")),
        row("confirm: resident who is not the reporter", resolved_h1, other_resident(), confirm(5), NotFound),
        row("confirm: grid worker", resolved_h1, grid_worker(), confirm(3), ok(&["ResolutionConfirmed"])),
        row("confirm: control characters in comment", resolved_h1, reporter(),
            Command::Confirm { satisfaction: 5, comment: "ok\u{7}".into() }, Invalid("comment")),
        row("confirm: empty comment", resolved_h1, reporter(),
            Command::Confirm { satisfaction: 5, comment: "".into() }, ok(&["ResolutionConfirmed"])),
        row("confirm: open case", acked_h1, reporter(), confirm(5), Transition),
        row("confirm: open case, bad satisfaction", acked_h1, reporter(), confirm(0), Invalid("satisfaction")),
        row("confirm: after a department resolved", esc_resolved_fire, reporter(), confirm(2), ok(&["ResolutionConfirmed"])),

        // ---- ReopenCase ------------------------------------------------------------
        row("reopen: open case", acked_h1, reporter(), reopen(), Transition),
        row("reopen: unassigned case", unassigned, supervisor(), reopen(), Transition),
        row("reopen: resolved, back to the resolver", resolved_h1, reporter(), reopen(), ok(&["CaseReopened"]))
            .then(|c| {
                assert_eq!(c.status, Status::Open(Stage::Assigned(hp("h-1"))));
                assert_eq!(c.resolved_at, None);
                assert_eq!(c.reopen_count, 1);
            }),
        row("reopen: confirmed, back to the rung's queue", closed_confirmed, reporter(), reopen(), ok(&["CaseReopened"]))
            .then(|c| {
                assert_eq!(c.status, Status::Open(Stage::Unassigned));
                assert_eq!(c.level, Level::Neighbour);
                assert_eq!(c.closed_at, None);
                assert_eq!(c.resolved_at, None);
            }),
        row("reopen: withdrawn", closed_withdrawn, supervisor(), reopen(), ok(&["CaseReopened"])),
        row("reopen: rejected", closed_rejected, reporter(), reopen(), ok(&["CaseReopened"])),
        row("reopen: merged", closed_merged, supervisor(), reopen(), Transition),
        row("reopen: resident who is not the reporter", closed_confirmed, other_resident(), reopen(), NotFound),
        row("reopen: grid worker", closed_confirmed, grid_worker(), reopen(), ok(&["CaseReopened"])),
        row("reopen: empty reason", closed_confirmed, reporter(), Command::Reopen { reason: "  ".into() }, Invalid("reason")),

        // ---- EscalateCase ----------------------------------------------------------
        row("escalate: claimer of the rung, unassigned", unassigned, h1(), escalate(), ok(&["CaseEscalated"]))
            .then(|c| {
                assert_eq!(c.level, Level::Unit);
                assert_eq!(c.status, Status::Open(Stage::Unassigned));
                assert_eq!(c.escalations, 1);
            }),
        row("escalate: assigned to me, not signed", assigned_h1, h1(), escalate(), ok(&["CaseEscalated"])),
        row("escalate: holder", acked_h1, h1(), escalate(), ok(&["CaseEscalated"]))
            .then(|c| {
                assert_eq!(c.level, Level::Unit);
                assert_eq!(c.handler(), None, "a new rung starts unassigned");
            }),
        row("escalate: not the holder", acked_h1, h2(), escalate(), Forbidden),
        row("escalate: supervisor", acked_h1, supervisor(), escalate(), ok(&["CaseEscalated"])),
        row("escalate: admin", unassigned, admin(), escalate(), ok(&["CaseEscalated"])),
        row("escalate: UNIT to BRANCH", Sim::at_unit, h1(), escalate(), ok(&["CaseEscalated"]))
            .then(|c| assert_eq!(c.level, Level::Branch)),
        row("escalate: BRANCH to ESCALATED", Sim::at_branch, h2(), escalate(), ok(&["CaseEscalated"]))
            .then(|c| assert_eq!(c.level, Level::Escalated)),
        row("escalate: at ESCALATED", esc_unassigned, supervisor(), escalate(), Transition),
        row("escalate: at ESCALATED, held", esc_acked_fire, admin(), escalate(), Transition),
        row("escalate: handler at ESCALATED", esc_unassigned, h1(), escalate(), Forbidden),
        row("escalate: while paused", paused_acked_h1, h1(), escalate(), Transition),
        row("escalate: resolved", resolved_h1, supervisor(), escalate(), Transition),
        row("escalate: empty reason", acked_h1, h1(), Command::Escalate { reason: "".into() }, Invalid("reason")),
        row("escalate: 1001-char reason", acked_h1, h1(), Command::Escalate { reason: long(1001) }, Invalid("reason")),

        // ---- FireDeadline (clock behaviour: see the sla module) ---------------------
        row("fire: no such clock is stale, nothing happens", unassigned, system(), breach(), ok(&[])),
        row("fire: by a handler", unassigned, h1(), breach(), Forbidden),

        // ---- RecordDeliveryFailure ----------------------------------------------------
        row("delivery failed: dispatched, unsigned", esc_assigned_fire, system(), delivery_failed(DEPT_FIRE), ok(&["DeliveryFailed"])),
        row("delivery failed: signed already", esc_acked_fire, system(), delivery_failed(DEPT_FIRE), ok(&["DeliveryFailed"])),
        row("delivery failed: by a department", esc_assigned_fire, fire(), delivery_failed(DEPT_FIRE), Forbidden),
        row("delivery failed: empty event id", esc_assigned_fire, system(), Command::RecordDeliveryFailure { department: whistle_domain::DepartmentId::new(DEPT_FIRE), event_id: "".into(), deliveries: 5 }, Invalid("event_id")),

        // ---- TransferCase ----------------------------------------------------------
        row("transfer: holder", acked_h1, h1(), transfer(hp("h-2")), ok(&["CaseTransferred"]))
            .then(|c| assert_eq!(c.status, Status::Open(Stage::Assigned(hp("h-2"))))),
        row("transfer: assigned holder", assigned_h1, h1(), transfer(hp("h-2")), ok(&["CaseTransferred"])),
        row("transfer: not the holder", acked_h1, h2(), transfer(hp("h-1")), Forbidden),
        row("transfer: supervisor", acked_h1, supervisor(), transfer(hp("h-2")), ok(&["CaseTransferred"])),
        row("transfer: nobody holds it", unassigned, supervisor(), transfer(hp("h-2")), Transition),
        row("transfer: to the holder", acked_h1, h1(), transfer(hp("h-1")), Invalid("to")),
        row("transfer: to a department below ESCALATED", acked_h1, h1(), transfer(hd(DEPT_FIRE)), Invalid("to")),
        row("transfer: to a malformed principal", acked_h1, h1(), transfer(hp("")), Invalid("to")),
        row("transfer: while paused", paused_acked_h1, h1(), transfer(hp("h-2")), ok(&["CaseTransferred"])),
        row("transfer: resolved", resolved_h1, h1(), transfer(hp("h-2")), Transition),
        row("transfer: empty reason", acked_h1, h1(), Command::Transfer { to: hp("h-2"), reason: "".into() }, Invalid("reason")),
        row("transfer: department to department", esc_acked_fire, fire(), transfer(hd(DEPT_GAS)), ok(&["CaseTransferred"]))
            .then(|c| assert_eq!(c.status, Status::Open(Stage::Assigned(hd(DEPT_GAS))))),
        row("transfer: to an unknown department", esc_acked_fire, fire(), transfer(hd("police")), Invalid("to")),
        row("transfer: by a department not holding it", esc_acked_fire, gas(), transfer(hd(DEPT_GAS)), NotFound),

        // ---- DeclineCase -----------------------------------------------------------
        row("decline: dispatched department", esc_assigned_fire, fire(), decline(), ok(&["CaseDeclined"]))
            .then(|c| {
                assert_eq!(c.status, Status::Open(Stage::Unassigned));
                assert_eq!(c.declined_by, vec![whistle_domain::DepartmentId::new(DEPT_FIRE)]);
                assert_eq!(c.level, Level::Escalated);
            }),
        row("decline: after signing", esc_acked_fire, fire(), decline(), Transition),
        row("decline: after signing, another account", esc_acked_fire, fire2(), decline(), Transition),
        row("decline: on site", esc_on_site_fire, fire(), decline(), Transition),
        row("decline: by another department", esc_assigned_fire, gas(), decline(), NotFound),
        row("decline: not dispatched to anyone", esc_unassigned, fire(), decline(), Forbidden),
        row("decline: department without a department", esc_assigned_fire, stray_dept(), decline(), NotFound),
        row("decline: below ESCALATED", unassigned, fire(), decline(), NotFound),
        row("decline: resolved", esc_resolved_fire, fire(), decline(), Transition),
        row("decline: empty reason", esc_assigned_fire, fire(), Command::Decline { reason: "".into() }, Invalid("reason")),
        row("decline: twice after re-dispatch",
            || { let mut s = esc_declined_fire(); s.ok(&supervisor(), assign(hd(DEPT_FIRE))); s },
            fire2(), decline(), ok(&["CaseDeclined"]))
            .then(|c| assert_eq!(c.declined_by.len(), 1, "declined_by holds each department once")),

        // ---- PauseClock ------------------------------------------------------------
        row("pause: holder", acked_h1, h1(), pause(), ok(&["ClockPaused"]))
            .then(|c| assert_eq!(c.paused.as_ref().map(|p| p.reason.as_str()), Some("awaiting resident access"))),
        row("pause: already paused", paused_acked_h1, h1(), pause(), Transition),
        row("pause: not the holder", acked_h1, h2(), pause(), Forbidden),
        row("pause: handler of the rung, unassigned", unassigned, h1(), pause(), Transition),
        row("pause: assigned, not yet signed", assigned_h1, h1(), pause(), Transition),
        row("pause: supervisor before anyone signed", unassigned, supervisor(), pause(), ok(&["ClockPaused"])),
        row("pause: supervisor", assigned_h1, supervisor(), pause(), ok(&["ClockPaused"])),
        row("pause: resolved", resolved_h1, h1(), pause(), Transition),
        row("pause: handler at ESCALATED, unassigned", esc_unassigned, h1(), pause(), Forbidden),
        row("pause: department at ESCALATED, unassigned", esc_unassigned, fire(), pause(), Forbidden),
        row("pause: supervisor at ESCALATED", esc_unassigned, supervisor(), pause(), ok(&["ClockPaused"])),
        row("pause: holding department", esc_acked_fire, fire2(), pause(), ok(&["ClockPaused"])),
        row("pause: 1001-char reason", acked_h1, h1(), Command::Pause { reason: long(1001) }, Invalid("reason")),

        // ---- ResumeClock -----------------------------------------------------------
        row("resume: holder", paused_acked_h1, h1(), Command::Resume, ok(&["ClockResumed"]))
            .then(|c| assert_eq!(c.paused, None)),
        row("resume: not paused", acked_h1, h1(), Command::Resume, Transition),
        row("resume: not the holder", paused_acked_h1, h2(), Command::Resume, Forbidden),
        row("resume: handler of the rung, unassigned", paused_unassigned, h1(), Command::Resume, ok(&["ClockResumed"])),
        row("resume: supervisor", paused_unassigned, supervisor(), Command::Resume, ok(&["ClockResumed"])),
        row("resume: resolved", resolved_h1, supervisor(), Command::Resume, Transition),
        row("resume: handler at ESCALATED, unassigned",
            || { let mut s = esc_unassigned(); s.ok(&supervisor(), pause()); s },
            h1(), Command::Resume, Forbidden),
        row("resume: holding department",
            || { let mut s = esc_acked_fire(); s.ok(&fire(), pause()); s },
            fire2(), Command::Resume, ok(&["ClockResumed"])),

        // ---- WithdrawCase ----------------------------------------------------------
        row("withdraw: reporter", unassigned, reporter(), withdraw(), ok(&["CaseWithdrawn"]))
            .then(|c| assert_eq!(c.status, Status::Closed(Closure::Withdrawn))),
        row("withdraw: resident who is not the reporter", unassigned, other_resident(), withdraw(), NotFound),
        row("withdraw: grid worker", acked_h1, grid_worker(), withdraw(), ok(&["CaseWithdrawn"])),
        row("withdraw: resolved", resolved_h1, reporter(), withdraw(), ok(&["CaseWithdrawn"])),
        row("withdraw: while paused", paused_acked_h1, reporter(), withdraw(), ok(&["CaseWithdrawn"]))
            .then(|c| assert_eq!(c.paused, None, "closing ends the pause")),
        row("withdraw: blank reason", unassigned, reporter(), Command::Withdraw { reason: "\t".into() }, Invalid("reason")),

        // ---- RejectCase ------------------------------------------------------------
        row("reject: handler of the rung, unassigned", unassigned, h1(), reject(), ok(&["CaseRejected"]))
            .then(|c| assert_eq!(c.status, Status::Closed(Closure::Rejected))),
        row("reject: holder", acked_h1, h1(), reject(), ok(&["CaseRejected"])),
        row("reject: not the holder", acked_h1, h2(), reject(), Forbidden),
        row("reject: supervisor", acked_h1, supervisor(), reject(), ok(&["CaseRejected"])),
        row("reject: resolved", resolved_h1, supervisor(), reject(), Transition),
        row("reject: handler at ESCALATED, unassigned", esc_unassigned, h1(), reject(), Forbidden),
        row("reject: holding department (not a department's call)", esc_acked_fire, fire(), reject(), Forbidden),
        row("reject: supervisor at ESCALATED", esc_acked_fire, supervisor(), reject(), ok(&["CaseRejected"])),
        row("reject: empty reason", unassigned, supervisor(), Command::Reject { reason: "".into() }, Invalid("reason")),

        // ---- EraseContact ----------------------------------------------------------
        row("erase: admin, contact on file", with_contact, admin(), erase(), ok(&["ContactErased"]))
            .then(|c| {
                assert_eq!(c.contact, None);
                assert!(c.contact_erased);
            }),
        row("erase: twice", || { let mut s = with_contact(); s.ok(&admin(), erase()); s }, admin(), erase(), Transition),
        row("erase: no contact on file", unassigned, admin(), erase(), Transition),
        row("erase: closed case", || { let mut s = with_contact(); s.ok(&reporter(), withdraw()); s }, admin(), erase(), ok(&["ContactErased"])),
        row("erase: not an admin", with_contact, supervisor(), erase(), Forbidden),
        row("erase: empty reason", with_contact, admin(), Command::EraseContact { reason: " ".into() }, Invalid("reason")),
    ];

    // Every command but reopen on a closed case, for each closure kind. (Actors who cannot
    // see a case — a resident who did not report it, a department it was never dispatched
    // to — get NotFound before any rule: whistle_domain::scope.)
    for (kind, setup) in CLOSURES {
        for (cmd, actor) in every_command() {
            let expect = match &cmd {
                Command::Report { .. } => AlreadyExists,
                Command::Reopen { .. } if kind == "merged" => Transition,
                Command::Reopen { .. } => ok(&["CaseReopened"]),
                // The acting department never held these cases: for it they do not exist.
                Command::Decline { .. } => NotFound,
                _ => Transition,
            };
            t.push(row(format!("closed ({kind}): {}", cmd.name()), setup, actor, cmd, expect));
        }
    }
    // Every command but report on a case that was never reported.
    for (cmd, actor) in every_command() {
        if !matches!(cmd, Command::Report { .. }) {
            t.push(row(format!("nothing: {}", cmd.name()), nothing, actor, cmd, NotFound));
        }
    }
    t
}

impl Sim {
    fn at_unit() -> Sim {
        Sim::at(Level::Unit)
    }
    fn at_branch() -> Sim {
        Sim::at(Level::Branch)
    }
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn transition_table() {
    let rows = table();
    let mut failures = Vec::new();
    for r in &rows {
        let mut sim = match catch_unwind(r.setup) {
            Ok(sim) => sim,
            Err(p) => {
                failures.push(format!("{}: setup failed: {}", r.name, panic_text(&p)));
                continue;
            }
        };
        let before = sim.state.clone();
        let result = sim.decide(&r.actor, &r.cmd);
        assert_eq!(
            result,
            sim.decide(&r.actor, &r.cmd),
            "{}: decide is not deterministic",
            r.name
        );
        let got = outcome(&result);
        if got != r.expect {
            failures.push(format!(
                "{}: expected {:?}, got {:?} ({:?})",
                r.name,
                r.expect,
                got,
                result.as_ref().err()
            ));
            continue;
        }
        let Ok(events) = result else {
            assert_eq!(sim.state, before);
            continue;
        };
        for e in &events {
            assert_eq!(e.actor, r.actor, "{}: event records who acted", r.name);
            assert_eq!(e.occurred_at, sim.now, "{}: event records when", r.name);
        }
        let version_before = before.as_ref().map_or(0, |c| c.version);
        sim.absorb(&events);
        let case = sim.case().clone();
        assert_eq!(
            case.version,
            version_before + events.len() as u64,
            "{}: version counts events",
            r.name
        );
        assert_eq!(sim.replayed(), sim.state, "{}: replay differs", r.name);
        if let Some(then) = r.then
            && let Err(p) = catch_unwind(AssertUnwindSafe(|| then(&case)))
        {
            failures.push(format!(
                "{}: state check failed: {}",
                r.name,
                panic_text(&p)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

/// The table names every command in `Command` at least once, and each command has at least
/// one accepted and one refused row.
#[test]
fn transition_table_covers_every_command() {
    let rows = table();
    for (cmd, _) in every_command() {
        let mine: Vec<&Row> = rows.iter().filter(|r| r.cmd.name() == cmd.name()).collect();
        assert!(
            mine.iter().any(|r| matches!(r.expect, Outcome::Ok(_))),
            "{} has no accepted row",
            cmd.name()
        );
        assert!(
            mine.iter().any(|r| !matches!(r.expect, Outcome::Ok(_))),
            "{} has no refused row",
            cmd.name()
        );
    }
    // every_command really is every command: this match breaks the build when a command
    // is added without a row.
    for (cmd, _) in every_command() {
        match cmd {
            Command::Report { .. }
            | Command::Assign { .. }
            | Command::Acknowledge
            | Command::ArriveOnSite
            | Command::AddNote { .. }
            | Command::Resolve { .. }
            | Command::Confirm { .. }
            | Command::Reopen { .. }
            | Command::Escalate { .. }
            | Command::FireDeadline { .. }
            | Command::RecordDeliveryFailure { .. }
            | Command::Transfer { .. }
            | Command::Decline { .. }
            | Command::Pause { .. }
            | Command::Resume
            | Command::Withdraw { .. }
            | Command::Reject { .. }
            | Command::EraseContact { .. } => {}
        }
    }
    let mut names: Vec<&str> = every_command().iter().map(|(c, _)| c.name()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 18);
}

// ---------------------------------------------------------------------------------------
// Roles

/// The role matrix as the product brief reads: who may issue what at all.
#[rustfmt::skip]
fn expected_roles(cmd: &Command) -> &'static [Role] {
    use Role::*;
    match cmd {
        Command::Report { .. } => &[Resident, GridWorker, Handler, Admin],
        Command::Assign { .. } => &[Supervisor, Admin, System],
        Command::Acknowledge | Command::ArriveOnSite | Command::Resolve { .. } => &[Handler, Department],
        Command::AddNote { .. } => &[Resident, GridWorker, Handler, Department, Supervisor, Admin],
        Command::Confirm { .. } => &[Resident, GridWorker],
        Command::Reopen { .. } => &[Resident, GridWorker, Supervisor, Admin],
        Command::Escalate { .. } => &[Handler, Supervisor, Admin],
        Command::FireDeadline { .. } | Command::RecordDeliveryFailure { .. } => &[System],
        Command::Transfer { .. } => &[Handler, Department, Supervisor, Admin],
        Command::Decline { .. } => &[Department],
        Command::Pause { .. } | Command::Resume => &[Handler, Department, Supervisor, Admin],
        Command::Withdraw { .. } => &[Resident, GridWorker, Admin],
        Command::Reject { .. } => &[Handler, Supervisor, Admin],
        Command::EraseContact { .. } => &[Admin],
    }
}

#[test]
fn allowed_roles_match_the_role_matrix() {
    for (cmd, _) in every_command() {
        let mut got = cmd.allowed_roles().to_vec();
        let mut want = expected_roles(&cmd).to_vec();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{}", cmd.name());
    }
    assert_eq!(
        MergeCase::ALLOWED_ROLES,
        &[Role::Handler, Role::Supervisor, Role::Admin]
    );
}

/// Every role × every command, on a fresh case (or on nothing, for a report): a role the
/// command does not allow is refused as Forbidden before anything else is looked at; a
/// role it allows is never refused for its role.
#[test]
fn wrong_role_is_forbidden_for_every_command() {
    let mut checked = 0;
    for (cmd, _) in every_command() {
        for role in Role::ALL {
            let sim = if matches!(cmd, Command::Report { .. }) {
                nothing()
            } else {
                resolved_h1()
            };
            let actor = actor_of(role);
            let r = sim.decide(&actor, &cmd);
            let role_refusal =
                matches!(&r, Err(DomainError::Forbidden(m)) if m.starts_with("role "));
            if cmd.allowed_roles().contains(&role) {
                assert!(
                    !role_refusal,
                    "{} by {role}: refused for its role: {r:?}",
                    cmd.name()
                );
            } else {
                assert!(
                    role_refusal,
                    "{} by {role}: expected a role refusal, got {r:?}",
                    cmd.name()
                );
                // Also on a case that does not exist: the role is checked first.
                assert!(matches!(
                    nothing().decide(&actor, &cmd),
                    Err(DomainError::Forbidden(_))
                ));
                checked += 1;
            }
        }
    }
    // Keep the matrix honest: most (command, role) pairs are refusals.
    assert_eq!(
        checked,
        18 * 7
            - every_command()
                .iter()
                .map(|(c, _)| c.allowed_roles().len())
                .sum::<usize>()
    );

    for role in Role::ALL {
        let dup = unassigned();
        let target = merge_target();
        let r = decide_merge(
            &dup.state,
            &target.state,
            &merge_cmd(OTHER_CASE),
            &ctx(&dup, &actor_of(role)),
        );
        if MergeCase::ALLOWED_ROLES.contains(&role) {
            assert!(r.is_ok(), "merge by {role}: {r:?}");
        } else {
            assert!(
                matches!(r, Err(DomainError::Forbidden(_))),
                "merge by {role}: {r:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// MergeCase (two streams)

fn ctx<'a>(sim: &'a Sim, actor: &'a Actor) -> whistle_domain::Ctx<'a> {
    whistle_domain::Ctx {
        district: &sim.district,
        actor,
        now: sim.now,
    }
}

fn merge_target() -> Sim {
    let mut s = Sim::new();
    s.ok(
        &reporter(),
        report_with(
            OTHER_CASE,
            NOISE,
            "cp1-b1-u2",
            None,
            "same leak, reported twice",
        ),
    );
    s
}
fn merge_target_resolved() -> Sim {
    let mut s = merge_target();
    s.ok(&h2(), Command::Acknowledge).ok(&h2(), resolve());
    s
}
fn merge_target_closed() -> Sim {
    let mut s = merge_target();
    s.ok(&reporter(), withdraw());
    s
}
fn merge_target_merged() -> Sim {
    let mut s = merge_target();
    s.merge_away_into_third();
    s
}

impl Sim {
    fn merge_away_into_third(&mut self) {
        let mut third = Sim::new();
        third.ok(&reporter(), report_with(3, NOISE, "cp2", None, "third"));
        let (dup, _) = decide_merge(
            &self.state,
            &third.state,
            &merge_cmd(3),
            &ctx(self, &admin()),
        )
        .unwrap();
        self.absorb(&dup);
    }
}

#[test]
#[rustfmt::skip]
fn merge_table() {
    type MergeRow = (&'static str, Setup, Setup, Actor, MergeCase, Result<(), Outcome>);
    let rows: Vec<MergeRow> = vec![
        ("open into open", unassigned, merge_target, supervisor(), merge_cmd(OTHER_CASE), Ok(())),
        ("by a handler", acked_h1, merge_target, h2(), merge_cmd(OTHER_CASE), Ok(())),
        ("resolved duplicate", resolved_h1, merge_target, admin(), merge_cmd(OTHER_CASE), Ok(())),
        ("into a resolved case", unassigned, merge_target_resolved, supervisor(), merge_cmd(OTHER_CASE), Ok(())),
        ("paused duplicate", paused_acked_h1, merge_target, supervisor(), merge_cmd(OTHER_CASE), Ok(())),
        ("duplicate never reported", nothing, merge_target, supervisor(), merge_cmd(OTHER_CASE), Err(NotFound)),
        ("target never reported", unassigned, nothing, supervisor(), merge_cmd(OTHER_CASE), Err(Invalid("into_case_id"))),
        ("into itself", unassigned, unassigned, supervisor(), merge_cmd(CASE), Err(Invalid("into_case_id"))),
        ("empty reason", unassigned, merge_target, supervisor(), MergeCase { into: case_id(OTHER_CASE), reason: " ".into() }, Err(Invalid("reason"))),
        ("closed duplicate (confirmed)", closed_confirmed, merge_target, supervisor(), merge_cmd(OTHER_CASE), Err(Transition)),
        ("closed duplicate (merged)", closed_merged, merge_target, supervisor(), merge_cmd(OTHER_CASE), Err(Transition)),
        ("into a closed case", unassigned, merge_target_closed, supervisor(), merge_cmd(OTHER_CASE), Err(Transition)),
        ("into a merged case", unassigned, merge_target_merged, supervisor(), merge_cmd(OTHER_CASE), Err(Transition)),
        ("by a resident", unassigned, merge_target, reporter(), merge_cmd(OTHER_CASE), Err(Forbidden)),
        ("by a department", esc_acked_fire, merge_target, fire(), merge_cmd(OTHER_CASE), Err(Forbidden)),
    ];
    for (name, dup_setup, target_setup, actor, cmd, expect) in rows {
        let mut dup = dup_setup();
        let mut target = target_setup();
        let r = decide_merge(&dup.state, &target.state, &cmd, &ctx(&dup, &actor));
        match (r, expect) {
            (Ok((d, t)), Ok(())) => {
                assert_eq!(d.iter().map(|e| e.body.event_type()).collect::<Vec<_>>(), ["CaseMerged"], "{name}");
                assert_eq!(t.iter().map(|e| e.body.event_type()).collect::<Vec<_>>(), ["DuplicateMerged"], "{name}");
                let target_id = target.case().id;
                let dup_id = dup.case().id;
                match &d[0].body {
                    whistle_domain::EventBody::CaseMerged { into, reason } => {
                        assert_eq!(*into, target_id, "{name}");
                        assert_eq!(reason, "same leak", "{name}");
                    }
                    other => panic!("{name}: {other:?}"),
                }
                assert_eq!(t[0].body, whistle_domain::EventBody::DuplicateMerged { duplicate: dup_id }, "{name}");
                for e in d.iter().chain(&t) {
                    assert_eq!(e.actor, actor, "{name}");
                    assert_eq!(e.occurred_at, dup.now, "{name}");
                }
                let target_status = target.case().status.clone();
                dup.absorb(&d);
                target.absorb(&t);
                assert_eq!(dup.case().status, Status::Closed(Closure::Merged { into: target_id }), "{name}");
                assert_eq!(dup.case().paused, None, "{name}");
                assert_eq!(target.case().duplicates, vec![dup_id], "{name}");
                assert_eq!(target.case().status, target_status, "{name}: the target's status is unchanged");
                // Merging the same duplicate twice is refused: it is closed now.
                let again = decide_merge(&dup.state, &target.state, &cmd, &ctx(&dup, &actor));
                assert_eq!(outcome_of(&again), Transition, "{name}: second merge");
            }
            (r, Err(want)) => assert_eq!(outcome_of(&r), want, "{name}"),
            (r, Ok(())) => panic!("{name}: expected success, got {r:?}"),
        }
    }
}

fn outcome_of<T>(r: &Result<T, DomainError>) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok(vec![]),
        Err(e) => outcome(&Err(e.clone())),
    }
}

// ---------------------------------------------------------------------------------------
// Payloads of the key events

#[test]
fn escalation_climbs_one_rung_at_a_time() {
    let mut sim = unassigned();
    let mut expected = Level::Neighbour;
    while let Some(to) = expected.next() {
        let actor = if expected == Level::Branch {
            h2()
        } else {
            h1()
        };
        let events = sim.apply(&actor, &escalate()).expect("escalate");
        assert_eq!(
            events[0].body,
            whistle_domain::EventBody::CaseEscalated {
                from: expected,
                to,
                cause: whistle_domain::EscalationCause::Requested {
                    reason: "beyond us".into()
                },
            }
        );
        assert_eq!(sim.case().level, to);
        expected = to;
    }
    assert_eq!(sim.case().escalations, 3);
    assert_eq!(outcome(&sim.apply(&supervisor(), &escalate())), Transition);
}

#[test]
fn resume_reports_how_long_the_clock_stood_still() {
    let mut sim = acked_h1();
    sim.ok(&h1(), pause());
    let paused_at = sim.case().paused.as_ref().unwrap().since;
    assert_eq!(
        paused_at,
        sim.now - time::Duration::minutes(1),
        "the pause starts when it was decided"
    );
    sim.tick(3 * 3600 + 25 * 60 + 7 - 60);
    let events = sim.apply(&h1(), &Command::Resume).unwrap();
    assert_eq!(
        events[0].body,
        whistle_domain::EventBody::ClockResumed {
            paused_seconds: 3 * 3600 + 25 * 60 + 7
        }
    );

    // A clock that went backwards never yields a negative pause.
    let mut sim = paused_acked_h1();
    sim.now = T0 - time::Duration::hours(1);
    let events = sim.apply(&h1(), &Command::Resume).unwrap();
    assert_eq!(
        events[0].body,
        whistle_domain::EventBody::ClockResumed { paused_seconds: 0 }
    );
}

#[test]
fn report_payload() {
    let sim = nothing();
    let cmd = Command::Report {
        case_id: case_id(CASE),
        category: whistle_domain::CategoryCode::new(LIFT),
        location: whistle_domain::OrgId::new("cp1-b1-u2"),
        description: "  电梯困人  \n".into(),
        channel: whistle_domain::Channel::Hotline,
        urgency: Some(whistle_domain::Urgency::Urgent),
        contact: None,
    };
    let events = sim.decide(&grid_worker(), &cmd).unwrap();
    assert_eq!(
        events[0].body,
        whistle_domain::EventBody::CaseReported {
            case_id: case_id(CASE),
            category: whistle_domain::CategoryCode::new(LIFT),
            policy_class: whistle_domain::PolicyClass::Urgent,
            requested_urgency: Some(whistle_domain::Urgency::Urgent),
            location: whistle_domain::OrgId::new("cp1-b1-u2"),
            compound: whistle_domain::OrgId::new(CP1),
            grid: Some(whistle_domain::GridId::new(GRID_CP1_B1)),
            channel: whistle_domain::Channel::Hotline,
            description: "电梯困人".into(),
            level: Level::Escalated,
            fast_channel: true,
            contact: None,
        }
    );
    let case = whistle_domain::fold(&events).unwrap();
    assert_eq!(case.reported_at, T0);
    assert_eq!(case.reporter.as_str(), "gw-1");
    assert!(case.fast_channel);
    assert_eq!(case.level, Level::Escalated);
}

#[test]
fn acknowledge_names_the_signer() {
    let sim = unassigned();
    let e = sim.decide(&h2(), &Command::Acknowledge).unwrap();
    assert_eq!(
        e[0].body,
        whistle_domain::EventBody::CaseAcknowledged {
            level: Level::Neighbour,
            handler: hp("h-2")
        }
    );
    // A department signs as the department, not as the account.
    let sim = esc_unassigned();
    let e = sim.decide(&fire2(), &Command::Acknowledge).unwrap();
    assert_eq!(
        e[0].body,
        whistle_domain::EventBody::CaseAcknowledged {
            level: Level::Escalated,
            handler: hd(DEPT_FIRE)
        }
    );
}

#[test]
fn transfer_decline_and_resolve_payloads() {
    let sim = esc_acked_fire();
    let e = sim.decide(&fire2(), &transfer(hd(DEPT_CHENGGUAN))).unwrap();
    assert_eq!(
        e[0].body,
        whistle_domain::EventBody::CaseTransferred {
            level: Level::Escalated,
            from: hd(DEPT_FIRE),
            to: hd(DEPT_CHENGGUAN),
            reason: "better placed".into(),
        }
    );

    let sim = esc_assigned_fire();
    let e = sim
        .decide(
            &fire2(),
            &Command::Decline {
                reason: " 不归我们管 ".into(),
            },
        )
        .unwrap();
    assert_eq!(
        e[0].body,
        whistle_domain::EventBody::CaseDeclined {
            department: whistle_domain::DepartmentId::new(DEPT_FIRE),
            reason: "不归我们管".into()
        }
    );

    let sim = on_site_h1();
    let shout = whistle_domain::Evidence {
        url: " https://evidence.example/a.jpg ".into(),
        sha256: "AB".repeat(32),
    };
    let e = sim
        .decide(
            &h1(),
            &Command::Resolve {
                summary: "pipe replaced".into(),
                evidence: vec![shout],
            },
        )
        .unwrap();
    assert_eq!(
        e[0].body,
        whistle_domain::EventBody::CaseResolved {
            level: Level::Neighbour,
            handler: hp("h-1"),
            summary: "pipe replaced".into(),
            evidence: vec![whistle_domain::Evidence {
                url: "https://evidence.example/a.jpg".into(),
                sha256: "ab".repeat(32)
            }],
        }
    );
}

#[test]
fn confirm_and_reopen_payloads() {
    let mut sim = resolved_h1();
    let e = sim
        .apply(
            &reporter(),
            &Command::Confirm {
                satisfaction: 2,
                comment: " slow ".into(),
            },
        )
        .unwrap();
    assert_eq!(
        e[0].body,
        whistle_domain::EventBody::ResolutionConfirmed {
            satisfaction: whistle_domain::Satisfaction::new(2).unwrap(),
            comment: "slow".into(),
        }
    );
    assert_eq!(sim.case().closed_at, Some(e[0].occurred_at));
    let e = sim.apply(&reporter(), &reopen()).unwrap();
    assert_eq!(
        e[0].body,
        whistle_domain::EventBody::CaseReopened {
            reason: "it leaks again".into()
        }
    );
    assert_eq!(sim.case().reopen_count, 1);
    // Reopened, resolved again and reopened again: the count keeps climbing.
    sim.ok(&h1(), Command::Acknowledge)
        .ok(&h1(), resolve())
        .ok(&reporter(), reopen());
    assert_eq!(sim.case().reopen_count, 2);
    assert_eq!(sim.case().status, Status::Open(Stage::Assigned(hp("h-1"))));
}

#[test]
fn a_full_escalated_lifecycle() {
    // Gas smell: fast channel is not needed (the category starts at ESCALATED), a
    // department declines, another signs, goes on site, resolves; the resident confirms.
    let mut sim = Sim::reported(GAS);
    assert_eq!(sim.case().level, Level::Escalated);
    assert!(!sim.case().fast_channel);
    sim.ok(&system(), assign(hd(DEPT_FIRE)))
        .ok(&fire(), decline())
        .ok(&gas(), Command::Acknowledge)
        .ok(&gas(), Command::ArriveOnSite)
        .ok(&gas(), pause())
        .ok(&gas(), Command::Resume)
        .ok(&gas(), resolve())
        .ok(&reporter(), confirm(5));
    let types: Vec<&str> = sim.events.iter().map(|e| e.body.event_type()).collect();
    assert_eq!(
        types,
        [
            "CaseReported",
            "CaseAssigned",
            "CaseDeclined",
            "CaseAcknowledged",
            "ArrivedOnSite",
            "ClockPaused",
            "ClockResumed",
            "CaseResolved",
            "ResolutionConfirmed"
        ]
    );
    assert_eq!(sim.case().version, 9);
    assert_eq!(sim.replayed(), sim.state);
    assert!(sim.case().is_closed());
    assert_eq!(
        sim.case().declined_by,
        vec![whistle_domain::DepartmentId::new(DEPT_FIRE)]
    );
}
