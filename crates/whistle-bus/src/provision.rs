//! The JetStream stream whistle publishes to, provisioned at start.
//!
//! Only options nats-server 2.9 understands are used (STACK.md): name,
//! subjects, storage, replicas, retention, duplicate window, max age. The
//! duplicate window bounds how far back `Nats-Msg-Id` de-duplication reaches: a
//! relay restarted after a longer outage may publish an event again, which
//! consumers drop by event id (they must be idempotent anyway).

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::error::BusError;
use crate::subject;

/// Default stream name.
pub const DEFAULT_STREAM: &str = "WHISTLE_CASES";

/// Where JetStream keeps the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Storage {
    /// On disk (default).
    #[default]
    File,
    /// In memory only (tests, throwaway setups).
    Memory,
}

impl Storage {
    /// Parses `file` or `memory`.
    pub fn parse(s: &str) -> Option<Storage> {
        match s {
            "file" => Some(Storage::File),
            "memory" => Some(Storage::Memory),
            _ => None,
        }
    }
}

/// When JetStream may drop messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Retention {
    /// Kept until `max_age` (default; auditors can replay).
    #[default]
    Limits,
    /// Dropped once every consumer acknowledged them.
    Interest,
}

impl Retention {
    /// Parses `limits` or `interest`.
    pub fn parse(s: &str) -> Option<Retention> {
        match s {
            "limits" => Some(Retention::Limits),
            "interest" => Some(Retention::Interest),
            _ => None,
        }
    }
}

/// The stream's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSettings {
    /// Stream name (default `WHISTLE_CASES`).
    pub name: String,
    /// The district whose subjects (`whistle.<district>.>`) the stream captures.
    pub district: String,
    /// File or memory.
    pub storage: Storage,
    /// Replicas (1, or 3 on a cluster).
    pub replicas: usize,
    /// Limits or interest.
    pub retention: Retention,
    /// How long JetStream remembers `Nats-Msg-Id`s for de-duplication.
    pub duplicate_window: Duration,
    /// How long messages are kept (zero: forever).
    pub max_age: Duration,
}

impl StreamSettings {
    /// Defaults for a district: `WHISTLE_CASES`, file, R1, limits, 2 min
    /// duplicate window (JetStream's default), 30 days.
    pub fn new(district: impl Into<String>) -> StreamSettings {
        StreamSettings {
            name: DEFAULT_STREAM.to_owned(),
            district: district.into(),
            storage: Storage::File,
            replicas: 1,
            retention: Retention::Limits,
            duplicate_window: Duration::from_secs(120),
            max_age: Duration::from_secs(30 * 24 * 3600),
        }
    }

    /// The JetStream configuration.
    pub fn config(&self) -> stream::Config {
        stream::Config {
            name: self.name.clone(),
            subjects: vec![subject::district_filter(&self.district)],
            storage: match self.storage {
                Storage::File => stream::StorageType::File,
                Storage::Memory => stream::StorageType::Memory,
            },
            num_replicas: self.replicas.max(1),
            retention: match self.retention {
                Retention::Limits => stream::RetentionPolicy::Limits,
                Retention::Interest => stream::RetentionPolicy::Interest,
            },
            duplicate_window: self.duplicate_window,
            max_age: self.max_age,
            description: Some("whistle case events (小区吹哨、部门报到)".to_owned()),
            ..Default::default()
        }
    }
}

/// Creates the stream, or brings an existing one's subjects, replicas, max
/// age and duplicate window in line with the settings (storage and retention
/// cannot change after creation: a mismatch is logged, not fixed).
pub async fn ensure_stream(
    js: &jetstream::Context,
    settings: &StreamSettings,
) -> Result<stream::Info, BusError> {
    let wanted = settings.config();
    let mut stream = js
        .get_or_create_stream(wanted.clone())
        .await
        .map_err(|e| BusError::Provision(format!("stream {}: {e}", settings.name)))?;
    let info = stream
        .info()
        .await
        .map_err(|e| BusError::Provision(format!("stream {} info: {e}", settings.name)))?
        .clone();
    let have = &info.config;
    if have.storage != wanted.storage || have.retention != wanted.retention {
        tracing::warn!(
            stream = %settings.name,
            have_storage = ?have.storage, want_storage = ?wanted.storage,
            have_retention = ?have.retention, want_retention = ?wanted.retention,
            "existing stream differs in storage or retention, which cannot change; keeping it"
        );
    }
    let needs_update = !have.subjects.contains(&wanted.subjects[0])
        || have.num_replicas != wanted.num_replicas
        || have.max_age != wanted.max_age
        || have.duplicate_window != wanted.duplicate_window;
    if !needs_update {
        return Ok(info);
    }
    let mut update = have.clone();
    if !update.subjects.contains(&wanted.subjects[0]) {
        update.subjects.push(wanted.subjects[0].clone());
    }
    update.num_replicas = wanted.num_replicas;
    update.max_age = wanted.max_age;
    update.duplicate_window = wanted.duplicate_window;
    let updated = js
        .update_stream(update)
        .await
        .map_err(|e| BusError::Provision(format!("updating stream {}: {e}", settings.name)))?;
    tracing::info!(stream = %settings.name, "stream configuration updated");
    Ok(updated)
}
