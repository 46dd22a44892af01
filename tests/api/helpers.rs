//! `spawn_app()`: a real server on port 0 with a fresh temporary store, and a `TestApp`
//! with one method per endpoint.

use std::sync::atomic::{AtomicU64, Ordering};

use std::process::Stdio;

use reqwest::Response;
use serde_json::Value;
use statushook::config::{Config, ServeArgs};
use statushook::secret::Secret;
use statushook::startup::Application;
use statushook::twilio::signature;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const AUTH_TOKEN: &str = "test-auth-token-0123456789abcdef";
pub const API_TOKEN: &str = "test-api-token";
pub const FORM: &str = "application/x-www-form-urlencoded";
pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";

pub struct TestApp {
    pub address: String,
    pub public_url: String,
    pub client: reqwest::Client,
    /// Keeps the store's folder alive for the test's duration.
    _data_dir: TempDir,
}

/// Extra settings for a test app, on top of the ones every test needs.
#[derive(Default)]
pub struct Settings {
    pub public_url: Option<&'static str>,
    pub env: Vec<(&'static str, String)>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Settings::default()).await
}

pub async fn spawn_app_with(settings: Settings) -> TestApp {
    let data_dir = tempfile::tempdir().expect("a temporary folder");
    let public_url = settings.public_url.unwrap_or("https://hooks.example.com");
    let args = ServeArgs {
        listen: "127.0.0.1:0".into(),
        data_dir: data_dir.path().join("db"),
        public_url: Some(public_url.into()),
        database_url: test_database().await.map(Secret::new),
    };
    let mut env = vec![
        ("STATUSHOOK_API_TOKEN", API_TOKEN.to_owned()),
        ("TWILIO_AUTH_TOKEN", AUTH_TOKEN.to_owned()),
    ];
    env.extend(settings.env);
    let config = Config::for_serve_with(&args, |name| {
        env.iter()
            .rev()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.clone())
    })
    .expect("a valid test configuration");
    let app = Application::build(config).await.expect("the app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        public_url: public_url.trim_end_matches('/').to_owned(),
        client: reqwest::Client::new(),
        _data_dir: data_dir,
    }
}

/// A fresh message SID, unique within the test run.
pub fn new_sid() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!("SM{:016x}{:016x}", nanos, n)
}

/// The parameters Twilio sends with an SMS status callback.
pub fn callback(sid: &str, status: &str) -> Vec<(String, String)> {
    [
        ("SmsSid", sid),
        ("SmsStatus", status),
        ("MessageStatus", status),
        ("To", "+15005550009"),
        ("MessagingServiceSid", ""),
        ("MessageSid", sid),
        ("AccountSid", ACCOUNT_SID),
        ("From", "+15005550006"),
        ("ApiVersion", "2010-04-01"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

pub fn with(mut params: Vec<(String, String)>, name: &str, value: &str) -> Vec<(String, String)> {
    params.push((name.to_owned(), value.to_owned()));
    params
}

pub fn encode(params: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

impl TestApp {
    /// The signature Twilio would send for `params` posted to `target` (path and query).
    pub fn sign(&self, target: &str, params: &[(String, String)]) -> String {
        signature::sign_sha1(
            &Secret::new(AUTH_TOKEN),
            &format!("{}{target}", self.public_url),
            params,
        )
    }

    /// Posts a correctly signed callback to `/twilio/status`.
    pub async fn post_callback(&self, params: &[(String, String)]) -> Response {
        self.post_signed("/twilio/status", params).await
    }

    pub async fn post_signed(&self, target: &str, params: &[(String, String)]) -> Response {
        let signature = self.sign(target, params);
        self.post_raw(
            target,
            encode(params),
            &[("Content-Type", FORM), ("X-Twilio-Signature", &signature)],
        )
        .await
    }

    /// Posts `params` to `/twilio/status`, signed with `token` for `signed_url`: the URL
    /// Twilio would have called.
    pub async fn post_signed_by(
        &self,
        token: &str,
        signed_url: &str,
        params: &[(String, String)],
    ) -> Response {
        let signature = signature::sign_sha1(&Secret::new(token), signed_url, params);
        self.post_raw(
            "/twilio/status",
            encode(params),
            &[("Content-Type", FORM), ("X-Twilio-Signature", &signature)],
        )
        .await
    }

    pub async fn post_raw(
        &self,
        target: &str,
        body: impl Into<reqwest::Body>,
        headers: &[(&str, &str)],
    ) -> Response {
        let mut request = self
            .client
            .post(format!("{}{target}", self.address))
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("the request is answered")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(format!("{}{path}", self.address))
            .bearer_auth(API_TOKEN)
            .json(body)
            .send()
            .await
            .expect("the request is answered")
    }

    pub async fn get_message(&self, sid: &str) -> Response {
        self.get_authorized(&format!("/v1/messages/{sid}")).await
    }

    /// A GET without credentials.
    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("the request is answered")
    }

    pub async fn get_authorized(&self, path: &str) -> Response {
        self.client
            .get(format!("{}{path}", self.address))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .expect("the request is answered")
    }

    /// The stored message as JSON; panics unless it exists.
    pub async fn message_json(&self, sid: &str) -> Value {
        let response = self.get_message(sid).await;
        assert_eq!(response.status(), 200, "message {sid} should be stored");
        response.json().await.expect("a JSON message")
    }

    pub async fn is_stored(&self, sid: &str) -> bool {
        match self.get_message(sid).await.status().as_u16() {
            200 => true,
            404 => false,
            other => panic!("unexpected status {other} looking up {sid}"),
        }
    }
}

/// Statuses of a message's events, in the order the API lists them.
pub fn event_statuses(message: &Value) -> Vec<String> {
    message["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|event| event["status"].as_str().expect("a status").to_owned())
        .collect()
}

pub const PUBLIC_URL: &str = "https://hooks.example.com";

/// Starts the real binary on port 0 and reads the port it logged. Under
/// `STATUSHOOK_TEST_STORE=postgres` it stores in a database of its own for `data_dir`
/// (the same one again when started again on the same folder).
pub async fn start_binary(data_dir: &std::path::Path) -> (Child, String) {
    start_binary_with_env(data_dir, &[]).await
}

/// As [`start_binary`], with more environment variables.
pub async fn start_binary_with_env(
    data_dir: &std::path::Path,
    env: &[(&str, String)],
) -> (Child, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_statushook"));
    command.arg("serve");
    if testing_postgres() {
        command.env("STATUSHOOK_DATABASE_URL", database_for(data_dir).await);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    start(&mut command, data_dir).await
}

/// Starts the real binary on the sled store in `data_dir`, whatever store the tests use:
/// for what only the embedded store has (its folder, its files, offline export).
pub async fn start_sled_binary(data_dir: &std::path::Path) -> (Child, String) {
    start_sled_binary_with_env(data_dir, &[]).await
}

/// As [`start_sled_binary`], with more environment variables.
pub async fn start_sled_binary_with_env(
    data_dir: &std::path::Path,
    env: &[(&str, String)],
) -> (Child, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_statushook"));
    command.arg("serve");
    for (name, value) in env {
        command.env(name, value);
    }
    start(&mut command, data_dir).await
}

/// Starts the real binary as one replica on the PostgreSQL database at `database_url`,
/// with extra environment `env`.
pub async fn start_replica(database_url: &str, env: &[(&str, String)]) -> (Child, String) {
    let data_dir = std::env::temp_dir().join("statushook-replica-unused");
    let mut command = Command::new(env!("CARGO_BIN_EXE_statushook"));
    command
        .arg("serve")
        .env("STATUSHOOK_DATABASE_URL", database_url);
    for (name, value) in env {
        command.env(name, value);
    }
    start(&mut command, &data_dir).await
}

/// Whether the API tests run against PostgreSQL (`STATUSHOOK_TEST_STORE=postgres`, set by
/// `scripts/test` for its second run) instead of sled.
pub fn testing_postgres() -> bool {
    std::env::var("STATUSHOOK_TEST_STORE").is_ok_and(|store| store == "postgres")
}

/// The server of `scripts/pg`, which every PostgreSQL test needs.
fn test_server() -> String {
    std::env::var("STATUSHOOK_TEST_DATABASE_URL").expect(
        "STATUSHOOK_TEST_DATABASE_URL is not set: run the tests with scripts/test, or under \
         scripts/pg run cargo test",
    )
}

/// A fresh database for one test when the tests run against PostgreSQL.
pub async fn test_database() -> Option<String> {
    if testing_postgres() {
        Some(fresh_database().await)
    } else {
        None
    }
}

/// Creates a new, empty database on the test server and answers its URL.
pub async fn fresh_database() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let name = format!(
        "statushook_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    create_database(&name).await
}

/// The database of the binary started on `data_dir`, created at its first start.
pub async fn database_for(data_dir: &std::path::Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    data_dir.hash(&mut hasher);
    create_database(&format!("statushook_dir_{:016x}", hasher.finish())).await
}

/// Connects to the database at `url` over the TLS its parameters ask for, as statushook
/// does (tokio-postgres alone refuses libpq's `sslrootcert`).
pub async fn connect_sql(
    url: &str,
) -> Result<(tokio_postgres::Client, statushook::store::Connection), tokio_postgres::Error> {
    statushook::config::DatabaseUrl::parse(url)
        .expect("a database URL")
        .connect()
        .await
}

async fn create_database(name: &str) -> String {
    let server = test_server();
    let (client, connection) = connect_sql(&server)
        .await
        .expect("the test database server answers");
    let driver = tokio::spawn(connection);
    let created = client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await;
    if let Err(error) = created {
        let exists = error.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE);
        assert!(exists, "cannot create a test database: {error}");
    }
    drop(client);
    let _ = driver.await;
    // The TLS parameters after the database name stay.
    let (url, parameters) = server.split_once('?').unwrap_or((&server, ""));
    let (base, _) = url.rsplit_once('/').expect("a URL with a database");
    match parameters {
        "" => format!("{base}/{name}"),
        _ => format!("{base}/{name}?{parameters}"),
    }
}

/// Posts a callback, signed as Twilio signs it for `PUBLIC_URL`, to a binary started by
/// [`start_binary`] at `address`.
pub async fn post_to_binary(
    client: &reqwest::Client,
    address: &str,
    params: &[(String, String)],
) -> reqwest::Result<Response> {
    let url = format!("{PUBLIC_URL}/twilio/status");
    let signature = signature::sign_sha1(&Secret::new(AUTH_TOKEN), &url, params);
    client
        .post(format!("{address}/twilio/status"))
        .header("Content-Type", FORM)
        .header("X-Twilio-Signature", signature)
        .body(encode(params))
        .send()
        .await
}

/// `GET /v1/messages/{sid}` of a binary started by [`start_binary`].
pub async fn get_from_binary(client: &reqwest::Client, address: &str, sid: &str) -> Response {
    client
        .get(format!("{address}/v1/messages/{sid}"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("the request is answered")
}

/// Starts the binary with its files limited to `kib` KiB (RLIMIT_FSIZE, SIGXFSZ ignored),
/// so that the store's writes fail once its file reaches that size, as on a full disk.
pub async fn start_binary_with_file_limit(data_dir: &std::path::Path, kib: u32) -> (Child, String) {
    let script = format!("trap '' XFSZ; ulimit -f {kib}; exec \"$0\" serve");
    start(
        Command::new("bash").args(["-c", &script, env!("CARGO_BIN_EXE_statushook")]),
        data_dir,
    )
    .await
}

async fn start(command: &mut Command, data_dir: &std::path::Path) -> (Child, String) {
    let mut child = command
        .env("STATUSHOOK_LISTEN", "127.0.0.1:0")
        .env("STATUSHOOK_DATA_DIR", data_dir)
        .env("STATUSHOOK_PUBLIC_URL", PUBLIC_URL)
        .env("STATUSHOOK_API_TOKEN", API_TOKEN)
        .env("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
        .env("STATUSHOOK_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let stderr = child.stderr.take().expect("piped stderr");
    let mut lines = BufReader::new(stderr).lines();
    while let Some(line) = lines.next_line().await.expect("readable stderr") {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if entry["message"] == "listening" {
            let port = entry["port"].as_u64().expect("a port");
            // Keep draining the log so the child never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return (child, format!("http://127.0.0.1:{port}"));
        }
    }
    panic!("the binary exited before listening");
}

/// Waits, up to 30 seconds, for a background effect to become visible.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
