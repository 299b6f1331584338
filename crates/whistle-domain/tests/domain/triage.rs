//! Triage (starting rung, class, fast channel) and the input bounds of a report.

use crate::fixtures::*;
use crate::transitions::{Outcome, outcome};
use whistle_domain::{
    CaseId, CategoryCode, Channel, Command, EventBody, Evidence, Level, OrgId, PolicyClass,
    Urgency, triage,
};

fn reported(category: &str, urgency: Option<Urgency>) -> (Level, PolicyClass, bool) {
    let sim = nothing();
    let events = sim
        .decide(&reporter(), &report_cmd(category, "cp1-b1-u1", urgency))
        .unwrap_or_else(|e| panic!("{category} {urgency:?}: {e}"));
    match &events[0].body {
        EventBody::CaseReported {
            level,
            policy_class,
            fast_channel,
            requested_urgency,
            ..
        } => {
            assert_eq!(*requested_urgency, urgency, "the claim is recorded as made");
            (*level, *policy_class, *fast_channel)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn each_category_starts_at_its_level() {
    for (code, starts_at, policy) in CATEGORIES {
        let want_level = if policy.is_pressing() {
            Level::Escalated
        } else {
            starts_at
        };
        assert_eq!(
            reported(code, None),
            (want_level, policy, false),
            "{code}: no claim"
        );
        assert_eq!(
            reported(code, Some(Urgency::Normal)),
            (want_level, policy, false),
            "{code}: a normal claim never lowers"
        );
    }
    // Spelled out for the categories the brief names.
    assert_eq!(reported(NOISE, None).0, Level::Neighbour);
    assert_eq!(reported(CLUTTER, None).0, Level::Unit);
    assert_eq!(reported(LIFT, None).0, Level::Branch);
    assert_eq!(
        reported(FEE, None),
        (Level::Branch, PolicyClass::Complex, false)
    );
    assert_eq!(
        reported(FIRE, None),
        (Level::Escalated, PolicyClass::Urgent, false)
    );
    assert_eq!(
        reported(GAS, None),
        (Level::Escalated, PolicyClass::Emergency, false)
    );
    assert_eq!(
        reported(BUILD, None),
        (Level::Escalated, PolicyClass::Complex, false)
    );
}

#[test]
fn an_urgency_claim_raises_the_class_and_takes_the_fast_channel() {
    use PolicyClass::*;
    use Urgency as U;
    #[rustfmt::skip]
    let table = [
        // category, claim, level, class, fast channel
        (NOISE, U::Urgent, Level::Escalated, Urgent, true),
        (NOISE, U::Emergency, Level::Escalated, Emergency, true),
        (CLUTTER, U::Urgent, Level::Escalated, Urgent, true),
        (LIFT, U::Urgent, Level::Escalated, Urgent, true), // someone trapped in the lift
        (LIFT, U::Emergency, Level::Escalated, Emergency, true),
        (FEE, U::Urgent, Level::Escalated, Urgent, true),
        // Already at ESCALATED: nothing skipped, so no fast channel.
        (FIRE, U::Urgent, Level::Escalated, Urgent, false),
        (FIRE, U::Emergency, Level::Escalated, Emergency, false),
        (GAS, U::Urgent, Level::Escalated, Emergency, false), // a claim never lowers
        (BUILD, U::Urgent, Level::Escalated, Urgent, false),
        (MARKET, U::Emergency, Level::Escalated, Emergency, false),
        // Normal claims change nothing.
        (NOISE, U::Normal, Level::Neighbour, Routine, false),
        (FEE, U::Normal, Level::Branch, Complex, false),
        (GAS, U::Normal, Level::Escalated, Emergency, false),
    ];
    for (code, claim, level, class, fast) in table {
        assert_eq!(
            reported(code, Some(claim)),
            (level, class, fast),
            "{code} claimed {claim:?}"
        );
    }
}

#[test]
fn triage_never_lowers_and_fast_channel_means_skipping() {
    let district = district();
    let claims = [
        None,
        Some(Urgency::Normal),
        Some(Urgency::Urgent),
        Some(Urgency::Emergency),
    ];
    for cat in district.catalogue.categories.values() {
        for claim in claims {
            let (level, class, fast) = triage(cat, claim);
            assert!(class >= cat.policy, "{}: class lowered", cat.code);
            assert!(level >= cat.starts_at, "{}: level lowered", cat.code);
            if class.is_pressing() {
                assert_eq!(level, Level::Escalated, "{} {claim:?}", cat.code);
            } else {
                assert_eq!(level, cat.starts_at, "{} {claim:?}", cat.code);
            }
            assert_eq!(fast, level != cat.starts_at, "{} {claim:?}", cat.code);
            if fast {
                assert_eq!(level, Level::Escalated);
                assert!(class.is_pressing());
            }
        }
    }
    // A category configured to start low but pressing by default takes the fast channel
    // without any claim.
    let odd = category("odd", Level::Unit, PolicyClass::Emergency);
    assert_eq!(
        triage(&odd, None),
        (Level::Escalated, PolicyClass::Emergency, true)
    );
}

#[test]
fn report_records_compound_and_most_specific_grid() {
    #[rustfmt::skip]
    let table = [
        ("cp1", CP1, Some(GRID_CP1)),
        ("cp1-b1", CP1, Some(GRID_CP1_B1)),
        ("cp1-b1-u2", CP1, Some(GRID_CP1_B1)),
        ("cp1-b2-u1", CP1, Some(GRID_CP1)),
        ("cp2-b1-u1", CP2, Some(GRID_COMMUNITY)),
    ];
    for (location, compound, grid) in table {
        let events = nothing()
            .decide(&reporter(), &report_cmd(NOISE, location, None))
            .unwrap();
        match &events[0].body {
            EventBody::CaseReported {
                compound: c,
                grid: g,
                location: l,
                ..
            } => {
                assert_eq!(c.as_str(), compound, "{location}");
                assert_eq!(g.as_ref().map(|g| g.as_str()), grid, "{location}");
                assert_eq!(l.as_str(), location);
            }
            other => panic!("{other:?}"),
        }
    }
    // A compound no grid covers records no grid.
    let mut spec = spec();
    spec.grids.clear();
    let mut sim = nothing();
    sim.district = whistle_domain::District::build(spec).unwrap();
    let events = sim
        .decide(&reporter(), &report_cmd(NOISE, "cp2-b1-u1", None))
        .unwrap();
    assert!(matches!(
        &events[0].body,
        EventBody::CaseReported { grid: None, .. }
    ));
}

fn report_outcome(cmd: Command) -> Outcome {
    outcome(&nothing().decide(&reporter(), &cmd))
}

#[test]
fn report_refuses_unknown_category_and_location() {
    #[rustfmt::skip]
    let table = [
        ("no_such_category", "cp1", "category"),
        ("", "cp1", "category"),
        ("NEIGHBOUR_NOISE", "cp1", "category"), // codes are case sensitive
        (NOISE, "nowhere", "location"),
        (NOISE, "", "location"),
        (NOISE, DISTRICT, "location"),
        (NOISE, STREET, "location"),
        (NOISE, COMMUNITY, "location"),
        (NOISE, GRID_CP1, "location"), // a grid is not a place in the tree
    ];
    for (category, location, field) in table {
        assert_eq!(
            report_outcome(report_cmd(category, location, None)),
            Outcome::Invalid(field),
            "{category:?} at {location:?}"
        );
    }
    // Compounds, buildings and units are all fine.
    for location in ["cp1", "cp1-b2", "cp2-b1-u1"] {
        assert_eq!(
            report_outcome(report_cmd(NOISE, location, None)),
            Outcome::Ok(vec!["CaseReported"])
        );
    }
}

#[test]
fn report_bounds_the_description() {
    let bad = [
        String::new(),
        "   ".into(),
        " \n\t\r ".into(),
        "x".repeat(4001),
        "漏".repeat(4001),
        "a".repeat(100 * 1024),
        "bell \u{7} in the middle".into(),
        "nul \u{0} in the middle".into(),
        "escape \u{1b}[31m red".into(),
        "del \u{7f}".into(),
        "c1 control \u{85} inside".into(),
    ];
    for d in bad {
        let cmd = report_with(CASE, NOISE, "cp1", None, &d);
        assert_eq!(
            report_outcome(cmd),
            Outcome::Invalid("description"),
            "{:?}",
            d.chars().take(40).collect::<String>()
        );
    }
    let good = [
        "x".repeat(4000),
        "漏".repeat(4000),
        format!("  {}  ", "x".repeat(4000)), // counted after trimming
        "line one\nline two\twith a tab\r\n".into(),
        "楼上漏水 💧".into(),
    ];
    for d in good {
        let cmd = report_with(CASE, NOISE, "cp1", None, &d);
        assert_eq!(
            report_outcome(cmd),
            Outcome::Ok(vec!["CaseReported"]),
            "{} chars",
            d.chars().count()
        );
    }
}

#[test]
fn report_checks_category_before_location_before_description() {
    // When several inputs are wrong the first in field order is named, consistently.
    let cmd = Command::Report {
        case_id: CaseId(uuid::Uuid::nil()),
        category: CategoryCode::new("nope"),
        location: OrgId::new("nowhere"),
        description: String::new(),
        channel: Channel::WalkIn,
        urgency: None,
        contact: None,
    };
    assert_eq!(report_outcome(cmd), Outcome::Invalid("category"));
    let cmd = report_with(CASE, NOISE, "nowhere", None, "");
    assert_eq!(report_outcome(cmd), Outcome::Invalid("location"));
}

fn note_with(evidence: Vec<Evidence>) -> Outcome {
    outcome(&unassigned().decide(
        &grid_worker(),
        &Command::AddNote {
            text: "photo".into(),
            evidence,
        },
    ))
}

#[test]
fn evidence_bounds() {
    let e = |url: &str, sha: &str| Evidence {
        url: url.into(),
        sha256: sha.into(),
    };
    let sha = "a".repeat(64);
    assert_eq!(
        note_with((0..11).map(ev).collect()),
        Outcome::Invalid("evidence")
    );
    #[rustfmt::skip]
    let bad = [
        e("", &sha),
        e("evidence.example/a.jpg", &sha),
        e("ftp://evidence.example/a.jpg", &sha),
        e("javascript:alert(1)", &sha),
        e("https://a", &sha), // too short to name anything
        e("https://evidence.example/a b.jpg", &sha),
        e("https://evidence.example/a\u{0}.jpg", &sha),
        e(&format!("https://evidence.example/{}", "a".repeat(2048)), &sha),
        e("https://evidence.example/a.jpg", ""),
        e("https://evidence.example/a.jpg", &"a".repeat(63)),
        e("https://evidence.example/a.jpg", &"a".repeat(65)),
        e("https://evidence.example/a.jpg", &"g".repeat(64)),
        e("https://evidence.example/a.jpg", &format!("{}é", "a".repeat(62))),
    ];
    for item in bad {
        assert_eq!(
            note_with(vec![ev(1), item.clone()]),
            Outcome::Invalid("evidence"),
            "{:?}",
            item.url.chars().take(60).collect::<String>()
        );
    }
    #[rustfmt::skip]
    let good = [
        e("http://x.example", &sha),
        e("https://evidence.example/照片.jpg", &"AbCdEf0123456789".repeat(4)),
        e(&format!("https://evidence.example/{}", "a".repeat(2048 - 25)), &sha),
    ];
    for item in good {
        assert_eq!(
            note_with(vec![item.clone()]),
            Outcome::Ok(vec!["NoteAdded"]),
            "{:?} {:?}",
            item.url.len(),
            item.sha256
        );
    }
    assert_eq!(
        note_with((0..10).map(ev).collect()),
        Outcome::Ok(vec!["NoteAdded"])
    );
}
