//! Residents' personal data (DESIGN §6): kept apart from the events (which carry only a
//! reference), shown in full only to the reporter, the case's holder and admins, masked
//! for everyone else, and erasable — after which no API, read model or event (and so no
//! NATS message, which carries events) holds the name or phone, and a rebuild keeps it so.

use crate::both_backends;
use crate::support::{Backend, Client, spawn_app};
use std::sync::Arc;
use tonic::Code;
use whistle_proto::v1 as pb;
use whistle_store::{CaseFilter, EventStore, Store};

both_backends!(contact_details_are_stored_apart_masked_and_erasable);

const NAME: &str = "张秀英";
const PHONE: &str = "13812345678";
const ADDRESS: &str = "3号楼2单元501";

fn report(contact: Option<pb::ResidentContact>, key: &str) -> pb::ReportCaseRequest {
    pb::ReportCaseRequest {
        category: "leak_from_above".into(),
        location: "hongqi-jiayuan-b3-u2".into(),
        description: "water through the ceiling".into(),
        idempotency_key: key.into(),
        contact,
        ..Default::default()
    }
}

fn contact(name: &str, phone: &str) -> Option<pb::ResidentContact> {
    Some(pb::ResidentContact {
        name: name.into(),
        phone: phone.into(),
        address: ADDRESS.into(),
    })
}

async fn view(c: &Client, id: &str) -> pb::ContactView {
    c.get(id)
        .await
        .expect("get")
        .contact
        .expect("the case has contact details")
}

/// Everything persistent except the personal-data table: every event payload and every
/// case view document.
async fn leaks(store: &Store) -> Vec<String> {
    let mut found = Vec::new();
    let mut after = 0;
    loop {
        let page = store.read_all(after, 1000).await.expect("read");
        let Some(last) = page.last().map(|r| r.position) else {
            break;
        };
        for r in &page {
            let text = r.payload.to_string();
            if text.contains(PHONE) || text.contains(NAME) {
                found.push(format!("event {} {}", r.position, r.event_type));
            }
        }
        after = last;
    }
    for v in store
        .list_case_views(&CaseFilter::default(), None, None)
        .await
        .expect("views")
    {
        let doc = store
            .get_case_view(&v.case_id)
            .await
            .expect("view")
            .expect("exists")
            .doc;
        if doc.contains(PHONE) || doc.contains(NAME) {
            found.push(format!("case view {}", v.case_id));
        }
    }
    found
}

async fn contact_details_are_stored_apart_masked_and_erasable(b: Backend) {
    let app = spawn_app(&b).await;
    let gw = app.client("gw-lin").await;
    let r = gw
        .intake()
        .report_case(gw.req(report(contact(NAME, PHONE), "leak-501")))
        .await
        .expect("report")
        .into_inner();
    let id = r.ack.expect("ack").case_id;
    // A retry with the same key is the same report: no second record.
    let again = gw
        .intake()
        .report_case(gw.req(report(contact(NAME, PHONE), "leak-501")))
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(again.ack.map(|a| a.case_id), Some(id.clone()));
    assert_eq!(app.store.count_personal().await.expect("count"), 1);

    // The reporter and the holder see the details; a supervisor sees them masked.
    for who in ["gw-lin", "h-wang", "admin"] {
        let v = view(&app.client(who).await, &id).await;
        assert_eq!(
            (
                v.name.as_str(),
                v.phone.as_str(),
                v.address.as_str(),
                v.masked
            ),
            (NAME, PHONE, ADDRESS, false),
            "{who}"
        );
    }
    let masked = view(&app.client("sup-dongfeng").await, &id).await;
    assert_eq!(
        (
            masked.name.as_str(),
            masked.phone.as_str(),
            masked.address.as_str()
        ),
        ("张**", "138****5678", "***")
    );
    assert!(masked.masked);
    // Not in any event or read model: only a reference is.
    assert_eq!(leaks(&app.store).await, Vec::<String>::new());

    // Malformed details are refused, naming the field, and write nothing.
    let before = app.event_count().await;
    for (c, field) in [
        (contact(NAME, "call me"), "contact.phone"),
        (contact(&"名".repeat(51), PHONE), "contact.name"),
        (contact("Eve\u{202E}", PHONE), "contact.name"),
        (contact("", PHONE), "contact.name"),
    ] {
        let err = gw
            .intake()
            .report_case(gw.req(report(c, "")))
            .await
            .expect_err(field);
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert_eq!(
            err.metadata()
                .get("whistle-field")
                .and_then(|v| v.to_str().ok()),
            Some(field)
        );
    }
    assert_eq!(app.event_count().await, before);
    assert_eq!(app.store.count_personal().await.expect("count"), 1);

    // Only admins erase.
    let erase = |c: &Client| {
        let c = c.clone();
        let id = id.clone();
        async move {
            c.handling()
                .erase_contact(c.req(pb::ReasonRequest {
                    case_id: id,
                    reason: "the resident asked (个人信息删除申请)".into(),
                    ..Default::default()
                }))
                .await
        }
    };
    let sup = app.client("sup-dongfeng").await;
    assert_eq!(
        erase(&sup).await.expect_err("supervisor").code(),
        Code::PermissionDenied
    );
    let admin = app.client("admin").await;
    erase(&admin).await.expect("erase");
    assert_eq!(
        erase(&admin).await.expect_err("twice").code(),
        Code::FailedPrecondition
    );
    assert_eq!(
        app.store.count_personal().await.expect("count"),
        0,
        "the record is gone"
    );
    for who in ["gw-lin", "h-wang", "admin", "sup-dongfeng"] {
        let v = view(&app.client(who).await, &id).await;
        assert!(v.erased, "{who}");
        assert_eq!(
            (v.name.as_str(), v.phone.as_str(), v.address.as_str()),
            ("", "", ""),
            "{who}"
        );
    }
    let timeline = gw.timeline(&id).await;
    assert!(
        timeline
            .entries
            .iter()
            .any(|e| e.event_type == "ContactErased")
    );
    // The case goes on without the person.
    app.client("h-wang")
        .await
        .ack(&id)
        .await
        .expect("work continues");
    assert_eq!(leaks(&app.store).await, Vec::<String>::new());
    app.stop().await;

    // A rebuild from the log cannot bring them back: the log never held them.
    let store = Arc::new(b.store().await);
    for p in whistle_projections::Projection::ALL {
        whistle_projections::rebuild(&store, p, &mut |_, _| {})
            .await
            .expect("rebuild");
    }
    assert_eq!(leaks(&store).await, Vec::<String>::new());
    let row = store
        .get_case_view(&id)
        .await
        .expect("view")
        .expect("exists");
    let case: whistle_domain::Case = serde_json::from_str(&row.doc).expect("doc");
    assert!(case.contact_erased && case.contact.is_none());
}
