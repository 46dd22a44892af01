//! Builds the running service from a `Config`: opens the store, binds the listener (port 0
//! in tests), and declares every route in one table.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use anyhow::Context;

use crate::config::{Config, PublicUrl};
use crate::connections::{self, Connections, Limits};
use crate::forwarding::{self, Forwarding};
use crate::jobs::alerts::{AlertMetrics, Alerts};
use crate::jobs::reconciler::{Cover, Reconciler};
use crate::jobs::retention::Retention;
use crate::jobs::Jobs;
use crate::metrics::Metrics;
use crate::routes;
use crate::secret::Secret;
use crate::store::Store;
use crate::twilio::client::{RetryPolicy, TwilioClient};
use crate::twilio::signature::Keys;

/// What every handler can reach.
pub struct AppState {
    pub store: Store,
    pub public_url: PublicUrl,
    pub signing_keys: Keys,
    pub api_token: Secret,
    /// A token that may only read, when configured.
    pub read_token: Option<Secret>,
    pub metrics: Arc<Metrics>,
    /// Present when Twilio credentials are configured.
    pub twilio: Option<TwilioClient>,
    /// The StatusCallback registered on messages sent through the API.
    pub status_callback: String,
    /// Present when STATUSHOOK_FORWARD_URL is configured.
    pub forwarding: Option<Forwarding>,
    /// The connections held, for `/metrics`.
    pub connections: Arc<Connections>,
    /// Places for exports running at once (`GET /v1/export`).
    pub exports: Arc<tokio::sync::Semaphore>,
    /// The per-address budget of wrong API tokens.
    pub refusals: routes::Refusals,
    /// Permits for change-feed long polls (see `routes/events.rs`).
    pub long_polls: Arc<tokio::sync::Semaphore>,
    /// How often alert rules are evaluated (`STATUSHOOK_ALERT_INTERVAL`).
    pub alert_interval: std::time::Duration,
    /// The alerts' counters, for `/metrics`.
    pub alert_metrics: Arc<AlertMetrics>,
}

/// How long a service whose store failed keeps answering `503` before it exits.
const FAILED_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

pub struct Application {
    port: u16,
    server: Server,
    store: Store,
    forwarder: Option<forwarding::Running>,
    /// The jobs that run on one replica at a time (the reconciler, retention, listing
    /// history).
    jobs: Jobs,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let metrics = Arc::new(Metrics::default());
        let observer = Arc::clone(&metrics);
        let observe = Box::new(move |size| observer.group_committed(size));
        let store = match &config.database_url {
            // The store's error says in one line what failed (a refused certificate, a
            // refused connection); its chain would repeat it.
            Some(url) => Store::open_postgres(url, observe)
                .await
                .map_err(|error| anyhow::anyhow!("cannot open the store at {url:?}: {error}"))?,
            None => Store::open_sled(&config.data_dir, observe).with_context(|| {
                format!("cannot open the store in {}", config.data_dir.display())
            })?,
        };
        let listener = TcpListener::bind(&config.listen)
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        connections::set_backlog(&listener).context("cannot set the listen queue")?;
        let port = listener.local_addr()?.port();
        let descriptors = connections::raise_descriptor_limit()
            .context("cannot read the limit of open files (RLIMIT_NOFILE)")?;
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let limits = Limits::new(descriptors, workers);
        let connections = Connections::new(limits);
        let retry = RetryPolicy {
            timeout: config.twilio_timeout,
            ..RetryPolicy::default()
        };
        let twilio = match config.twilio.clone() {
            Some(credentials) => Some(TwilioClient::new(credentials, retry)?),
            None => None,
        };
        // A firing `silence` alert asks the reconciler to cover its messages.
        let cover = twilio.as_ref().map(|_| Cover::default());
        let reconciler = twilio.as_ref().zip(cover.clone()).map(|(client, cover)| {
            Reconciler::new(
                store.clone(),
                client.clone(),
                Arc::clone(&metrics),
                config.reconcile_after,
                config.reconcile_rate,
                cover,
            )
        });
        let retention = config.retention.map(|age| Retention {
            store: store.clone(),
            metrics: Arc::clone(&metrics),
            age,
            interval: config.retention_interval,
        });
        let alerts = Alerts::new(
            store.clone(),
            config.alert_interval,
            config.public_url.clone(),
            cover,
        )?;
        let alert_metrics = alerts.metrics();
        let jobs = Jobs::start(
            store.clone(),
            reconciler,
            retention,
            alerts,
            Arc::clone(&metrics),
        );
        let forwarding = config.forward.clone().map(Forwarding::new);
        let forwarder = match &forwarding {
            Some(forwarding) => Some(
                forwarding
                    .start(store.clone(), Arc::clone(&metrics))
                    .await?,
            ),
            None => None,
        };
        let job_names = [
            (twilio.is_some(), "reconciler"),
            (config.retention.is_some(), "retention"),
            (config.forward.is_some(), "forwarding"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| *name)
        .collect::<Vec<_>>()
        .join(", ");
        let job_names = if job_names.is_empty() {
            "none".to_owned()
        } else {
            job_names
        };
        // The one start-up line: enough to tell from the log alone what this process serves,
        // from where, and what runs in the background.
        tracing::info!(
            address = %listener.local_addr()?,
            port,
            store = %match &config.database_url {
                Some(url) => format!("postgres {url:?}"),
                None => format!("sled {}", config.data_dir.display()),
            },
            public_url = %config.public_url.for_log(),
            jobs = job_names,
            max_connections = limits.max_connections,
            open_files = limits.descriptors,
            "listening"
        );
        let state = web::Data::new(AppState {
            store: store.clone(),
            public_url: config.public_url.clone(),
            signing_keys: config.signing_keys.clone(),
            api_token: config.api_token.clone(),
            read_token: config.read_token.clone(),
            metrics,
            twilio,
            status_callback: config.status_callback(),
            forwarding,
            connections: Arc::clone(&connections),
            exports: Arc::new(tokio::sync::Semaphore::new(routes::MOST_EXPORTS)),
            refusals: routes::Refusals::default(),
            long_polls: Arc::new(tokio::sync::Semaphore::new(routes::MAX_LONG_POLLS)),
            alert_interval: config.alert_interval,
            alert_metrics,
        });
        let server = HttpServer::new(move || {
            // The last wrapped runs first: connections are tracked around everything, the
            // request log sees every answer, the guard runs before any route, and any error
            // that is not JSON yet becomes JSON.
            App::new()
                .wrap(from_fn(routes::json_errors))
                .wrap(from_fn(routes::guard_request))
                .wrap(from_fn(crate::telemetry::log_request))
                .wrap(from_fn(connections::track_requests))
                .app_data(state.clone())
                .configure(routes_table)
                .default_service(web::to(routes::no_route))
        })
        .workers(workers)
        .max_connections(limits.per_worker)
        .client_request_timeout(connections::HEADER_DEADLINE)
        .keep_alive(connections::KEEP_ALIVE)
        .client_disconnect_timeout(std::time::Duration::from_secs(1))
        .on_connect(connections.on_connect())
        .listen(listener)?
        // SIGTERM stops accepting, then waits this long for in-flight requests.
        .shutdown_timeout(30)
        .run();
        Ok(Application {
            port,
            server,
            store,
            forwarder,
            jobs,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM or SIGINT, then flushes and closes the store.
    ///
    /// If the store fails a write, the service cannot heal in place (sled keeps failing
    /// after an I/O error): it keeps answering `503` for [`FAILED_GRACE`], so requests in
    /// flight get an answer, then stops and returns the error, and the process exits
    /// non-zero for its supervisor to restart it on the recovered store.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let mut server = tokio::spawn(self.server);
        let served = tokio::select! {
            served = &mut server => {
                served.context("the HTTP server task failed").and_then(|served| served.context("the HTTP server failed"))
            }
            error = self.store.failed() => {
                tracing::error!(%error, "the store failed; stopping so that a restart recovers it");
                tokio::time::sleep(FAILED_GRACE).await;
                handle.stop(false).await;
                Err(anyhow::Error::new(error).context("the store failed a write"))
            }
        };
        // The forwarder saves its progress as it stops, so it stops before the store closes.
        if let Some(forwarder) = self.forwarder {
            forwarder.stop().await;
        }
        self.jobs.stop().await;
        crate::telemetry::Repeats::global().flush_all();
        served?;
        self.store.close().await.context("the final flush failed")?;
        tracing::info!("stopped; every acknowledged callback is on disk");
        Ok(())
    }
}

/// Every route of the service.
fn routes_table(config: &mut web::ServiceConfig) {
    config
        .service(
            web::resource("/twilio/status")
                .route(web::post().to(routes::status_callback))
                .default_service(web::to(routes::no_route)),
        )
        .service(
            web::resource("/twilio/events")
                .app_data(web::PayloadConfig::new(routes::MAX_EVENT_STREAM_BODY))
                .route(web::post().to(routes::event_streams))
                .default_service(web::to(routes::no_route)),
        )
        .route("/healthz", web::get().to(routes::healthz))
        .route("/readyz", web::get().to(routes::readyz))
        .route("/metrics", web::get().to(routes::metrics))
        .route("/openapi.json", web::get().to(routes::openapi))
        .service(
            web::scope("/v1")
                .wrap(from_fn(routes::require_bearer))
                // The one body of the API, `POST /v1/messages`: its limit, answered 413
                // with a JSON error by the handler.
                .app_data(web::PayloadConfig::new(routes::MAX_SEND_BODY))
                .route("/messages", web::get().to(routes::list_messages))
                .route("/messages", web::post().to(routes::send_message))
                .route("/messages", web::delete().to(routes::delete_messages))
                .route("/messages/{sid}", web::get().to(routes::get_message))
                .route("/messages/{sid}", web::delete().to(routes::delete_message))
                .route("/export", web::get().to(routes::export_messages))
                .route("/stats", web::get().to(routes::stats))
                .route("/events", web::get().to(routes::events))
                .route("/stats/series", web::get().to(routes::stats_series))
                .route("/stats/breakdown", web::get().to(routes::stats_breakdown))
                .route("/access", web::get().to(routes::token_access))
                .route("/forwarding", web::get().to(routes::forwarding_status))
                .route(
                    "/forwarding/replay",
                    web::post().to(routes::forwarding_replay),
                )
                .route("/alerts", web::get().to(routes::list_alerts))
                .route("/alerts/rules", web::get().to(routes::list_alert_rules))
                .route(
                    "/alerts/rules/{name}",
                    web::get().to(routes::get_alert_rule),
                )
                .route(
                    "/alerts/rules/{name}",
                    web::put().to(routes::put_alert_rule),
                )
                .route(
                    "/alerts/rules/{name}",
                    web::delete().to(routes::delete_alert_rule),
                ),
        )
        .configure(routes::ui_routes);
}
