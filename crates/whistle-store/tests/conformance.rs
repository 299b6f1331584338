//! Conformance suite of the event store, written once and run against both
//! backends, plus backend-specific tests.
//!
//! Every case in `cases` is stamped out twice by `conformance!`: as
//! `sqlite::<case>` (a fresh file in a temp dir) and `postgres::<case>` (a
//! fresh database `whistle_t_<uuid>` on the shared server, dropped
//! afterwards). PostgreSQL tests print `SKIPPED (PostgreSQL unreachable):
//! <name>` and pass when the server is down, unless
//! `WHISTLE_REQUIRE_SERVICES=1`. The helpers live in `whistle_store::testing`
//! (feature `testing`) so other crates' tests can use them too.

#[path = "conformance/cases.rs"]
mod cases;
#[path = "conformance/postgres_only.rs"]
mod postgres_only;
#[path = "conformance/sqlite_only.rs"]
mod sqlite_only;
#[path = "conformance/support.rs"]
mod support;

/// One `#[tokio::test]` per case per backend.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = whistle_store::testing::SqliteTestDb::new();
                    let store = db.store().await;
                    crate::cases::$case(&store).await;
                    store.close().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let name = concat!("postgres::", stringify!($case));
                    let Some(db) = whistle_store::testing::PgTestDb::create(name).await else {
                        return;
                    };
                    let store = db.store().await;
                    crate::cases::$case(&store).await;
                    store.close().await;
                }
            )*
        }
    };
}

conformance!(
    deadlines_follow_their_appends_and_are_claimed_once_per_lease,
    round_trip,
    expected_version_conflicts,
    conflict_does_not_fail_the_rest_of_the_batch,
    idempotent_retry_returns_the_original,
    idempotency_key_with_other_fingerprint_is_rejected,
    concurrent_retries_with_one_key_append_once,
    duplicate_first_event_id_returns_the_original,
    multi_request_unit_is_all_or_nothing,
    read_all_pages_in_commit_order,
    concurrent_appenders_get_contiguous_versions,
    concurrent_units_are_grouped_into_batches,
    invalid_requests_write_nothing,
    migrate_is_idempotent,
    closed_store_refuses_appends,
);
