//! A log follower: reads the event log from a cursor in position order, then
//! waits for more — woken by the store's commit notification, with a poll as
//! fallback. The relay and `WatchAssignments` (the in-process bus of the
//! embedded mode) both follow the log with it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use whistle_store::{EventStore, RecordedEvent, Store, StoreError};

/// How often a follower looks at the log when no notification came.
pub const DEFAULT_POLL: Duration = Duration::from_millis(500);

/// Follows the log of one store from a cursor.
#[derive(Debug)]
pub struct Follower {
    store: Arc<Store>,
    commits: watch::Receiver<i64>,
    after: i64,
    batch: u32,
    poll: Duration,
}

impl Follower {
    /// A follower that will return events with position > `after`, at most
    /// `batch` per call. Must be created within a tokio runtime.
    pub fn new(store: Arc<Store>, after: i64, batch: u32) -> Follower {
        let commits = store.subscribe_commits();
        Follower {
            store,
            commits,
            after,
            batch: batch.max(1),
            poll: DEFAULT_POLL,
        }
    }

    /// Changes the fallback poll interval.
    pub fn with_poll(mut self, poll: Duration) -> Follower {
        self.poll = poll;
        self
    }

    /// The position of the last event returned (or the starting cursor).
    pub fn cursor(&self) -> i64 {
        self.after
    }

    /// Moves the cursor (e.g. back to a checkpoint after a failure).
    pub fn seek(&mut self, after: i64) {
        self.after = after;
    }

    /// The highest committed position this process has been told about.
    pub fn notified_head(&self) -> i64 {
        *self.commits.borrow()
    }

    /// The next events after the cursor, waiting until there is at least one.
    /// Advances the cursor past them. A store error leaves the cursor alone.
    pub async fn next_batch(&mut self) -> Result<Vec<RecordedEvent>, StoreError> {
        loop {
            // Mark the notification seen BEFORE reading, so a commit that lands
            // between the read and the wait still wakes us.
            self.commits.borrow_and_update();
            let events = self.store.read_all(self.after, self.batch).await?;
            if let Some(last) = events.last() {
                self.after = last.position;
                return Ok(events);
            }
            tokio::select! {
                changed = self.commits.changed() => {
                    if changed.is_err() {
                        // The writer is gone (store closed): keep polling.
                        tokio::time::sleep(self.poll).await;
                    }
                }
                _ = tokio::time::sleep(self.poll) => {}
            }
        }
    }
}
