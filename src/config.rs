//! Configuration: one typed `Config`, built once at start-up from flags and the environment.
//!
//! This is the only module that reads environment variables. Every setting is checked here,
//! so a missing or malformed one stops start-up with a single line naming it, instead of
//! surfacing as a 500 on the first callback. Secrets are wrapped in [`Secret`], whose `Debug`
//! and `Display` print `[redacted]`, so no log line or panic message can carry one.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::domain::is_sid;
use crate::forwarding::{
    ForwardConfig, Retry, SigningSecret, Start, DEFAULT_CONCURRENCY, MAX_CONCURRENCY,
};
use crate::secret::Secret;
pub use crate::store::DatabaseUrl;
use crate::twilio::signature::Keys;

/// The flags of `statushook serve`; each also reads the environment variable it names.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to bind.
    #[arg(long, env = "STATUSHOOK_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// The sled database folder.
    #[arg(long, env = "STATUSHOOK_DATA_DIR", default_value = "./statushook-data")]
    pub data_dir: PathBuf,
    /// The base URL Twilio reaches this service at, e.g. https://hooks.example.com; callback
    /// signatures are checked against it.
    #[arg(long, env = "STATUSHOOK_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// postgres://… : store everything in PostgreSQL instead of the sled folder; any
    /// number of replicas may share one database.
    #[arg(long, env = "STATUSHOOK_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<Secret>,
}

/// Environment variables read besides the flags, listed in `--help`.
pub const ENV_HELP: &str = "\
Secrets and Twilio settings are read from the environment only:
  STATUSHOOK_API_TOKEN          bearer token for the /v1 API (required for serve)
  TWILIO_AUTH_TOKEN             primary auth token: HMAC key of callbacks (required for serve)
  TWILIO_AUTH_TOKEN_SECONDARY   second accepted token during a rotation
  STATUSHOOK_SHARED_KEYS        webhook shared keys for HMAC-SHA256: id=secret,id=secret
  TWILIO_ACCOUNT_TOKENS         auth tokens of further accounts and subaccounts: AC...=token,AC...=token
  TWILIO_ACCOUNT_SID            AC... account (required for sending and reconciling)
  TWILIO_API_KEY, TWILIO_API_SECRET   SK... key for the REST API's Basic auth
  TWILIO_API_BASE               base URL of the Twilio REST API [default: https://api.twilio.com]
  TWILIO_EVENTS_API_BASE        base URL of Twilio's Event Streams API, for `streams` [default: https://events.twilio.com]
  STATUSHOOK_RECONCILE_AFTER    age at which a non-final message is fetched from Twilio (s, m, h or d) [default: 15m]
  STATUSHOOK_CALLBACK_OVERRIDES connection overrides appended to the StatusCallback [default: #rc=5&rp=ct,rt,5xx]
  STATUSHOOK_RECONCILE_RATE     most Fetch Message requests a second by the reconciler [default: 5]
  STATUSHOOK_TWILIO_TIMEOUT     how long one request to Twilio's API may take [default: 15s]
  STATUSHOOK_LOG_FORMAT         text (default) or json; RUST_LOG sets the level
  STATUSHOOK_RETENTION          delete messages not updated for this long (90d, 36h, 30m, 45s) [default: keep forever]
  STATUSHOOK_RETENTION_INTERVAL pause between two retention passes [default: 1m]
  STATUSHOOK_FORWARD_URL        forward every stored transition there (Standard Webhooks)
  STATUSHOOK_FORWARD_SECRET     whsec_... signing secret of forwarded webhooks (required with the URL)
  STATUSHOOK_FORWARD_STATUSES   forward only these statuses, comma-separated [default: all]
  STATUSHOOK_FORWARD_RETRY_MIN  delay before the first retry of a forward; doubles each time [default: 5s]
  STATUSHOOK_FORWARD_RETRY_MAX  longest delay between retries of a forward [default: 1h]
  STATUSHOOK_FORWARD_START      where forwarding begins on a store that never forwarded: now or all [default: now]
  STATUSHOOK_FORWARD_CONCURRENCY most forwards in flight at once, 1 to 256 [default: 16]
  STATUSHOOK_READ_TOKEN         a second bearer token that may only read (GET under /v1)
  STATUSHOOK_ALERT_INTERVAL     how often alert rules are evaluated [default: 30s]";

/// A setting that is missing or malformed; its message names the setting.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {problem}")]
pub struct ConfigError {
    pub name: &'static str,
    pub problem: String,
}

impl ConfigError {
    fn missing(name: &'static str) -> Self {
        ConfigError {
            name,
            problem: "is required but not set".into(),
        }
    }

    fn malformed(name: &'static str, problem: impl Into<String>) -> Self {
        ConfigError {
            name,
            problem: problem.into(),
        }
    }
}

/// The base URL Twilio calls, without a trailing slash, so that appending a request target
/// (which always starts with `/`) gives the URL Twilio signed. It may carry user info
/// (`https://user:pass@host`), which Twilio signs with the URL; `Debug` and
/// [`PublicUrl::for_log`] hide its password.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicUrl(String);

impl PublicUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim().trim_end_matches('/');
        check_http_url(trimmed)?;
        if trimmed.contains(['?', '#']) {
            return Err("must not contain a query or fragment".into());
        }
        // No request target can follow a space or a control character, and a trailing one
        // (`https://host /`) would otherwise stay in every signed URL.
        if trimmed.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err("must not contain a space or a control character".into());
        }
        let path = trimmed.split_once("://").map_or("", |(_, rest)| {
            rest.find('/').map_or("", |slash| &rest[slash..])
        });
        if let Some(base) = path
            .strip_suffix("/twilio/status")
            .map(|_| &trimmed[..trimmed.len() - "/twilio/status".len()])
        {
            return Err(format!(
                "is the base URL Twilio reaches statushook at, not the callback URL: \
                 use {} (statushook adds /twilio/status itself)",
                loggable_url(base)
            ));
        }
        Ok(PublicUrl(trimmed.to_owned()))
    }

    /// The URL Twilio called for a request whose target (path and query) is `target`.
    pub fn join(&self, target: &str) -> String {
        format!("{}{}", self.0, target)
    }

    /// The URL for a log line: its password, if any, hidden.
    pub fn for_log(&self) -> String {
        loggable_url(&self.0)
    }
}

impl fmt::Debug for PublicUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PublicUrl").field(&self.for_log()).finish()
    }
}

/// A URL as a log line may show it: without its query and fragment (they may hold a
/// user's data) and with the password of any user info replaced by `[redacted]`.
pub fn loggable_url(url: &str) -> String {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    let url = &url[..end];
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user_info, host)) => {
            let user = user_info.split(':').next().unwrap_or_default();
            let password = if user_info.contains(':') {
                ":[redacted]"
            } else {
                ""
            };
            format!("{scheme}://{user}{password}@{host}{path}")
        }
        None => url.to_owned(),
    }
}

/// Checks that `url` is an `http(s)://` URL whose host and port are valid: a host name, an
/// IPv4 address or a bracketed IPv6 address, and a port from 1 to 65535 if one is given.
fn check_http_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("must start with https:// or http://")?;
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{:?} contains a space or a control character",
            loggable_url(url)
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_and_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let (host, port) = match host_and_port.rfind(':') {
        Some(colon) if !host_and_port[colon..].contains(']') => {
            (&host_and_port[..colon], Some(&host_and_port[colon + 1..]))
        }
        _ => (host_and_port, None),
    };
    if host.is_empty() {
        return Err("has no host".into());
    }
    let valid_host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(literal) => literal.parse::<std::net::Ipv6Addr>().is_ok(),
        None => host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')),
    };
    if !valid_host {
        return Err(format!("{host:?} is not a valid host name"));
    }
    if let Some(port) = port {
        if !port.parse::<u16>().is_ok_and(|port| port > 0) {
            return Err(format!("{port:?} is not a port (1 to 65535)"));
        }
    }
    Ok(())
}

/// Checks `STATUSHOOK_LISTEN`: `host:port`, where host is an IP address (IPv6 in brackets)
/// or a host name, and port is from 0 (any free port) to 65535.
fn check_listen(listen: &str) -> Result<(), ConfigError> {
    let malformed = |problem: String| ConfigError::malformed("STATUSHOOK_LISTEN", problem);
    if listen.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    let (host, port) = listen.rsplit_once(':').ok_or_else(|| {
        malformed(format!(
            "{listen:?} is not host:port, such as 127.0.0.1:8080"
        ))
    })?;
    if port.parse::<u16>().is_err() {
        return Err(malformed(format!("{port:?} is not a port (0 to 65535)")));
    }
    let valid_host = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'));
    if !valid_host {
        return Err(malformed(format!(
            "{host:?} is not an IP address or host name"
        )));
    }
    Ok(())
}

/// How log lines are written: `STATUSHOOK_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// Reads `STATUSHOOK_LOG_FORMAT`: `text` (the default) or `json`.
    pub fn from_env() -> Result<LogFormat, ConfigError> {
        Self::parse(std::env::var("STATUSHOOK_LOG_FORMAT").ok().as_deref())
    }

    fn parse(raw: Option<&str>) -> Result<LogFormat, ConfigError> {
        match raw.map(str::trim) {
            None | Some("") | Some("text") => Ok(LogFormat::Text),
            Some("json") => Ok(LogFormat::Json),
            Some(other) => Err(ConfigError::malformed(
                "STATUSHOOK_LOG_FORMAT",
                format!("{other:?} is not a log format (use text or json)"),
            )),
        }
    }
}

/// How statushook authenticates to Twilio's REST API.
#[derive(Debug, Clone)]
pub struct TwilioCredentials {
    pub account_sid: String,
    /// Basic-auth user: an `SK…` API key when one is configured, else the account SID.
    pub username: String,
    pub password: Secret,
    pub api_base: String,
}

/// Everything `serve` needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: String,
    pub data_dir: PathBuf,
    /// PostgreSQL instead of the sled folder, when set.
    pub database_url: Option<DatabaseUrl>,
    pub public_url: PublicUrl,
    pub api_token: Secret,
    /// `STATUSHOOK_READ_TOKEN`: a bearer token that may only read.
    pub read_token: Option<Secret>,
    pub signing_keys: Keys,
    /// Present when TWILIO_ACCOUNT_SID is set: enables sending and reconciling.
    pub twilio: Option<TwilioCredentials>,
    pub reconcile_after: Duration,
    /// Fetches a second, at most.
    pub reconcile_rate: f64,
    pub callback_overrides: String,
    pub twilio_timeout: Duration,
    /// Messages not updated for this long are deleted (`STATUSHOOK_RETENTION`).
    pub retention: Option<Duration>,
    /// The pause between two retention passes.
    pub retention_interval: Duration,
    /// Present when STATUSHOOK_FORWARD_URL is set.
    pub forward: Option<ForwardConfig>,
    /// How often alert rules are evaluated (`STATUSHOOK_ALERT_INTERVAL`).
    pub alert_interval: Duration,
}

/// What `statushook send` needs, validated.
#[derive(Debug, Clone)]
pub struct SendConfig {
    pub twilio: TwilioCredentials,
    /// `{PUBLIC_URL}/twilio/status` with the connection overrides.
    pub status_callback: String,
    pub twilio_timeout: Duration,
}

impl SendConfig {
    pub fn from_env(public_url: Option<&str>) -> Result<SendConfig, ConfigError> {
        let env = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|value| !value.trim().is_empty())
        };
        let public_url = public_url.ok_or(ConfigError::missing("STATUSHOOK_PUBLIC_URL"))?;
        let public_url = PublicUrl::parse(public_url)
            .map_err(|problem| ConfigError::malformed("STATUSHOOK_PUBLIC_URL", problem))?;
        let twilio = twilio_credentials(&env)?.ok_or(ConfigError::missing("TWILIO_ACCOUNT_SID"))?;
        Ok(SendConfig {
            twilio,
            status_callback: status_callback(&public_url, &callback_overrides(&env)?),
            twilio_timeout: twilio_timeout(&env)?,
        })
    }
}

/// What `statushook streams setup` and `streams status` need, validated.
#[derive(Debug, Clone)]
pub struct StreamsConfig {
    pub twilio: TwilioCredentials,
    /// `{PUBLIC_URL}/twilio/events`: the sink's destination.
    pub destination: String,
    /// The base URL of Twilio's Event Streams API (`TWILIO_EVENTS_API_BASE`).
    pub events_api_base: String,
    pub twilio_timeout: Duration,
}

impl StreamsConfig {
    pub fn from_env(public_url: Option<&str>) -> Result<StreamsConfig, ConfigError> {
        let env = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|value| !value.trim().is_empty())
        };
        let public_url = public_url.ok_or(ConfigError::missing("STATUSHOOK_PUBLIC_URL"))?;
        let public_url = PublicUrl::parse(public_url)
            .map_err(|problem| ConfigError::malformed("STATUSHOOK_PUBLIC_URL", problem))?;
        let twilio = twilio_credentials(&env)?.ok_or(ConfigError::missing("TWILIO_ACCOUNT_SID"))?;
        let events_api_base = env("TWILIO_EVENTS_API_BASE")
            .unwrap_or_else(|| "https://events.twilio.com".into())
            .trim_end_matches('/')
            .to_owned();
        check_http_url(&events_api_base)
            .map_err(|problem| ConfigError::malformed("TWILIO_EVENTS_API_BASE", problem))?;
        Ok(StreamsConfig {
            twilio,
            destination: public_url.join("/twilio/events"),
            events_api_base,
            twilio_timeout: twilio_timeout(&env)?,
        })
    }
}

impl Config {
    /// The StatusCallback registered on messages statushook sends.
    pub fn status_callback(&self) -> String {
        status_callback(&self.public_url, &self.callback_overrides)
    }

    /// Builds the `serve` configuration from its flags and the process environment.
    pub fn for_serve(args: &ServeArgs) -> Result<Config, ConfigError> {
        Self::for_serve_with(args, |name| std::env::var(name).ok())
    }

    /// As [`Config::for_serve`], with the environment given as a lookup function, so tests
    /// can build a configuration without touching the process environment.
    pub fn for_serve_with(
        args: &ServeArgs,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let get = |name: &str| env(name).filter(|value| !value.trim().is_empty());
        let public_url = args
            .public_url
            .as_deref()
            .ok_or(ConfigError::missing("STATUSHOOK_PUBLIC_URL"))?;
        let public_url = PublicUrl::parse(public_url)
            .map_err(|problem| ConfigError::malformed("STATUSHOOK_PUBLIC_URL", problem))?;
        let api_token =
            get("STATUSHOOK_API_TOKEN").ok_or(ConfigError::missing("STATUSHOOK_API_TOKEN"))?;
        check_token("STATUSHOOK_API_TOKEN", &api_token)?;
        let primary = get("TWILIO_AUTH_TOKEN").ok_or(ConfigError::missing("TWILIO_AUTH_TOKEN"))?;
        let mut auth_tokens = vec![Secret::new(primary)];
        if let Some(secondary) = get("TWILIO_AUTH_TOKEN_SECONDARY") {
            auth_tokens.push(Secret::new(secondary));
        }
        let shared_keys = match get("STATUSHOOK_SHARED_KEYS") {
            Some(raw) => parse_shared_keys(&raw)?,
            None => Vec::new(),
        };
        let account_tokens = match get("TWILIO_ACCOUNT_TOKENS") {
            Some(raw) => parse_account_tokens(&raw)?,
            None => Vec::new(),
        };
        check_listen(&args.listen)?;
        let reconcile_after = match get("STATUSHOOK_RECONCILE_AFTER") {
            Some(raw) => parse_duration(&raw)
                .map_err(|problem| ConfigError::malformed("STATUSHOOK_RECONCILE_AFTER", problem))?,
            None => Duration::from_secs(15 * 60),
        };
        let database_url = args
            .database_url
            .as_ref()
            .map(Secret::expose)
            .filter(|raw| !raw.trim().is_empty())
            .map(DatabaseUrl::parse)
            .transpose()
            .map_err(|problem| ConfigError::malformed("STATUSHOOK_DATABASE_URL", problem))?;
        Ok(Config {
            listen: args.listen.clone(),
            data_dir: args.data_dir.clone(),
            database_url,
            public_url,
            read_token: read_token(&get, &api_token)?,
            api_token: Secret::new(api_token),
            signing_keys: Keys {
                auth_tokens,
                account_tokens,
                shared_keys,
            },
            twilio: twilio_credentials(&get)?,
            reconcile_after,
            reconcile_rate: reconcile_rate(&get)?,
            callback_overrides: callback_overrides(&get)?,
            twilio_timeout: twilio_timeout(&get)?,
            retention: optional_duration(&get, "STATUSHOOK_RETENTION")?,
            retention_interval: optional_duration(&get, "STATUSHOOK_RETENTION_INTERVAL")?
                .unwrap_or(Duration::from_secs(60)),
            forward: forward_config(&get)?,
            alert_interval: optional_duration(&get, "STATUSHOOK_ALERT_INTERVAL")?
                .unwrap_or(DEFAULT_ALERT_INTERVAL),
        })
    }
}

/// How often alert rules are evaluated unless `STATUSHOOK_ALERT_INTERVAL` says otherwise.
pub const DEFAULT_ALERT_INTERVAL: Duration = Duration::from_secs(30);

/// The fewest characters a bearer token may have. The length is all a start-up check can
/// see of a token's randomness; at 32 characters even a hex token (4 bits a character, the
/// least of the usual alphabets) carries 128 bits, out of reach of guessing at any rate,
/// let alone the one refused requests are limited to. `openssl rand -hex 32` gives 64.
pub const MIN_TOKEN_LENGTH: usize = 32;

/// Checks a bearer token setting (`STATUSHOOK_API_TOKEN`, or any other token the API
/// accepts): at least [`MIN_TOKEN_LENGTH`] characters, no space or control character
/// (a header would not carry it as set: a token read from a file with its final newline
/// would never match), not the placeholder of the example settings, and not a few
/// characters repeated. A refusal names the setting, never shows the token, and says how
/// to make a good one.
pub fn check_token(name: &'static str, token: &str) -> Result<(), ConfigError> {
    const HINT: &str = "generate one with: openssl rand -hex 32";
    let refuse = |problem: String| Err(ConfigError::malformed(name, format!("{problem}; {HINT}")));
    let length = token.chars().count();
    if length < MIN_TOKEN_LENGTH {
        let plural = if length == 1 { "" } else { "s" };
        return refuse(format!(
            "has {length} character{plural}; a token needs at least {MIN_TOKEN_LENGTH}"
        ));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return refuse("contains a space, a newline or a control character".into());
    }
    let lower = token.to_ascii_lowercase();
    if lower.contains("change-me") || lower.contains("changeme") {
        return refuse("is the placeholder of the example settings".into());
    }
    let distinct = token
        .chars()
        .collect::<std::collections::BTreeSet<char>>()
        .len();
    if distinct < 8 {
        return refuse(format!(
            "uses only {distinct} different characters, so it is not random"
        ));
    }
    Ok(())
}

/// `STATUSHOOK_READ_TOKEN`, when set: a token that is not the API token (which would make
/// every reader a writer). Every rule on the read token's value lives here.
fn read_token(
    get: &impl Fn(&str) -> Option<String>,
    api_token: &str,
) -> Result<Option<Secret>, ConfigError> {
    let Some(token) = get("STATUSHOOK_READ_TOKEN") else {
        return Ok(None);
    };
    check_token("STATUSHOOK_READ_TOKEN", &token)?;
    if token == api_token {
        return Err(ConfigError::malformed(
            "STATUSHOOK_READ_TOKEN",
            "is the same as STATUSHOOK_API_TOKEN; a read-only token must differ from it",
        ));
    }
    Ok(Some(Secret::new(token)))
}

/// A duration setting, `None` when unset; zero is malformed.
fn optional_duration(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Option<Duration>, ConfigError> {
    let Some(raw) = get(name) else {
        return Ok(None);
    };
    match parse_duration(&raw) {
        Ok(duration) if duration.is_zero() => {
            Err(ConfigError::malformed(name, "must be longer than zero"))
        }
        Ok(duration) => Ok(Some(duration)),
        Err(problem) => Err(ConfigError::malformed(name, problem)),
    }
}

/// `{PUBLIC_URL}/twilio/status` plus Twilio's connection overrides. The overrides are a
/// fragment, which no HTTP request carries, so they never reach the signed URL.
fn status_callback(public_url: &PublicUrl, overrides: &str) -> String {
    format!("{}{overrides}", public_url.join("/twilio/status"))
}

fn callback_overrides(get: &impl Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
    let overrides =
        get("STATUSHOOK_CALLBACK_OVERRIDES").unwrap_or_else(|| "#rc=5&rp=ct,rt,5xx".into());
    if overrides != "none" && !overrides.starts_with('#') {
        return Err(ConfigError::malformed(
            "STATUSHOOK_CALLBACK_OVERRIDES",
            "must start with # (connection overrides are a URL fragment), or be none",
        ));
    }
    Ok(if overrides == "none" {
        String::new()
    } else {
        overrides
    })
}

fn reconcile_rate(get: &impl Fn(&str) -> Option<String>) -> Result<f64, ConfigError> {
    let Some(raw) = get("STATUSHOOK_RECONCILE_RATE") else {
        return Ok(5.0);
    };
    raw.trim()
        .parse::<f64>()
        .ok()
        .filter(|rate| rate.is_finite() && *rate > 0.0)
        .ok_or_else(|| {
            ConfigError::malformed(
                "STATUSHOOK_RECONCILE_RATE",
                "must be a positive number of requests a second",
            )
        })
}

fn twilio_timeout(get: &impl Fn(&str) -> Option<String>) -> Result<Duration, ConfigError> {
    match get("STATUSHOOK_TWILIO_TIMEOUT") {
        Some(raw) => parse_duration(&raw)
            .map_err(|problem| ConfigError::malformed("STATUSHOOK_TWILIO_TIMEOUT", problem)),
        None => Ok(Duration::from_secs(15)),
    }
}

fn twilio_credentials(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Option<TwilioCredentials>, ConfigError> {
    let Some(account_sid) = get("TWILIO_ACCOUNT_SID") else {
        return Ok(None);
    };
    if !is_sid(&account_sid, "AC") {
        return Err(ConfigError::malformed(
            "TWILIO_ACCOUNT_SID",
            "must be AC followed by 32 hex digits",
        ));
    }
    let (username, password) = match (get("TWILIO_API_KEY"), get("TWILIO_API_SECRET")) {
        (Some(key), Some(secret)) => {
            if !is_sid(&key, "SK") {
                return Err(ConfigError::malformed(
                    "TWILIO_API_KEY",
                    "must be SK followed by 32 hex digits",
                ));
            }
            (key, Secret::new(secret))
        }
        (Some(_), None) => return Err(ConfigError::missing("TWILIO_API_SECRET")),
        (None, Some(_)) => return Err(ConfigError::missing("TWILIO_API_KEY")),
        (None, None) => {
            let token =
                get("TWILIO_AUTH_TOKEN").ok_or(ConfigError::missing("TWILIO_AUTH_TOKEN"))?;
            (account_sid.clone(), Secret::new(token))
        }
    };
    let api_base = get("TWILIO_API_BASE")
        .unwrap_or_else(|| "https://api.twilio.com".into())
        .trim_end_matches('/')
        .to_owned();
    check_http_url(&api_base)
        .map_err(|problem| ConfigError::malformed("TWILIO_API_BASE", problem))?;
    Ok(Some(TwilioCredentials {
        account_sid,
        username,
        password,
        api_base,
    }))
}

/// Forwarding: a URL, its `whsec_` secret (required with it), an optional status filter and
/// the retry delays.
fn forward_config(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Option<ForwardConfig>, ConfigError> {
    let Some(url) = get("STATUSHOOK_FORWARD_URL") else {
        return Ok(None);
    };
    let url = ForwardConfig::parse_url(&url)
        .map_err(|problem| ConfigError::malformed("STATUSHOOK_FORWARD_URL", problem))?;
    let secret = get("STATUSHOOK_FORWARD_SECRET")
        .ok_or(ConfigError::missing("STATUSHOOK_FORWARD_SECRET"))?;
    let secret = SigningSecret::parse(&secret)
        .map_err(|problem| ConfigError::malformed("STATUSHOOK_FORWARD_SECRET", problem))?;
    let statuses = match get("STATUSHOOK_FORWARD_STATUSES") {
        None => None,
        Some(raw) => {
            let statuses = ForwardConfig::parse_statuses(&raw).map_err(|problem| {
                ConfigError::malformed("STATUSHOOK_FORWARD_STATUSES", problem)
            })?;
            if statuses.is_empty() {
                return Err(ConfigError::malformed(
                    "STATUSHOOK_FORWARD_STATUSES",
                    "names no status",
                ));
            }
            Some(statuses)
        }
    };
    let defaults = Retry::default();
    let delay = |name: &'static str, default: Duration| match get(name) {
        None => Ok(default),
        Some(raw) => match parse_duration(&raw) {
            Ok(delay) if !delay.is_zero() => Ok(delay),
            Ok(_) => Err(ConfigError::malformed(name, "must be longer than zero")),
            Err(problem) => Err(ConfigError::malformed(name, problem)),
        },
    };
    let min = delay("STATUSHOOK_FORWARD_RETRY_MIN", defaults.min)?;
    let max = delay("STATUSHOOK_FORWARD_RETRY_MAX", defaults.max)?;
    if max < min {
        return Err(ConfigError::malformed(
            "STATUSHOOK_FORWARD_RETRY_MAX",
            "must not be shorter than STATUSHOOK_FORWARD_RETRY_MIN",
        ));
    }
    let start = match get("STATUSHOOK_FORWARD_START") {
        None => Start::Now,
        Some(raw) => Start::parse(&raw)
            .map_err(|problem| ConfigError::malformed("STATUSHOOK_FORWARD_START", problem))?,
    };
    Ok(Some(ForwardConfig {
        url,
        secret,
        statuses,
        retry: Retry {
            min,
            max,
            give_up_after: defaults.give_up_after,
        },
        start,
        concurrency: forward_concurrency(get)?,
    }))
}

/// `STATUSHOOK_FORWARD_CONCURRENCY`: deliveries in flight at once, 1 to
/// [`MAX_CONCURRENCY`].
fn forward_concurrency(get: &impl Fn(&str) -> Option<String>) -> Result<usize, ConfigError> {
    let Some(raw) = get("STATUSHOOK_FORWARD_CONCURRENCY") else {
        return Ok(DEFAULT_CONCURRENCY);
    };
    raw.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_CONCURRENCY).contains(n))
        .ok_or_else(|| {
            ConfigError::malformed(
                "STATUSHOOK_FORWARD_CONCURRENCY",
                format!("{raw:?} is not a number from 1 to {MAX_CONCURRENCY}"),
            )
        })
}

/// `id=secret` pairs, comma-separated.
fn parse_shared_keys(raw: &str) -> Result<Vec<(String, Secret)>, ConfigError> {
    raw.split(',')
        .map(|pair| {
            let (id, secret) = pair.split_once('=').ok_or_else(|| {
                ConfigError::malformed(
                    "STATUSHOOK_SHARED_KEYS",
                    "expected id=secret pairs separated by commas",
                )
            })?;
            let (id, secret) = (id.trim(), secret.trim());
            if id.is_empty() || secret.is_empty() {
                return Err(ConfigError::malformed(
                    "STATUSHOOK_SHARED_KEYS",
                    "a key id or secret is empty",
                ));
            }
            Ok((id.to_owned(), Secret::new(secret)))
        })
        .collect()
}

/// `AC…=token` pairs, comma-separated: the auth tokens of further accounts and
/// subaccounts. Problems are reported without the token.
fn parse_account_tokens(raw: &str) -> Result<Vec<(String, Secret)>, ConfigError> {
    let malformed = |problem: String| ConfigError::malformed("TWILIO_ACCOUNT_TOKENS", problem);
    let mut tokens: Vec<(String, Secret)> = Vec::new();
    for pair in raw.split(',').filter(|pair| !pair.trim().is_empty()) {
        let (sid, token) = pair
            .split_once('=')
            .ok_or_else(|| malformed("expected AC...=token pairs separated by commas".into()))?;
        let (sid, token) = (sid.trim(), token.trim());
        if !is_sid(sid, "AC") {
            return Err(malformed(format!(
                "{sid:?} is not an account SID (AC followed by 32 hex digits)"
            )));
        }
        if token.is_empty() {
            return Err(malformed(format!("the token of {sid} is empty")));
        }
        if tokens.iter().any(|(known, _)| known == sid) {
            return Err(malformed(format!("{sid} is listed twice")));
        }
        tokens.push((sid.to_owned(), Secret::new(token)));
    }
    Ok(tokens)
}

/// Durations with a unit: `250ms`, `90s`, `15m`, `2h`, `7d`. A bare number is refused, since
/// whether `15` means seconds or minutes is exactly the mistake a unit prevents.
/// `TWILIO_AUTH_TOKEN`, for `statushook simulate`, which signs callbacks as Twilio would.
pub fn auth_token_from_env() -> Option<Secret> {
    std::env::var("TWILIO_AUTH_TOKEN")
        .ok()
        .filter(|token| !token.is_empty())
        .map(Secret::new)
}

pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{raw:?} is not a duration such as 90s, 15m, 2h or 7d"))?;
    let scale = match unit {
        "ms" => return Ok(Duration::from_millis(number)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "" => {
            return Err(format!(
                "{raw:?} has no unit (write {raw}s, {raw}m, {raw}h or {raw}d)"
            ))
        }
        _ => {
            return Err(format!(
                "{raw:?} has an unknown unit (use ms, s, m, h or d)"
            ))
        }
    };
    number
        .checked_mul(scale)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{raw:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn args(public_url: Option<&str>) -> ServeArgs {
        ServeArgs {
            listen: "127.0.0.1:0".into(),
            data_dir: "data".into(),
            public_url: public_url.map(Into::into),
            database_url: None,
        }
    }

    fn build(public_url: Option<&str>, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::for_serve_with(&args(public_url), |name| env.get(name).cloned())
    }

    /// An API token long enough to be accepted.
    const TOKEN: &str = "s3cr3t-api-0123456789abcdef0123456789";

    const MINIMAL: &[(&str, &str)] = &[
        ("STATUSHOOK_API_TOKEN", TOKEN),
        ("TWILIO_AUTH_TOKEN", "s3cr3t-auth"),
    ];

    #[test]
    fn each_missing_or_malformed_setting_is_named() {
        type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (None, MINIMAL, "STATUSHOOK_PUBLIC_URL"),
            (Some("hooks.example.com"), MINIMAL, "STATUSHOOK_PUBLIC_URL"),
            (
                Some("https://h.example"),
                &[("TWILIO_AUTH_TOKEN", "t")],
                "STATUSHOOK_API_TOKEN",
            ),
            (
                Some("https://h.example"),
                &[("STATUSHOOK_API_TOKEN", TOKEN)],
                "TWILIO_AUTH_TOKEN",
            ),
            (
                Some("https://h.example"),
                &[
                    ("STATUSHOOK_API_TOKEN", TOKEN),
                    ("TWILIO_AUTH_TOKEN", "t"),
                    ("STATUSHOOK_SHARED_KEYS", "nokey"),
                ],
                "STATUSHOOK_SHARED_KEYS",
            ),
            (
                Some("https://h.example"),
                &[
                    ("STATUSHOOK_API_TOKEN", TOKEN),
                    ("TWILIO_AUTH_TOKEN", "t"),
                    ("TWILIO_ACCOUNT_SID", "AC1"),
                ],
                "TWILIO_ACCOUNT_SID",
            ),
            (
                Some("https://h.example"),
                &[
                    ("STATUSHOOK_API_TOKEN", TOKEN),
                    ("TWILIO_AUTH_TOKEN", "t"),
                    ("STATUSHOOK_RECONCILE_AFTER", "soon"),
                ],
                "STATUSHOOK_RECONCILE_AFTER",
            ),
            (
                Some("https://h.example"),
                &[
                    ("STATUSHOOK_API_TOKEN", TOKEN),
                    ("TWILIO_AUTH_TOKEN", "t"),
                    ("STATUSHOOK_ALERT_INTERVAL", "30"),
                ],
                "STATUSHOOK_ALERT_INTERVAL",
            ),
            (
                Some("https://h.example"),
                &[
                    ("STATUSHOOK_API_TOKEN", TOKEN),
                    ("TWILIO_AUTH_TOKEN", "t"),
                    ("STATUSHOOK_ALERT_INTERVAL", "0s"),
                ],
                "STATUSHOOK_ALERT_INTERVAL",
            ),
            (
                Some("https://h.example"),
                &[
                    (
                        "STATUSHOOK_API_TOKEN",
                        "api-token-0123456789abcdefghijklmnop",
                    ),
                    ("TWILIO_AUTH_TOKEN", "t"),
                    (
                        "STATUSHOOK_READ_TOKEN",
                        "api-token-0123456789abcdefghijklmnop",
                    ),
                ],
                "STATUSHOOK_READ_TOKEN",
            ),
        ];
        for (url, env, name) in cases {
            let error = build(*url, env).expect_err(name);
            assert_eq!(error.name, *name, "{error}");
        }
    }

    #[test]
    fn malformed_urls_durations_tokens_and_addresses_are_named_with_the_reason() {
        let with = |name: &'static str, value: &'static str| {
            let mut env = MINIMAL.to_vec();
            env.push((name, value));
            env
        };
        let sid = "AC0123456789abcdef0123456789abcdef";
        type Case = (
            &'static str,
            Vec<(&'static str, &'static str)>,
            &'static str,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            (
                "https://hooks example.com",
                MINIMAL.to_vec(),
                "STATUSHOOK_PUBLIC_URL",
                "space",
            ),
            (
                "https://hooks.example.com:99999",
                MINIMAL.to_vec(),
                "STATUSHOOK_PUBLIC_URL",
                "99999",
            ),
            (
                "https://hooks.example.com:0",
                MINIMAL.to_vec(),
                "STATUSHOOK_PUBLIC_URL",
                "port",
            ),
            (
                "https://hooks.exa$mple.com",
                MINIMAL.to_vec(),
                "STATUSHOOK_PUBLIC_URL",
                "host",
            ),
            (
                "https://hooks.example.com/twilio/status",
                MINIMAL.to_vec(),
                "STATUSHOOK_PUBLIC_URL",
                "use https://hooks.example.com (statushook adds /twilio/status itself)",
            ),
            (
                "https://example.com/prefix/twilio/status/",
                MINIMAL.to_vec(),
                "STATUSHOOK_PUBLIC_URL",
                "use https://example.com/prefix ",
            ),
            (
                "https://h.example",
                with("STATUSHOOK_RECONCILE_AFTER", "15"),
                "STATUSHOOK_RECONCILE_AFTER",
                "no unit",
            ),
            (
                "https://h.example",
                with("STATUSHOOK_TWILIO_TIMEOUT", "15"),
                "STATUSHOOK_TWILIO_TIMEOUT",
                "no unit",
            ),
            (
                "https://h.example",
                with("TWILIO_ACCOUNT_TOKENS", "token-without-sid"),
                "TWILIO_ACCOUNT_TOKENS",
                "pairs",
            ),
            (
                "https://h.example",
                with("TWILIO_ACCOUNT_TOKENS", "AC12=tok"),
                "TWILIO_ACCOUNT_TOKENS",
                "\"AC12\"",
            ),
            (
                "https://h.example",
                with(
                    "TWILIO_ACCOUNT_TOKENS",
                    "AC0123456789abcdef0123456789abcdef=",
                ),
                "TWILIO_ACCOUNT_TOKENS",
                "empty",
            ),
            (
                "https://h.example",
                vec![
                    ("STATUSHOOK_API_TOKEN", TOKEN),
                    ("TWILIO_AUTH_TOKEN", "t"),
                    ("TWILIO_ACCOUNT_SID", sid),
                    ("TWILIO_API_BASE", "http://127.0.0.1:99999"),
                ],
                "TWILIO_API_BASE",
                "99999",
            ),
        ];
        for (url, env, name, reason) in &cases {
            let error = build(Some(url), env).expect_err(name);
            assert_eq!(error.name, *name, "{url} {env:?}: {error}");
            assert!(
                error.to_string().contains(reason),
                "{error} should say {reason:?}"
            );
            assert!(
                !error.to_string().contains("tok\""),
                "{error} shows a token"
            );
        }
    }

    #[test]
    fn a_weak_api_token_is_refused_with_how_to_make_one_and_never_shown() {
        for (token, reason) in [
            ("a", "has 1 character;"),
            ("s3cr3t-0123456789abcdef01234567", "has 31 characters"),
            ("s3cr3t-api-0123456789abcdef0123456789\n", "newline"),
            ("change-me-to-a-long-random-string", "placeholder"),
            ("abababababababababababababababababab", "only 2 different"),
        ] {
            let env = [
                ("STATUSHOOK_API_TOKEN", token),
                ("TWILIO_AUTH_TOKEN", "s3cr3t-auth"),
            ];
            let error = build(Some("https://h.example"), &env).expect_err(token);
            assert_eq!(error.name, "STATUSHOOK_API_TOKEN", "{token:?}");
            let message = error.to_string();
            assert!(message.contains(reason), "{message} should say {reason:?}");
            assert!(message.contains("openssl rand -hex 32"), "{message}");
            if token.len() > 8 {
                assert!(!message.contains(token.trim()), "{message} shows the token");
            }
        }
        let exactly = "s3cr3t-0123456789abcdef012345678";
        assert_eq!(exactly.len(), MIN_TOKEN_LENGTH);
        let env = [
            ("STATUSHOOK_API_TOKEN", exactly),
            ("TWILIO_AUTH_TOKEN", "s3cr3t-auth"),
        ];
        assert!(build(Some("https://h.example"), &env).is_ok());
    }

    #[test]
    fn the_listen_address_needs_a_valid_host_and_port() {
        for (listen, valid) in [
            ("127.0.0.1:8080", true),
            ("[::1]:0", true),
            ("localhost:8080", true),
            ("127.0.0.1:99999", false),
            ("127.0.0.1", false),
            ("my host:8080", false),
        ] {
            let args = ServeArgs {
                listen: listen.into(),
                ..args(Some("https://h.example"))
            };
            let env: HashMap<&str, &str> = MINIMAL.iter().copied().collect();
            let result = Config::for_serve_with(&args, |name| env.get(name).map(|v| v.to_string()));
            match result {
                Ok(_) => assert!(valid, "{listen} should be refused"),
                Err(error) => {
                    assert!(!valid, "{listen} should be accepted: {error}");
                    assert_eq!(error.name, "STATUSHOOK_LISTEN");
                }
            }
        }
    }

    #[test]
    fn the_log_format_is_text_or_json() {
        assert_eq!(LogFormat::parse(None).ok(), Some(LogFormat::Text));
        assert_eq!(LogFormat::parse(Some("json")).ok(), Some(LogFormat::Json));
        let error = LogFormat::parse(Some("yaml")).expect_err("yaml is not a format");
        assert_eq!(error.name, "STATUSHOOK_LOG_FORMAT");
    }

    #[test]
    fn account_tokens_are_read_by_account_and_never_print() {
        let sid_a = "AC0123456789abcdef0123456789abcdef";
        let sid_b = "ACfedcba9876543210fedcba9876543210";
        let tokens = format!("{sid_a}=s3cr3t-a, {sid_b}=s3cr3t-b,");
        let mut env: Vec<(&str, &str)> = MINIMAL.to_vec();
        env.push(("TWILIO_ACCOUNT_TOKENS", &tokens));
        let config = build(Some("https://user:s3cr3t-pw@h.example"), &env).expect("valid config");
        let accounts: Vec<&str> = config
            .signing_keys
            .account_tokens
            .iter()
            .map(|(sid, _)| sid.as_str())
            .collect();
        assert_eq!(accounts, [sid_a, sid_b]);
        assert_eq!(config.signing_keys.account_tokens[1].1.expose(), "s3cr3t-b");
        let printed = format!("{config:?}");
        assert!(!printed.contains("s3cr3t"), "{printed}");
        assert_eq!(
            config.public_url.for_log(),
            "https://user:[redacted]@h.example"
        );
    }

    #[test]
    fn secrets_never_print() {
        let mut env = MINIMAL.to_vec();
        env.push((
            "STATUSHOOK_READ_TOKEN",
            "s3cr3t-read-0123456789abcdefghijkl",
        ));
        let config = build(Some("https://h.example/prefix/"), &env).expect("valid config");
        assert!(config.read_token.is_some());
        let printed = format!("{config:?}");
        assert!(!printed.contains("s3cr3t"), "{printed}");
        assert!(printed.contains("[redacted]"));
        assert_eq!(
            config.public_url.join("/twilio/status"),
            "https://h.example/prefix/twilio/status"
        );
    }

    #[test]
    fn a_database_url_is_checked_and_its_password_never_prints() {
        let mut with_url = args(Some("https://h.example"));
        for bad in ["mysql://u@h/db", "postgres://u@h:99999/db", "postgres://"] {
            with_url.database_url = Some(Secret::new(bad));
            let env: HashMap<String, String> = MINIMAL
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let error =
                Config::for_serve_with(&with_url, |name| env.get(name).cloned()).expect_err(bad);
            assert_eq!(error.name, "STATUSHOOK_DATABASE_URL", "{bad}");
            assert!(!error.to_string().contains(bad), "{error}");
        }
        with_url.database_url = Some(Secret::new(
            "postgres://app:s3cr3t-db@db.internal:5433/hooks",
        ));
        assert!(!format!("{with_url:?}").contains("s3cr3t"));
        let env: HashMap<String, String> = MINIMAL
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let config =
            Config::for_serve_with(&with_url, |name| env.get(name).cloned()).expect("valid");
        let printed = format!("{config:?}");
        assert!(!printed.contains("s3cr3t"), "{printed}");
        assert!(
            printed.contains("postgres://app@db.internal:5433/hooks"),
            "{printed}"
        );
    }

    #[test]
    fn a_public_url_with_a_space_or_control_character_is_refused() {
        for raw in [
            "https://h.example /",
            "https://h .example",
            "http://\0\0\r\r//",
        ] {
            assert!(PublicUrl::parse(raw).is_err(), "{raw:?}");
        }
        let url = PublicUrl::parse(" https://h.example/prefix/ ").expect("valid");
        assert_eq!(PublicUrl::parse(&url.join("")), Ok(url));
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(2 * 86_400)));
        assert!(parse_duration("90").is_err(), "a bare number has no unit");
        assert!(parse_duration("2w").is_err());
    }

    #[test]
    fn forwarding_settings_are_checked_and_the_secret_never_prints() {
        let url = (
            "STATUSHOOK_FORWARD_URL",
            "https://sink.example.com/hooks?token=abc",
        );
        let secret = (
            "STATUSHOOK_FORWARD_SECRET",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        );
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut env = MINIMAL.to_vec();
            env.extend_from_slice(extra);
            build(Some("https://h.example"), &env)
        };
        type Case<'a> = (&'a [(&'static str, &'static str)], &'static str);
        let cases: &[Case] = &[
            (&[url], "STATUSHOOK_FORWARD_SECRET"),
            (
                &[
                    url,
                    (
                        "STATUSHOOK_FORWARD_SECRET",
                        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                    ),
                ],
                "STATUSHOOK_FORWARD_SECRET",
            ),
            (
                &[url, ("STATUSHOOK_FORWARD_SECRET", "whsec_%%%")],
                "STATUSHOOK_FORWARD_SECRET",
            ),
            (
                &[("STATUSHOOK_FORWARD_URL", "ftp://x.example"), secret],
                "STATUSHOOK_FORWARD_URL",
            ),
            (
                &[("STATUSHOOK_FORWARD_URL", "https://:99999/"), secret],
                "STATUSHOOK_FORWARD_URL",
            ),
            (
                &[
                    url,
                    secret,
                    ("STATUSHOOK_FORWARD_STATUSES", "delivered,deliverd"),
                ],
                "STATUSHOOK_FORWARD_STATUSES",
            ),
            (
                &[url, secret, ("STATUSHOOK_FORWARD_RETRY_MIN", "0s")],
                "STATUSHOOK_FORWARD_RETRY_MIN",
            ),
            (
                &[url, secret, ("STATUSHOOK_FORWARD_RETRY_MAX", "1s")],
                "STATUSHOOK_FORWARD_RETRY_MAX",
            ),
            (
                &[url, secret, ("STATUSHOOK_FORWARD_START", "yesterday")],
                "STATUSHOOK_FORWARD_START",
            ),
            (
                &[url, secret, ("STATUSHOOK_FORWARD_CONCURRENCY", "0")],
                "STATUSHOOK_FORWARD_CONCURRENCY",
            ),
            (
                &[url, secret, ("STATUSHOOK_FORWARD_CONCURRENCY", "257")],
                "STATUSHOOK_FORWARD_CONCURRENCY",
            ),
        ];
        for (env, name) in cases {
            let error = with(env).expect_err(name);
            assert_eq!(error.name, *name, "{error}");
        }
        let config = with(&[
            url,
            secret,
            ("STATUSHOOK_FORWARD_STATUSES", "Delivered, failed"),
        ])
        .expect("valid forwarding settings");
        let forward = config.forward.as_ref().expect("forwarding on");
        assert_eq!(
            forward.statuses.as_deref(),
            Some(
                &[
                    crate::domain::KnownStatus::Delivered,
                    crate::domain::KnownStatus::Failed
                ][..]
            )
        );
        assert_eq!(forward.start, crate::forwarding::Start::Now);
        assert_eq!(forward.concurrency, 16);
        let chosen = with(&[
            url,
            secret,
            ("STATUSHOOK_FORWARD_START", "ALL"),
            ("STATUSHOOK_FORWARD_CONCURRENCY", "4"),
        ])
        .expect("valid forwarding settings");
        let chosen = chosen.forward.as_ref().expect("forwarding on");
        assert_eq!(
            (chosen.start, chosen.concurrency),
            (crate::forwarding::Start::All, 4)
        );
        let printed = format!("{config:?}");
        assert!(!printed.contains("MfKQ9r8"), "{printed}");
        assert!(!printed.contains("token=abc"), "{printed}");
        assert!(with(&[]).expect("valid").forward.is_none());
    }
}
