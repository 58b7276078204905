//! `App`: everything wired together. `App::build` opens the store, starts the workers and binds the
//! listener (port 0 works, for tests); `App::shutdown` stops in order: stop accepting, let in-flight
//! requests finish within the grace period, end the rest, then write every queued log row.

use crate::{
    config::Config,
    crypto::{DataCipher, MasterKey},
    keys::KeyCache,
    providers, registry,
    routing::{self, KeySource, ProviderEntry},
    server::{self, AppState, SharedState},
    store::{self, DynStore},
    workers::{
        log_writer::{self, LogSink},
        retention,
    },
};
use crate::{hub::Hub, workers::metrics::Sampler};
use anyhow::Context;
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::task::JoinHandle;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub struct App {
    addr: SocketAddr,
    state: SharedState,
    shutdown: CancellationToken,
    close_log: CancellationToken,
    tracker: TaskTracker,
    server: JoinHandle<()>,
    log_writer: JoinHandle<()>,
    /// Ends the server's threads when the app is shut down or dropped (after the log is written:
    /// database connections opened on them stay usable until then).
    _shards: tokio_util::sync::DropGuard,
}

/// How long ended streams get to flush their last event after the grace period.
const HARD_STOP_FLUSH: Duration = Duration::from_secs(5);

impl App {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("could not create data_dir {}", config.data_dir.display()))?;
        let master = load_master_key(&config)?;
        let store = store::open(&config.database_url(), config.database.max_connections)
            .await
            .context("could not open the database")?;
        let client = providers::http_client();
        let data_cipher = master.data_cipher();
        let providers = build_providers(&config, &store, &data_cipher).await?;
        // Serve at once from the last good copy; the worker fetches a fresh one in the background.
        let registry = Arc::new(match registry::source::load_cache(&config.data_dir) {
            Some(c) => c.into(),
            None => registry::Registry::default(),
        });
        let keys = KeyCache::new(store.clone()).await?;

        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let close_log = CancellationToken::new();
        let hard_stop = CancellationToken::new();

        let coord = match &config.redis.url {
            Some(url) => {
                Some(crate::coordination::Coordinator::connect(url, &config.redis.prefix).await?)
            }
            None => None,
        };
        let hub = match &coord {
            Some(c) => Hub::default().with_fanout(c.fanout(shutdown.clone())),
            None => Hub::default(),
        };
        if let Some(c) = &coord {
            tracker.spawn(
                c.clone()
                    .listen(hub.clone(), keys.clone(), shutdown.clone()),
            );
        }
        let (logs, log_rx) = LogSink::new(config.log.queue_capacity, tracker.clone());
        let live = hub.clone();
        let log_writer = tokio::spawn(log_writer::run(
            store.clone(),
            log_rx,
            config.log.batch_size,
            logs.stats().clone(),
            // Each row goes to the live view as soon as it is written (its id known).
            Box::new(move |id, row| {
                if live.wanted() {
                    live.publish("request_log", &server::api::logs::LogItem::new(id, row));
                }
            }),
            close_log.clone(),
        ));
        let sampler = Arc::new(Sampler::default());
        let depth_of = logs.clone();
        tracker.spawn(sampler.clone().run(
            logs.stats().clone(),
            move || depth_of.depth(),
            hub.clone(),
            shutdown.clone(),
        ));
        tracker.spawn(keys.clone().watch(shutdown.clone()));
        if config.metrics.enabled
            && let Some(handle) = server::prometheus::install()
        {
            tracker.spawn(server::prometheus::upkeep(handle, shutdown.clone()));
        }
        if !config.log.retention.is_zero() {
            tracker.spawn(retention::run(
                store.clone(),
                config.log.retention,
                retention::INTERVAL,
                shutdown.clone(),
            ));
        }
        let events = crate::events::Events::default();
        tracker.spawn(forward_events(
            events.subscribe(),
            hub.clone(),
            shutdown.clone(),
        ));
        tracker.spawn(registry::source::run(
            events.clone(),
            registry.clone(),
            config.registry.url.clone(),
            config.data_dir.clone(),
            config.registry.refresh,
            client.clone(),
            shutdown.clone(),
        ));

        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("could not listen on {}", config.server.listen))?;
        let addr = listener.local_addr()?;
        let grace = config.server.shutdown_grace;
        let limits = server::listen::Limits::from(&config.server);
        let config_pricing = config.pricing.clone();
        let breakers =
            crate::resilience::breaker::Breakers::new(config.health.clone(), events.clone());
        let state = Arc::new(AppState {
            config: Arc::new(config),
            store,
            keys,
            providers: arc_swap::ArcSwap::from_pointee(providers),
            data_cipher,
            http: client,
            provider_reload: tokio::sync::Mutex::new(()),
            provider_health: Default::default(),
            login_limiter: Default::default(),
            started_at: std::time::Instant::now(),
            pricer: registry::pricing::Pricer::new(registry.clone(), config_pricing),
            budgets: crate::budget::Budgets::new(),
            rate_limits: Default::default(),
            token_limits: Default::default(),
            breakers,
            coord,
            events,
            registry,
            logs,
            sessions: server::session::SessionSigner::new(master.session_key()),
            hub,
            sampler,
            shutdown: shutdown.clone(),
            hard_stop: hard_stop.clone(),
        });
        let probe_interval = state.config.health.probe_interval;
        if !probe_interval.is_zero() {
            tracker.spawn(crate::workers::probes::run(
                state.clone(),
                probe_interval,
                shutdown.clone(),
            ));
        }
        let app = server::router(state.clone());
        let stop_shards = CancellationToken::new();
        let shards = server::shards::Shards::start(stop_shards.clone())
            .context("could not start the server threads")?;
        let server = tokio::spawn(serve(
            listener,
            app,
            limits,
            shards,
            shutdown.clone(),
            hard_stop,
            grace,
        ));
        tracing::info!(%addr, "GopherGate is listening");
        Ok(Self {
            addr,
            state,
            shutdown,
            close_log,
            tracker,
            server,
            log_writer,
            _shards: stop_shards.drop_guard(),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &SharedState {
        &self.state
    }

    /// A token that starts a graceful stop when cancelled (e.g. from a signal handler).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until the shutdown token fires, then stops gracefully.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.shutdown.cancelled().await;
        self.shutdown().await
    }

    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        if let Err(e) = self.server.await {
            tracing::error!(error = %e, "server task failed");
        }
        // Rows from requests that ended while draining are queued by now (or by tracked tasks).
        self.tracker.close();
        self.tracker.wait().await;
        self.close_log.cancel();
        self.log_writer
            .await
            .context("the request log writer failed")?;
        let stats = self.state.logs.stats();
        tracing::info!(
            written = stats.written.load(std::sync::atomic::Ordering::Relaxed),
            lost = stats.lost.load(std::sync::atomic::Ordering::Relaxed),
            "stopped"
        );
        Ok(())
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    limits: server::listen::Limits,
    shards: server::shards::Shards,
    shutdown: CancellationToken,
    hard_stop: CancellationToken,
    grace: Duration,
) {
    let server = server::listen::serve(listener, app, limits, shards, shutdown.clone());
    let mut server = std::pin::pin!(server);
    tokio::select! {
        () = &mut server => return,
        _ = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!("grace period over; ending in-flight requests");
            hard_stop.cancel();
        }
    }
    if tokio::time::timeout(HARD_STOP_FLUSH, &mut server)
        .await
        .is_err()
    {
        tracing::warn!("some connections did not close in time");
    }
}

/// Worker: passes operator events on to the dashboards.
async fn forward_events(
    mut rx: tokio::sync::broadcast::Receiver<crate::events::Event>,
    hub: Hub,
    token: CancellationToken,
) {
    loop {
        let ev = tokio::select! {
            _ = token.cancelled() => return,
            ev = rx.recv() => ev,
        };
        match ev {
            Ok(ev) => hub.publish("event", &ev),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

fn load_master_key(config: &Config) -> anyhow::Result<MasterKey> {
    match &config.encryption_key {
        Some(k) => MasterKey::parse(k.expose()).map_err(|e| anyhow::anyhow!("encryption_key {e}")),
        None => {
            let path = config.data_dir.join("encryption.key");
            let (key, created) = MasterKey::load_or_create(&path)
                .map_err(|e| anyhow::anyhow!("encryption key file {}: {e}", path.display()))?;
            if created {
                tracing::info!(path = %path.display(), "generated a new encryption key; back it up");
            }
            Ok(key)
        }
    }
}

/// Rebuilds the providers from the configuration and the stored keys and swaps them in, so a key
/// set from the dashboard takes effect without a restart.
pub async fn reload_providers(state: &AppState) -> anyhow::Result<()> {
    let _one_at_a_time = state.provider_reload.lock().await;
    let providers = build_providers(&state.config, &state.store, &state.data_cipher).await?;
    state.providers.store(Arc::new(providers));
    Ok(())
}

/// Builds every provider adapter. A key stored (encrypted) in the database fills in for a provider
/// that has none in the configuration: a key from the configuration or the environment wins.
async fn build_providers(
    config: &Config,
    store: &DynStore,
    cipher: &DataCipher,
) -> anyhow::Result<routing::Router> {
    let mut entries = Vec::new();
    for mut settings in config.providers()? {
        let mut key_source = if settings.api_key.is_some() {
            KeySource::Config
        } else {
            KeySource::None
        };
        if settings.api_key.is_none()
            && let Some(sealed) = store.get_credential(&settings.name).await?
        {
            match cipher.open(&sealed, settings.name.as_bytes()) {
                Ok(plain) => {
                    settings.api_key = Some(String::from_utf8_lossy(&plain).into_owned().into());
                    key_source = KeySource::Database;
                }
                Err(e) => {
                    tracing::error!(provider = %settings.name, error = %e, "stored provider key unusable")
                }
            }
        }
        if let Some(enabled) = store.provider_enabled(&settings.name).await? {
            settings.enabled = enabled;
        }
        let adapter = providers::build(&settings);
        let reason = routing::unavailable_reason(&settings, adapter.is_some());
        entries.push(ProviderEntry {
            adapter: if reason.is_none() { adapter } else { None },
            unavailable_reason: reason,
            settings,
            key_source,
        });
    }
    Ok(routing::Router::new(entries, config.routes.clone()))
}
