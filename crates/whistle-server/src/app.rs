//! `Application::build(settings)` → a bound, migrated, ready server; `run_until_stopped`
//! serves until the shutdown future completes. Binding happens in `build` so that the
//! caller (and tests using port 0) know the address before serving starts.

use crate::config::Settings;
use crate::tls::{TlsListener, TlsSettings};
use anyhow::{Context, Result};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use whistle_api::scheduler::{self, SchedulerConfig};
use whistle_api::{AppState, Clock, Live, SystemClock, TokenAuthenticator};
use whistle_bus::{Relay, RelayConfig, RelayStatus};
use whistle_projections::{Projector, ProjectorConfig};
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
                    .with_limits(settings.limits),
            ),
            clock,
        };
        // Configuration changed through AdminService outranks the files it was seeded from.
        whistle_api::admin::refresh(&state)
            .await
            .map_err(|e| anyhow::anyhow!("loading the admin configuration: {e}"))?;
        ensure_case_views(&state.store).await?;
        Ok(Application {
            listener,
            http_listener,
            addr,
            http_addr,
            scheduler: settings.scheduler,
            relay_status: settings.nats.as_ref().map(|_| RelayStatus::default()),
            nats: settings.nats,
            tls: settings.tls,
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

    /// Serve gRPC, run the deadline scheduler (when configured) and the NATS relay
    /// (with `--nats-url`; NATS being down never stops gRPC: the relay retries with
    /// backoff) until `shutdown`.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
        let store = self.state.store.clone();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let relay = self.nats.map(|cfg| {
            tracing::info!(nats = %whistle_bus::servers::redacted(&cfg.nats_url), stream = %cfg.stream.name, "relay to NATS JetStream enabled");
            let state = self.state.clone();
            let mut stopped = stopped.clone();
            let failures = tokio::spawn(whistle_bus::advisories::run_delivery_failures(
                cfg.nats_url.clone(),
                cfg.stream.clone(),
                move |f| whistle_api::departments::record_delivery_failure(state.clone(), f),
                async move {
                    let _ = stopped.wait_for(|s| *s).await;
                },
            ));
            let status = self.relay_status.clone().unwrap_or_default();
            (Relay::spawn_with(store.clone(), cfg, status), failures)
        });
        let scheduler = self.scheduler.map(|cfg| {
            let mut stopped = stopped.clone();
            tokio::spawn(scheduler::run(self.state.clone(), cfg, async move {
                let _ = stopped.wait_for(|s| *s).await;
            }))
        });
        let projector = Projector::spawn(store.clone(), ProjectorConfig::default());
        let follower = {
            let mut stopped = stopped.clone();
            tokio::spawn(whistle_api::admin::follow(
                self.state.clone(),
                std::time::Duration::from_secs(2),
                async move {
                    let _ = stopped.wait_for(|s| *s).await;
                },
            ))
        };
        let http = {
            let router = crate::http::router(crate::http::Http {
                state: self.state.clone(),
                relay: self.relay_status.clone(),
                projector: projector.status(),
                prometheus: crate::http::prometheus(),
            });
            let mut stopped = stopped.clone();
            let listener = self.http_listener;
            let tls = self.tls.as_ref().map(|t| t.http.clone());
            tokio::spawn(async move {
                let graceful = async move {
                    let _ = stopped.wait_for(|s| *s).await;
                };
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
        let tls = self.tls.as_ref().map(|t| &t.grpc);
        let served = whistle_api::serve_with_tls(self.listener, self.state, tls, shutdown).await;
        let _ = stop.send(true);
        let _ = follower.await;
        let _ = http.await;
        if let Some(task) = scheduler {
            let _ = task.await;
        }
        projector.shutdown().await;
        if let Some((relay, failures)) = relay {
            tracing::info!(lag = relay.lag(), "stopping the relay");
            relay.stop().await;
            let _ = failures.await;
        }
        store.close().await;
        served.context("serving gRPC")
    }
}
