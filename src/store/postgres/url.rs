//! The database URL, and the one way statushook connects with it: every session (the
//! pool's, the leases', the migrations', the feed listener's) goes through [`connect`],
//! over the TLS the URL asks for (see `tls.rs`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::tls::{self, SslMode, TlsSettings};
use crate::store::StoreError;

/// A connection's I/O, to be awaited (or polled for notifications) while its client is used.
pub type Connection =
    tokio_postgres::Connection<Socket, <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream>;

/// A `postgres://` URL, parsed, with libpq's TLS parameters. Its `Debug` shows where it
/// points and the TLS settings, never the password.
#[derive(Clone)]
pub struct DatabaseUrl {
    config: tokio_postgres::Config,
    tls: TlsSettings,
}

impl DatabaseUrl {
    /// Parses a `postgres://` (or `postgresql://`) URL and reads the certificates it names.
    /// The problem never quotes the URL, which may hold a password.
    pub fn parse(raw: &str) -> Result<DatabaseUrl, String> {
        let raw = raw.trim();
        if !(raw.starts_with("postgres://") || raw.starts_with("postgresql://")) {
            return Err("must be a postgres:// URL".into());
        }
        let (rest, tls) = TlsSettings::take(raw)?;
        let mut config = tokio_postgres::Config::from_str(&rest).map_err(|_| {
            "is not a valid postgres:// URL (check the host, the port and the percent-encoding)"
                .to_owned()
        })?;
        if config.get_hosts().is_empty() {
            return Err("has no host".into());
        }
        config.ssl_mode(tls.mode().negotiation());
        Ok(DatabaseUrl { config, tls })
    }

    /// Connects with the URL's own settings, over its TLS: for tools and tests. The
    /// service's sessions are made by [`DatabaseUrl::session`].
    pub async fn connect(&self) -> Result<(Client, Connection), tokio_postgres::Error> {
        connect(&self.config, &self.tls).await
    }

    /// Opens one of statushook's own sessions (see [`DatabaseUrl::connection_config`]).
    pub(super) async fn session(&self) -> Result<(Client, Connection), tokio_postgres::Error> {
        connect(&self.connection_config(), &self.tls).await
    }

    /// What the pool connects with: statushook's session settings and this URL's TLS.
    pub(super) fn pool_manager(
        &self,
        config: deadpool_postgres::ManagerConfig,
    ) -> deadpool_postgres::Manager {
        deadpool_postgres::Manager::from_connect(
            self.connection_config(),
            PoolConnect(self.tls.clone()),
            config,
        )
    }

    /// The connection settings every statushook connection uses: its own schema;
    /// `synchronous_commit` on whatever the server's default, since a `200` promises the
    /// callback survives a power cut; and a plan for each execution of a prepared
    /// statement, since a plan cached while a table was new and small (a sequential scan)
    /// would stay in use as it grows, until the next `ANALYZE`. Every statement is a
    /// handful of index lookups, so planning costs little.
    fn connection_config(&self) -> tokio_postgres::Config {
        let mut config = self.config.clone();
        let options = format!(
            "{} -c search_path=statushook -c synchronous_commit=on \
             -c plan_cache_mode=force_custom_plan",
            config.get_options().unwrap_or("")
        );
        config.options(options.trim());
        if config.get_application_name().is_none() {
            config.application_name("statushook");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = match self.config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
            None => String::new(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        write!(
            f,
            "postgres://{}@{host}:{port}/{}?{:?}",
            self.config.get_user().unwrap_or(""),
            self.config.get_dbname().unwrap_or(""),
            self.tls
        )
    }
}

/// A connection error as one line: why a certificate was refused, or the error and its
/// causes.
pub fn connect_failed(error: &tokio_postgres::Error) -> StoreError {
    if let Some(refusal) = tls::refusal(error) {
        return StoreError::unavailable(refusal);
    }
    let mut line = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(current) = cause {
        let text = current.to_string();
        if !line.contains(&text) {
            line = format!("{line}: {text}");
        }
        cause = current.source();
    }
    StoreError::unavailable(line)
}

/// Connects as libpq would under the URL's `sslmode`: with `prefer`, a TLS handshake that
/// fails is followed by an attempt without TLS; if that fails too, the TLS failure is the
/// one reported, since it says more.
async fn connect(
    config: &tokio_postgres::Config,
    tls: &TlsSettings,
) -> Result<(Client, Connection), tokio_postgres::Error> {
    match config.connect(tls.connector()).await {
        Err(error) if tls.mode() == SslMode::Prefer && tls::refusal(&error).is_some() => {
            let mut plain = config.clone();
            plain.ssl_mode(tokio_postgres::config::SslMode::Disable);
            plain.connect(tls.connector()).await.map_err(|_| error)
        }
        connected => connected,
    }
}

/// The pool's way of connecting: [`connect`], with the connection driven by a task of its
/// own, as deadpool expects.
struct PoolConnect(TlsSettings);

type Connecting<'a> = Pin<
    Box<dyn Future<Output = Result<(Client, JoinHandle<()>), tokio_postgres::Error>> + Send + 'a>,
>;

impl deadpool_postgres::Connect for PoolConnect {
    fn connect(&self, config: &tokio_postgres::Config) -> Connecting<'_> {
        let config = config.clone();
        Box::pin(async move {
            let (client, connection) = connect(&config, &self.0).await?;
            let driver = tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::warn!(%error, "a database connection ended");
                }
            });
            Ok((client, driver))
        })
    }
}
