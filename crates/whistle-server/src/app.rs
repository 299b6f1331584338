//! `Application::build(settings)` → a bound, migrated server; `run_until_stopped`
//! serves until the shutdown future completes. Binding happens in `build` so that the
//! caller (and tests using port 0) know the address before serving starts.
//!
//! Start-up tasks decide readiness ([`crate::http`] has the definition): the SLA
//! projector's catch-up and, with `--nats-url`, provisioning the stream from this node
//! (retried with the relay's backoff until it works or the server stops).
//!
//! Shutdown is a drain bounded by `drain_timeout` from the moment the shutdown future
//! completes: `/readyz` turns 503 "draining" at once; gRPC stops accepting connections
//! and answers the requests in flight (tonic waits for them; `WatchAssignments` and
//! `WatchSla` streams end with `UNAVAILABLE`, clients resume from their cursor); then
//! the background tasks stop together — the relay after its current batch, the
//! projector after its batch, the scheduler, the HTTP port — and the store closes. Work
//! still running at the deadline is abandoned with a warning naming it (a stuck request,
//! a publish waiting on NATS), and `run_until_stopped` still returns `Ok`: everything
//! acknowledged is already committed, and what was not is retried by its client (with
//! its idempotency key) or by the relay from its checkpoint.

use crate::config::Settings;
use crate::http::Readiness;
use crate::tls::{TlsListener, TlsSettings};
use anyhow::{Context, Result};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use whistle_api::scheduler::{self, SchedulerConfig};
use whistle_api::{AppState, Clock, Live, SystemClock, TokenAuthenticator};
use whistle_bus::{Relay, RelayConfig, RelayStatus};
use whistle_projections::{Projector, ProjectorConfig, ProjectorStatus};
use whistle_store::{EventStore, Store};

/// A log written before case views existed (or whose views were dropped) gets them
/// before serving: `GetCase` and the lists read them.
async fn ensure_case_views(store: &Arc<Store>) -> Result<()> {
    if store.has_case_views().await? || store.head_position().await? == 0 {
        return Ok(());
    }
    tracing::info!("the log has no case views yet; projecting them");
    let reached = whistle_projections::project_case_views(store, 0, &mut |_, _| {})
        .await
        .context("projecting case views")?;
    tracing::info!(position = reached, "case views projected");
    Ok(())
}

pub struct Application {
    listener: TcpListener,
    http_listener: TcpListener,
    state: AppState,
    addr: SocketAddr,
    http_addr: SocketAddr,
    scheduler: Option<SchedulerConfig>,
    nats: Option<RelayConfig>,
    relay_status: Option<RelayStatus>,
    tls: Option<TlsSettings>,
    projector: ProjectorStatus,
    readiness: Readiness,
    drain_timeout: Duration,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Application> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Application> {
        let store = Store::connect(&settings.store)
            .await
            .with_context(|| format!("connecting to the store {:?}", settings.store))?;
        store.migrate().await.context("running migrations")?;
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("binding {}", settings.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let http_listener = TcpListener::bind(settings.http_listen)
            .await
            .with_context(|| format!("binding HTTP {}", settings.http_listen))?;
        let http_addr = http_listener
            .local_addr()
            .context("reading the bound HTTP address")?;
        tracing::info!(
            %addr,
            store = store.backend_name(),
            district = %settings.district.id,
            principals = settings.principals.len(),
            tls = settings.tls.is_some(),
            mutual_tls = settings.tls.as_ref().is_some_and(|t| t.grpc.mutual()),
            "whistle ready"
        );
        let state = AppState {
            store: Arc::new(store),
            district: Live::new(settings.district),
            sla: Live::new(settings.sla),
            applied: whistle_api::admin::Applied::new(),
            auth: Arc::new(
                TokenAuthenticator::new(settings.principals)
                    .with_clock(clock.clone())
                    .with_limits(settings.limits)
                    .with_jwt(settings.jwt),
            ),
            clock,
        };
        // Before anything serves (the HTTP port starts before gRPC): with a client CA,
        // department accounts need their certificate from the first request on.
        state.auth.require_department_certificates(
            settings.tls.as_ref().is_some_and(|t| t.grpc.mutual()),
        );
        // Configuration changed through AdminService outranks the files it was seeded from.
        whistle_api::admin::refresh(&state)
            .await
            .map_err(|e| anyhow::anyhow!("loading the admin configuration: {e}"))?;
        ensure_case_views(&state.store).await?;
        let projector = ProjectorStatus::default();
        let readiness = Readiness::new(
            settings.nats.as_ref().map(|c| c.stream.name.as_str()),
            projector.clone(),
        );
        Ok(Application {
            listener,
            http_listener,
            addr,
            http_addr,
            scheduler: settings.scheduler,
            relay_status: settings.nats.as_ref().map(|_| RelayStatus::default()),
            nats: settings.nats,
            tls: settings.tls,
            projector,
            readiness,
            drain_timeout: settings.drain_timeout,
            state,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where /healthz, /readyz and /metrics are served.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Whether the relay to NATS runs (`--nats-url`); off in embedded mode.
    pub fn relay_enabled(&self) -> bool {
        self.nats.is_some()
    }

    /// The relay's progress (checkpoint, lag, publishes) once it runs; `None` in
    /// embedded mode. Valid before `run_until_stopped` starts the relay.
    pub fn relay_status(&self) -> Option<RelayStatus> {
        self.relay_status.clone()
    }

    /// What `/readyz` reports besides the store (catch-up, NATS, draining); valid before
    /// `run_until_stopped`, so callers (tests) can wait for readiness without HTTP.
    pub fn readiness(&self) -> Readiness {
        self.readiness.clone()
    }

    /// Serve gRPC, run the deadline scheduler (when configured), the SLA projector and
    /// the NATS relay (with `--nats-url`; NATS being down never stops gRPC: the relay
    /// retries with backoff) until `shutdown`, then drain (module docs).
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
        let store = self.state.store.clone();
        let readiness = self.readiness.clone();
        let drain_timeout = self.drain_timeout;
        let (stop, stopped) = watch::channel(false);
        let (http_stop, http_stopped) = watch::channel(false);
        let until_stopped = |mut stopped: watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        let provisioner = self.nats.clone().map(|cfg| {
            tokio::spawn(provision_stream(
                cfg,
                readiness.clone(),
                until_stopped(stopped.clone()),
            ))
        });
        let relay = self.nats.map(|cfg| {
            tracing::info!(nats = %whistle_bus::servers::redacted(&cfg.nats_url), stream = %cfg.stream.name, "relay to NATS JetStream enabled");
            let state = self.state.clone();
            let failures = tokio::spawn(whistle_bus::advisories::run_delivery_failures(
                cfg.nats_url.clone(),
                cfg.stream.clone(),
                move |f| whistle_api::departments::record_delivery_failure(state.clone(), f),
                until_stopped(stopped.clone()),
            ));
            let status = self.relay_status.clone().unwrap_or_default();
            (Relay::spawn_with(store.clone(), cfg, status), failures)
        });
        let scheduler = self.scheduler.map(|cfg| {
            tokio::spawn(scheduler::run(
                self.state.clone(),
                cfg,
                until_stopped(stopped.clone()),
            ))
        });
        let projector = Projector::spawn_with(
            store.clone(),
            ProjectorConfig::default(),
            self.projector.clone(),
        );
        let follower = tokio::spawn(whistle_api::admin::follow(
            self.state.clone(),
            Duration::from_secs(2),
            until_stopped(stopped.clone()),
        ));
        let http = {
            let router = crate::http::router(crate::http::Http {
                state: self.state.clone(),
                relay: self.relay_status.clone(),
                projector: self.projector.clone(),
                readiness: readiness.clone(),
                prometheus: crate::http::prometheus(),
            });
            // The HTTP port outlives the gRPC drain so that /readyz says "draining".
            let graceful = until_stopped(http_stopped);
            let listener = self.http_listener;
            let tls = self.tls.as_ref().map(|t| t.http.clone());
            tokio::spawn(async move {
                let served = match tls {
                    Some(config) => {
                        axum::serve(TlsListener::new(listener, config), router)
                            .with_graceful_shutdown(graceful)
                            .await
                    }
                    None => {
                        axum::serve(listener, router)
                            .with_graceful_shutdown(graceful)
                            .await
                    }
                };
                if let Err(e) = served {
                    tracing::error!(error = %e, "HTTP server failed");
                }
            })
        };

        // When `shutdown` completes the drain starts: readiness goes first, so the load
        // balancer stops sending work while tonic answers what is in flight.
        let (drain_started, drain_started_rx) = watch::channel(None::<Instant>);
        let signal = {
            let readiness = readiness.clone();
            async move {
                shutdown.await;
                readiness.set_draining();
                let _ = drain_started.send(Some(Instant::now()));
                tracing::info!(
                    drain_timeout_secs = drain_timeout.as_secs_f64(),
                    "draining: not ready, answering in-flight requests"
                );
            }
        };
        // The deadline of the whole drain. Serving may also end by itself (a transport
        // error; the sender is dropped with it): then the drain starts now.
        let deadline = |mut started: watch::Receiver<Option<Instant>>| async move {
            let at = started
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|at| *at);
            at.unwrap_or_else(Instant::now) + drain_timeout
        };
        let tls = self.tls.as_ref().map(|t| &t.grpc);
        let serving = whistle_api::serve_with_tls(self.listener, self.state, tls, signal);
        let grpc = async {
            let drain_started_rx = drain_started_rx.clone();
            tokio::pin!(serving);
            tokio::select! {
                biased;
                served = &mut serving => Some(served),
                () = async {
                    let mut started = drain_started_rx.clone();
                    if started.wait_for(Option::is_some).await.is_err() {
                        // Serving ended without a shutdown; the first branch has it.
                        std::future::pending::<()>().await;
                    }
                    tokio::time::sleep_until(deadline(started).await).await;
                } => {
                    tracing::warn!(
                        drain_timeout_secs = drain_timeout.as_secs_f64(),
                        "drain timeout: abandoning gRPC requests and streams still in flight"
                    );
                    None
                }
            }
            // Leaving this block drops `serving`: connections still open are abandoned.
        };
        // The background work stops while gRPC drains, so that a request that hangs does
        // not eat the relay's time to finish its batch.
        let background = async {
            let deadline = deadline(drain_started_rx.clone()).await;
            readiness.set_draining();
            let _ = stop.send(true);
            let relay = async {
                if let Some((relay, failures)) = relay {
                    tracing::info!(
                        lag = relay.lag(),
                        "stopping the relay after its current batch"
                    );
                    if !relay.stop_by(deadline).await {
                        tracing::warn!(step = "the relay", "drain timeout: abandoning it");
                    }
                    task_within(deadline, "the delivery-failure watcher", failures).await;
                }
            };
            let provisioner = async {
                if let Some(task) = provisioner {
                    task_within(deadline, "NATS stream provisioning", task).await;
                }
            };
            let scheduler = async {
                if let Some(task) = scheduler {
                    task_within(deadline, "the deadline scheduler", task).await;
                }
            };
            tokio::join!(
                relay,
                provisioner,
                scheduler,
                within(deadline, "the SLA projector", projector.shutdown()),
                task_within(deadline, "the admin configuration follower", follower),
            );
            deadline
        };
        let (served, deadline) = tokio::join!(grpc, background);
        let _ = http_stop.send(true);
        task_within(deadline, "the HTTP server", http).await;
        // Closing waits for connections checked out by abandoned work: bounded too.
        within(deadline, "closing the store", store.close()).await;
        match served {
            Some(served) => served.context("serving gRPC"),
            None => Ok(()),
        }
    }
}

/// Runs `step` until `deadline`; past it the step is abandoned with a warning.
async fn within(deadline: Instant, what: &'static str, step: impl Future<Output = ()>) -> bool {
    match tokio::time::timeout_at(deadline, step).await {
        Ok(()) => true,
        Err(_) => {
            tracing::warn!(step = what, "drain timeout: abandoning it");
            false
        }
    }
}

/// [`within`] for a spawned task, aborted when abandoned so it stops at its next await.
async fn task_within(deadline: Instant, what: &'static str, mut task: tokio::task::JoinHandle<()>) {
    let finished = within(deadline, what, async {
        if let Err(e) = (&mut task).await
            && e.is_panic()
        {
            tracing::error!(step = what, error = %e, "task panicked");
        }
    })
    .await;
    if !finished {
        task.abort();
    }
}

/// Provisions (or verifies) the stream from this node, whatever node holds the relay's
/// lease, and marks readiness once it worked; retries with the relay's backoff until
/// then or until `stopped`.
async fn provision_stream(
    cfg: RelayConfig,
    readiness: Readiness,
    stopped: impl Future<Output = ()>,
) {
    tokio::pin!(stopped);
    let mut backoff = cfg.backoff.0;
    loop {
        let attempt = tokio::select! {
            attempt = provision_once(&cfg) => attempt,
            () = &mut stopped => return,
        };
        match attempt {
            Ok(()) => {
                readiness.set_stream_provisioned();
                tracing::info!(stream = %cfg.stream.name, "NATS stream provisioned from this node");
                return;
            }
            Err(error) => {
                tracing::warn!(
                    stream = %cfg.stream.name,
                    %error,
                    retry_in_ms = backoff.as_millis() as u64,
                    "cannot provision the NATS stream yet; not ready"
                );
                readiness.set_stream_error(error);
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = &mut stopped => return,
        }
        backoff = (backoff * 2).min(cfg.backoff.1);
    }
}

/// One connection with the relay's settings (servers, credentials), one `ensure_stream`.
async fn provision_once(cfg: &RelayConfig) -> Result<(), String> {
    // Not the parser's message: it quotes the URL, password included, and this text is
    // shown on /readyz. (Settings::resolve refuses such a URL before this runs.)
    let servers = whistle_bus::parse_servers(&cfg.nats_url)
        .map_err(|_| "the NATS URL does not parse".to_string())?;
    let client = whistle_bus::with_credentials(async_nats::ConnectOptions::new(), &servers)
        .name("whistle-provision")
        .connection_timeout(Duration::from_secs(5))
        .connect(servers)
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    let js = async_nats::jetstream::ContextBuilder::new()
        .timeout(cfg.ack_timeout)
        .build(client.clone());
    let provisioned = whistle_bus::ensure_stream(&js, &cfg.stream)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    // This connection was only for provisioning; the relay keeps its own.
    if let Err(e) = client.drain().await {
        tracing::debug!(error = %e, "closing the provisioning connection");
    }
    provisioned
}
