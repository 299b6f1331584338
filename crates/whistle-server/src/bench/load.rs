//! Load on the gRPC intake: concurrent clients calling `ReportCase` in a closed
//! loop (each sends again as soon as it is answered: the maximum rate) or an open
//! loop (sends on a fixed schedule; latency counted from the scheduled instant, so a
//! slow answer also delays — and is charged to — the calls queued behind it), and a
//! JetStream consumer timing report → delivery.

use super::stats::Samples;
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::time::MissedTickBehavior;
use tonic::Request;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use whistle_proto::v1 as pb;
use whistle_proto::v1::intake_service_client::IntakeServiceClient;

/// Who reports what, where: one bearer token per client, and valid
/// (category, location) pairs of the district to cycle through.
#[derive(Clone)]
pub struct Workload {
    pub tokens: Vec<MetadataValue<Ascii>>,
    pub places: Arc<Vec<(String, String)>>,
    /// Makes idempotency keys unique across phases and runs.
    pub tag: String,
}

/// How the clients pace themselves.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// Send again as soon as answered.
    Closed,
    /// This many requests per second over all clients.
    Open(f64),
}

/// What a run of the clients gave.
pub struct Outcome {
    pub rate: f64,
    pub latency: Samples,
    pub errors: u64,
    /// case id → when its report was sent (for the delivery latency).
    pub sent: HashMap<String, Instant>,
}

/// Runs `workload.tokens.len()` clients over `channels` for `duration`.
pub async fn report_cases(
    channels: &[IntakeServiceClient<Channel>],
    workload: &Workload,
    pace: Pace,
    duration: Duration,
    record_sent: bool,
) -> Result<Outcome> {
    let clients = workload.tokens.len().max(1);
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(Mutex::new(HashMap::new()));
    let started = Instant::now();
    let mut handles = Vec::with_capacity(clients);
    for c in 0..clients {
        let mut client = channels[c % channels.len()].clone();
        let token = workload.tokens[c].clone();
        let places = workload.places.clone();
        let tag = format!("{}-{c}", workload.tag);
        let (stop, errors, done, sent) = (stop.clone(), errors.clone(), done.clone(), sent.clone());
        handles.push(tokio::spawn(async move {
            let mut samples = Samples::with_capacity(1 << 14);
            let mut ticker = match pace {
                Pace::Closed => None,
                Pace::Open(rate) => {
                    let period = Duration::from_secs_f64(clients as f64 / rate.max(0.001));
                    // Spread the clients' first sends over one period.
                    let offset = period.mul_f64(c as f64 / clients as f64);
                    let mut t = tokio::time::interval_at(
                        tokio::time::Instant::now() + offset,
                        period,
                    );
                    t.set_missed_tick_behavior(MissedTickBehavior::Burst);
                    Some(t)
                }
            };
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let scheduled = match ticker.as_mut() {
                    Some(t) => t.tick().await.into_std(),
                    None => Instant::now(),
                };
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let (category, location) = &places[(c * 31 + n) % places.len()];
                let mut req = Request::new(pb::ReportCaseRequest {
                    category: category.clone(),
                    location: location.clone(),
                    description: "楼道灯坏了，晚上看不见台阶，老人上下楼很危险。".to_owned(),
                    channel: 0,
                    urgency: 0,
                    idempotency_key: format!("{tag}-{n}"),
                    contact: None,
                });
                req.metadata_mut().insert("authorization", token.clone());
                n += 1;
                match client.report_case(req).await {
                    Ok(res) => {
                        samples.push(scheduled.elapsed());
                        done.fetch_add(1, Ordering::Relaxed);
                        if record_sent
                            && let Some(ack) = res.into_inner().ack
                            && let Ok(mut sent) = sent.lock()
                        {
                            sent.insert(ack.case_id, scheduled);
                        }
                    }
                    Err(status) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            tracing::warn!(code = ?status.code(), message = status.message(), "bench: ReportCase failed");
                        }
                    }
                }
            }
            samples
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut latency = Samples::default();
    for h in handles {
        latency.extend(h.await.context("client task")?);
    }
    let secs = started.elapsed().as_secs_f64();
    let sent = std::mem::take(&mut *sent.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    Ok(Outcome {
        rate: done.load(Ordering::Relaxed) as f64 / secs,
        latency,
        errors: errors.load(Ordering::Relaxed),
        sent,
    })
}

/// A consumer of the district's `CaseReported` events on whistle's stream,
/// recording when each case's report arrived.
pub struct DeliveryProbe {
    received: Arc<Mutex<HashMap<String, Instant>>>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl DeliveryProbe {
    pub async fn start(nats_url: &str, stream: &str, district: &str) -> Result<DeliveryProbe> {
        use async_nats::jetstream::{self, consumer};
        use futures_util::StreamExt;
        let js = jetstream::new(async_nats::connect(nats_url).await?);
        let stream = js
            .get_stream(stream)
            .await
            .context("whistle's stream (is the relay running?)")?;
        let consumer = stream
            .create_consumer(consumer::pull::Config {
                filter_subject: format!("whistle.{district}.*.*.CaseReported"),
                deliver_policy: consumer::DeliverPolicy::New,
                ack_policy: consumer::AckPolicy::None,
                ..Default::default()
            })
            .await
            .context("creating the probe consumer")?;
        let mut messages = consumer.messages().await.context("probe messages")?;
        let received = Arc::new(Mutex::new(HashMap::new()));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let sink = received.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    m = messages.next() => {
                        let Some(Ok(m)) = m else { break };
                        let at = Instant::now();
                        if let Some(case) = m.headers.as_ref().and_then(|h| h.get(whistle_bus::message::CASE_ID))
                            && let Ok(mut r) = sink.lock()
                        {
                            r.insert(case.as_str().to_owned(), at);
                        }
                    }
                }
            }
        });
        Ok(DeliveryProbe {
            received,
            stop,
            task,
        })
    }

    /// Waits up to `grace` for the reports in `sent` to arrive, then returns the
    /// report → delivery latencies and how many never arrived.
    pub async fn finish(
        self,
        sent: &HashMap<String, Instant>,
        grace: Duration,
    ) -> (Samples, usize) {
        let deadline = Instant::now() + grace;
        loop {
            let arrived = self
                .received
                .lock()
                .map(|r| sent.keys().filter(|k| r.contains_key(*k)).count())
                .unwrap_or(0);
            if arrived >= sent.len() || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.stop.send(());
        let _ = self.task.await;
        let mut samples = Samples::with_capacity(sent.len());
        let mut missing = 0;
        if let Ok(r) = self.received.lock() {
            for (case, at) in sent {
                match r.get(case) {
                    Some(got) => samples.push(got.saturating_duration_since(*at)),
                    None => missing += 1,
                }
            }
        }
        (samples, missing)
    }
}
