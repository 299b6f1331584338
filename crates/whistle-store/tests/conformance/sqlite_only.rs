//! SQLite-specific behaviour.

use whistle_store::testing::{SqliteTestDb, test_config};
use whistle_store::{EventStore, ExpectedVersion, Store, StoreError};

use crate::support::{append_one, events, new_stream, req};

#[tokio::test]
async fn reopening_the_file_keeps_every_acknowledged_event() {
    let db = SqliteTestDb::new();
    let stream = new_stream();
    let last = {
        let store = db.store().await;
        assert_eq!(store.backend_name(), "sqlite");
        let a = append_one(&store, req(&stream, ExpectedVersion::NoStream, events(3)))
            .await
            .expect("append");
        store.close().await;
        a.appended().clone()
    };
    assert!(
        db.dir().join("events.db").exists(),
        "created with its directory"
    );
    let store = db.store().await;
    assert_eq!(store.stream_version(&stream).await.expect("version"), 3);
    assert_eq!(
        store.head_position().await.expect("head"),
        last.last_position
    );
    let next = append_one(&store, req(&stream, ExpectedVersion::Exact(3), events(1)))
        .await
        .expect("append after reopen");
    assert_eq!(next.appended().first_version, 4);
    assert!(next.appended().first_position > last.last_position);
    store.close().await;
}

#[tokio::test]
async fn in_memory_and_unknown_urls_are_refused() {
    for url in [
        "sqlite::memory:",
        "sqlite://x.db?mode=memory",
        "mysql://h/db",
    ] {
        match Store::connect(&test_config(url)).await {
            Err(StoreError::Invalid(_)) => {}
            Err(other) => panic!("{url}: expected Invalid, got {other:?}"),
            Ok(_) => panic!("{url}: expected Invalid, got a store"),
        }
    }
}
