//! The routing fold: which department each event goes to, through dispatch, decline,
//! re-dispatch, transfer and closure — and the same answer from a cold router that
//! starts in the middle of the log.

use std::sync::Arc;

use whistle_bus::Router;
use whistle_domain::{Actor, Command, DepartmentId, Handler, Role};
use whistle_store::testing::SqliteTestDb;
use whistle_store::{EventStore, Store};

use crate::support::Cases;

fn dept(d: &str) -> Handler {
    Handler::Department(DepartmentId::new(d))
}

async fn routes_from(store: &Store, after: i64) -> Vec<(String, Option<String>)> {
    let mut router = Router::default();
    let mut out = Vec::new();
    for rec in store.read_all(after, 1000).await.expect("read") {
        let r = router
            .route(store, rec)
            .await
            .expect("route")
            .expect("case event");
        out.push((r.record.event_type.clone(), r.route.department.map(|d| d.0)));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_goes_to_the_department_holding_or_dispatched_the_case_at_that_event() {
    let db = SqliteTestDb::new();
    let store: Arc<Store> = Arc::new(db.store().await);
    let cases = Cases::new(store.clone());
    let sup = Actor::new("sup-dongfeng", Role::Supervisor);
    let fire = Actor::department("dept-fire", "fire");
    let gas = Actor::department("dept-gas", "gas");

    let id = cases.report("gas_smell", "heping-beili-b2").await;
    let assign = |h| Command::Assign { handler: h };
    cases.run(id, &sup, assign(dept("fire"))).await;
    cases
        .run(
            id,
            &fire,
            Command::Decline {
                reason: "not ours".into(),
            },
        )
        .await;
    cases
        .run(
            id,
            &sup,
            Command::AddNote {
                text: "re-routing".into(),
                evidence: vec![],
            },
        )
        .await;
    cases.run(id, &sup, assign(dept("gas"))).await;
    cases.run(id, &gas, Command::Acknowledge).await;
    cases.run(id, &gas, Command::ArriveOnSite).await;
    cases
        .run(
            id,
            &gas,
            Command::Resolve {
                summary: "valve closed".into(),
                evidence: vec![],
            },
        )
        .await;
    cases
        .run(
            id,
            &Actor::new("gw-lin", Role::GridWorker),
            Command::Confirm {
                satisfaction: 5,
                comment: String::new(),
            },
        )
        .await;

    let some = |s: &str| Some(s.to_owned());
    let want = vec![
        ("CaseReported".to_owned(), None),
        ("CaseAssigned".to_owned(), some("fire")),
        ("CaseDeclined".to_owned(), some("fire")),
        ("NoteAdded".to_owned(), None),
        ("CaseAssigned".to_owned(), some("gas")),
        ("CaseAcknowledged".to_owned(), some("gas")),
        ("ArrivedOnSite".to_owned(), some("gas")),
        ("CaseResolved".to_owned(), some("gas")),
        ("ResolutionConfirmed".to_owned(), some("gas")),
    ];
    assert_eq!(routes_from(&store, 0).await, want);
    // A router that starts after the first four events folds the case from its stream.
    let fourth = store.read_all(0, 4).await.expect("read")[3].position;
    assert_eq!(routes_from(&store, fourth).await, want[4..].to_vec());
}
