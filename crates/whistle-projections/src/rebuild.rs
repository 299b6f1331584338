//! Rebuild from zero: empty a read model and project the whole log again. Safe while
//! servers run: case views are upserted only over older versions, and the SLA
//! projection's compare-and-set checkpoint makes a live projector notice the reset and
//! continue from wherever the rebuild got to.

use std::collections::HashMap;
use std::sync::Arc;

use whistle_bus::Router;
use whistle_store::{CaseViewRow, EventStore, ReadModel, Store, StreamId};

use crate::projector::{ProjectionError, SLA_PROJECTION, catch_up};
use crate::rows::case_view_row;

/// Checkpoint name recorded for the case views (they have no live checkpoint: they are
/// written with the events; a rebuild records how far it got).
pub const CASE_VIEWS: &str = "projection:case_views";

/// The read models `whistle rebuild` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projection {
    /// `case_views` (synchronous).
    CaseViews,
    /// `sla_clocks` and `case_holds` (asynchronous).
    Sla,
}

impl Projection {
    pub const ALL: [Projection; 2] = [Projection::CaseViews, Projection::Sla];

    pub fn name(self) -> &'static str {
        match self {
            Projection::CaseViews => "case_views",
            Projection::Sla => "sla",
        }
    }

    pub fn parse(s: &str) -> Option<Projection> {
        Projection::ALL.into_iter().find(|p| p.name() == s)
    }
}

/// Events read per rebuild batch.
const BATCH: u32 = 5_000;

/// Rebuilds one projection from position 0. `progress(position, head)` after each batch.
/// Returns the position reached.
pub async fn rebuild(
    store: &Arc<Store>,
    which: Projection,
    progress: &mut dyn FnMut(i64, i64),
) -> Result<i64, ProjectionError> {
    match which {
        Projection::Sla => {
            store
                .reset_read_model(ReadModel::Sla, SLA_PROJECTION)
                .await?;
            catch_up(store, BATCH, progress).await
        }
        Projection::CaseViews => {
            store
                .reset_read_model(ReadModel::CaseViews, CASE_VIEWS)
                .await?;
            project_case_views(store, 0, progress).await
        }
    }
}

/// Writes the case views of every case touched after `after`, folding the log (used by
/// rebuilds and by a server starting on a log whose views are missing).
pub async fn project_case_views(
    store: &Arc<Store>,
    after: i64,
    progress: &mut dyn FnMut(i64, i64),
) -> Result<i64, ProjectionError> {
    let head = store.head_position().await?;
    let mut cursor = after;
    let mut router = Router::keeping_descriptions(whistle_bus::route::DEFAULT_CACHE_CASES);
    while cursor < head {
        let events = store.read_all(cursor, BATCH).await?;
        let Some(last) = events.last().map(|r| r.position) else {
            break;
        };
        // Each touched case once, with the position of its last event in the batch.
        let mut touched: Vec<(StreamId, i64)> = Vec::new();
        let mut index: HashMap<StreamId, usize> = HashMap::new();
        for rec in events {
            let (stream, position) = (rec.stream.clone(), rec.position);
            if router.route(&**store, rec).await?.is_some() {
                match index.get(&stream) {
                    Some(&i) => {
                        if let Some(t) = touched.get_mut(i) {
                            t.1 = position;
                        }
                    }
                    None => {
                        index.insert(stream.clone(), touched.len());
                        touched.push((stream, position));
                    }
                }
            }
        }
        let mut rows: Vec<CaseViewRow> = Vec::with_capacity(touched.len());
        for (stream, position) in &touched {
            if let Some(case) = router.case(stream) {
                let mut row = case_view_row(case)?;
                row.position = *position;
                rows.push(row);
            }
        }
        store.upsert_case_views(&rows).await?;
        cursor = last;
        progress(cursor, head);
    }
    Ok(cursor)
}
