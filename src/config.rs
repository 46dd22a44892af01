//! Configuration: one typed `Config`, built once at start-up from flags and the environment.
//!
//! This is the only module that reads environment variables. Every setting is checked here,
//! so a missing or malformed one stops start-up with a single line naming it, instead of
//! surfacing as a 500 on the first callback. Secrets are wrapped in [`Secret`], whose `Debug`
//! and `Display` print `[redacted]`, so no log line or panic message can carry one.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::signature::Keys;

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
}

/// Environment variables read besides the flags, listed in `--help`.
pub const ENV_HELP: &str = "\
Secrets and Twilio settings are read from the environment only:
  STATUSHOOK_API_TOKEN          bearer token for the /v1 API (required for serve)
  TWILIO_AUTH_TOKEN             primary auth token: HMAC key of callbacks (required for serve)
  TWILIO_AUTH_TOKEN_SECONDARY   second accepted token during a rotation
  STATUSHOOK_SHARED_KEYS        webhook shared keys for HMAC-SHA256: id=secret,id=secret
  TWILIO_ACCOUNT_SID            AC... account (required for sending and reconciling)
  TWILIO_API_KEY, TWILIO_API_SECRET   SK... key for the REST API's Basic auth
  TWILIO_API_BASE               base URL of the Twilio REST API [default: https://api.twilio.com]
  STATUSHOOK_RECONCILE_AFTER    age at which a non-final message is fetched from Twilio [default: 15m]
  STATUSHOOK_CALLBACK_OVERRIDES connection overrides appended to the StatusCallback [default: #rc=5&rp=ct,rt,5xx]
  STATUSHOOK_RECONCILE_RATE     most Fetch Message requests a second by the reconciler [default: 5]
  STATUSHOOK_TWILIO_TIMEOUT     how long one request to Twilio's API may take [default: 15s]
  STATUSHOOK_LOG_FORMAT         text (default) or json; RUST_LOG sets the level";

/// A secret string. It is never printed: `Debug` and `Display` show `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the few places that must use it (HMAC keys, auth headers).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

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
/// (which always starts with `/`) gives the URL Twilio signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl(String);

impl PublicUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim().trim_end_matches('/');
        let rest = trimmed
            .strip_prefix("https://")
            .or_else(|| trimmed.strip_prefix("http://"))
            .ok_or("must start with https:// or http://")?;
        let host = rest.split('/').next().unwrap_or_default();
        if host.is_empty() {
            return Err("has no host".into());
        }
        if trimmed.contains(['?', '#']) {
            return Err("must not contain a query or fragment".into());
        }
        // No request target can follow a space or a control character, and a trailing one
        // (`https://host /`) would otherwise stay in every signed URL.
        if trimmed.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err("must not contain a space or a control character".into());
        }
        Ok(PublicUrl(trimmed.to_owned()))
    }

    /// The URL Twilio called for a request whose target (path and query) is `target`.
    pub fn join(&self, target: &str) -> String {
        format!("{}{}", self.0, target)
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
    pub public_url: PublicUrl,
    pub api_token: Secret,
    pub signing_keys: Keys,
    /// Present when TWILIO_ACCOUNT_SID is set: enables sending and reconciling.
    pub twilio: Option<TwilioCredentials>,
    pub reconcile_after: Duration,
    /// Fetches a second, at most.
    pub reconcile_rate: f64,
    pub callback_overrides: String,
    pub twilio_timeout: Duration,
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
        let primary = get("TWILIO_AUTH_TOKEN").ok_or(ConfigError::missing("TWILIO_AUTH_TOKEN"))?;
        let mut auth_tokens = vec![Secret::new(primary)];
        if let Some(secondary) = get("TWILIO_AUTH_TOKEN_SECONDARY") {
            auth_tokens.push(Secret::new(secondary));
        }
        let shared_keys = match get("STATUSHOOK_SHARED_KEYS") {
            Some(raw) => parse_shared_keys(&raw)?,
            None => Vec::new(),
        };
        let reconcile_after = match get("STATUSHOOK_RECONCILE_AFTER") {
            Some(raw) => parse_duration(&raw)
                .map_err(|problem| ConfigError::malformed("STATUSHOOK_RECONCILE_AFTER", problem))?,
            None => Duration::from_secs(15 * 60),
        };
        Ok(Config {
            listen: args.listen.clone(),
            data_dir: args.data_dir.clone(),
            public_url,
            api_token: Secret::new(api_token),
            signing_keys: Keys {
                auth_tokens,
                shared_keys,
            },
            twilio: twilio_credentials(&get)?,
            reconcile_after,
            reconcile_rate: reconcile_rate(&get)?,
            callback_overrides: callback_overrides(&get)?,
            twilio_timeout: twilio_timeout(&get)?,
        })
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
    if !(api_base.starts_with("https://") || api_base.starts_with("http://")) {
        return Err(ConfigError::malformed(
            "TWILIO_API_BASE",
            "must start with https:// or http://",
        ));
    }
    Ok(Some(TwilioCredentials {
        account_sid,
        username,
        password,
        api_base,
    }))
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

/// Durations such as `90s`, `15m`, `2h` or a bare number of seconds.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{raw:?} is not a duration such as 90s, 15m or 2h"))?;
    let seconds = match unit {
        "" | "s" => number,
        "m" => number * 60,
        "h" => number * 3600,
        "ms" => return Ok(Duration::from_millis(number)),
        _ => return Err(format!("{raw:?} has an unknown unit (use ms, s, m or h)")),
    };
    Ok(Duration::from_secs(seconds))
}

/// Whether `value` is `prefix` followed by 32 hex digits, the shape of every Twilio SID.
pub fn is_sid(value: &str, prefix: &str) -> bool {
    value.len() == 34
        && value.starts_with(prefix)
        && value[2..].bytes().all(|b| b.is_ascii_hexdigit())
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
        }
    }

    fn build(public_url: Option<&str>, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::for_serve_with(&args(public_url), |name| env.get(name).cloned())
    }

    const MINIMAL: &[(&str, &str)] = &[
        ("STATUSHOOK_API_TOKEN", "s3cr3t-api"),
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
                &[("STATUSHOOK_API_TOKEN", "a")],
                "TWILIO_AUTH_TOKEN",
            ),
            (
                Some("https://h.example"),
                &[
                    ("STATUSHOOK_API_TOKEN", "a"),
                    ("TWILIO_AUTH_TOKEN", "t"),
                    ("STATUSHOOK_SHARED_KEYS", "nokey"),
                ],
                "STATUSHOOK_SHARED_KEYS",
            ),
            (
                Some("https://h.example"),
                &[
                    ("STATUSHOOK_API_TOKEN", "a"),
                    ("TWILIO_AUTH_TOKEN", "t"),
                    ("TWILIO_ACCOUNT_SID", "AC1"),
                ],
                "TWILIO_ACCOUNT_SID",
            ),
            (
                Some("https://h.example"),
                &[
                    ("STATUSHOOK_API_TOKEN", "a"),
                    ("TWILIO_AUTH_TOKEN", "t"),
                    ("STATUSHOOK_RECONCILE_AFTER", "soon"),
                ],
                "STATUSHOOK_RECONCILE_AFTER",
            ),
        ];
        for (url, env, name) in cases {
            let error = build(*url, env).expect_err(name);
            assert_eq!(error.name, *name, "{error}");
        }
    }

    #[test]
    fn secrets_never_print() {
        let config = build(Some("https://h.example/prefix/"), MINIMAL).expect("valid config");
        let printed = format!("{config:?}");
        assert!(!printed.contains("s3cr3t"), "{printed}");
        assert!(printed.contains("[redacted]"));
        assert_eq!(
            config.public_url.join("/twilio/status"),
            "https://h.example/prefix/twilio/status"
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
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("2d").is_err());
    }
}
