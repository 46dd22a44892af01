//! The `statushook` binary as a child process, for the tests that kill it, restart it,
//! read its log, limit its files or run replicas of it on one database. Every test that
//! starts it to serve starts it through [`start`], with the settings the test gives and
//! no others; [`run`] runs its offline commands.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Response;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStderr, Command};
use tokio::sync::mpsc;

use super::database::{database_for, testing_postgres};
use super::fixtures::{encode, sign, API_TOKEN, AUTH_TOKEN, FORM, PUBLIC_URL};
use super::streams::{sign_url, target_for};

/// The `statushook` binary of this build.
pub const BINARY: &str = env!("CARGO_BIN_EXE_statushook");

/// `statushook serve` running as a child process of the test.
pub struct Binary {
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// Its start-up line, the `listening` entry of its log.
    pub startup: Value,
    pub log: Log,
}

impl Binary {
    /// The process and its address, for a test that does not read the log: what it logs
    /// from now on is read and dropped.
    pub fn into_parts(self) -> (Child, String) {
        (self.child, self.address)
    }
}

/// The log of a [`Binary`]: its standard error, line by line. The lines are read as they
/// come whatever the test does meanwhile, so that the binary never blocks on a full pipe.
pub struct Log {
    lines: mpsc::UnboundedReceiver<String>,
    /// The lines taken from `lines` so far.
    read: Vec<String>,
}

impl Log {
    fn of(stderr: ChildStderr) -> Log {
        let (sender, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut stderr = BufReader::new(stderr);
            let mut line = Vec::new();
            while stderr
                .read_until(b'\n', &mut line)
                .await
                .is_ok_and(|read| read > 0)
            {
                let text = String::from_utf8_lossy(&line);
                // Once the test has let go of the log, the lines are dropped.
                let _ = sender.send(text.trim_end_matches(['\r', '\n']).to_owned());
                line.clear();
            }
        });
        Log {
            lines,
            read: Vec::new(),
        }
    }

    /// The next line that is a JSON entry, once the binary writes it; `None` once it has
    /// closed its standard error (it exited).
    pub async fn next_entry(&mut self) -> Option<Value> {
        while let Some(line) = self.lines.recv().await {
            let entry = serde_json::from_str(&line).ok();
            self.read.push(line);
            if entry.is_some() {
                return entry;
            }
        }
        None
    }

    /// Every line the binary wrote, from its first: waits for it to close its standard
    /// error, so the binary must have exited or be about to.
    pub async fn read_to_end(mut self) -> Vec<String> {
        while let Some(line) = self.lines.recv().await {
            self.read.push(line);
        }
        self.read
    }

    /// Keeps every JSON entry the binary writes from now on, gathered in the background,
    /// for a test that looks at the log while the binary runs instead of waiting for its
    /// next line.
    pub fn keep(mut self) -> KeptLog {
        let kept = KeptLog::default();
        let entries = Arc::clone(&kept.entries);
        tokio::spawn(async move {
            while let Some(line) = self.lines.recv().await {
                if let Ok(entry) = serde_json::from_str::<Value>(&line) {
                    entries.lock().expect("the log").push(entry);
                }
            }
        });
        kept
    }
}

/// The JSON entries of a [`Log`] kept by [`Log::keep`], as they arrive.
#[derive(Clone, Default)]
pub struct KeptLog {
    entries: Arc<Mutex<Vec<Value>>>,
}

impl KeptLog {
    /// The entries written so far, oldest first.
    pub fn entries(&self) -> Vec<Value> {
        self.entries.lock().expect("the log").clone()
    }
}

/// The settings every `serve` of the tests needs: port 0, the store in `data_dir`, the
/// public URL and tokens of the fixtures, and a JSON log at `info` (whose start-up line
/// gives the port).
pub fn serve_env(data_dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("STATUSHOOK_LISTEN", "127.0.0.1:0".into()),
        ("STATUSHOOK_DATA_DIR", data_dir.display().to_string()),
        ("STATUSHOOK_PUBLIC_URL", PUBLIC_URL.into()),
        ("STATUSHOOK_API_TOKEN", API_TOKEN.into()),
        ("TWILIO_AUTH_TOKEN", AUTH_TOKEN.into()),
        ("STATUSHOOK_LOG_FORMAT", "json".into()),
        ("RUST_LOG", "info".into()),
    ]
}

/// `statushook serve` with the settings `env` and no others: nothing of the environment
/// the tests run in reaches it. Of a setting given twice, the later value holds.
pub fn serve_command(env: &[(&str, String)]) -> Command {
    let mut command = Command::new(BINARY);
    command.arg("serve");
    with_only(command, env)
}

fn with_only(mut command: Command, env: &[(&str, String)]) -> Command {
    command
        .env_clear()
        .envs(env.iter().map(|(name, value)| (*name, value)))
        .kill_on_drop(true);
    command
}

/// Starts `command`, a `statushook serve` that logs JSON at `info`, and waits for its
/// start-up line. Every test that starts the binary to serve starts it here.
pub async fn start(mut command: Command) -> Binary {
    let mut child = command
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let mut log = Log::of(child.stderr.take().expect("piped stderr"));
    while let Some(entry) = log.next_entry().await {
        if entry["message"] == "listening" {
            let port = entry["port"].as_u64().expect("a port");
            return Binary {
                child,
                address: format!("http://127.0.0.1:{port}"),
                startup: entry,
                log,
            };
        }
    }
    panic!(
        "the binary exited before listening:\n{}",
        log.read.join("\n")
    );
}

/// Starts the binary on `data_dir`, with `env` on top of [`serve_env`]. Under
/// `STATUSHOOK_TEST_STORE=postgres` it stores in a database of its own for `data_dir`
/// (the same one again when started again on the same folder).
pub async fn serve(data_dir: &Path, env: &[(&str, String)]) -> Binary {
    let mut settings: Vec<(&str, String)> = serve_env(data_dir);
    if testing_postgres() {
        settings.push(("STATUSHOOK_DATABASE_URL", database_for(data_dir).await));
    }
    settings.extend_from_slice(env);
    start(serve_command(&settings)).await
}

/// [`serve`] on the store of the tests, for a test that does not read the log.
pub async fn start_binary(data_dir: &Path) -> (Child, String) {
    start_binary_with_env(data_dir, &[]).await
}

/// As [`start_binary`], with more environment variables.
pub async fn start_binary_with_env(data_dir: &Path, env: &[(&str, String)]) -> (Child, String) {
    serve(data_dir, env).await.into_parts()
}

/// Starts the binary on the sled store in `data_dir`, whatever store the tests use:
/// for what only the embedded store has (its folder, its files, offline export).
pub async fn start_sled_binary(data_dir: &Path) -> (Child, String) {
    start_sled_binary_with_env(data_dir, &[]).await
}

/// As [`start_sled_binary`], with more environment variables.
pub async fn start_sled_binary_with_env(
    data_dir: &Path,
    env: &[(&str, String)],
) -> (Child, String) {
    let mut settings: Vec<(&str, String)> = serve_env(data_dir);
    settings.extend_from_slice(env);
    start(serve_command(&settings)).await.into_parts()
}

/// Starts the binary as one replica on the PostgreSQL database at `database_url`,
/// with extra environment `env`.
pub async fn start_replica(database_url: &str, env: &[(&str, String)]) -> (Child, String) {
    let data_dir = std::env::temp_dir().join("statushook-replica-unused");
    let mut settings: Vec<(&str, String)> = serve_env(&data_dir);
    settings.push(("STATUSHOOK_DATABASE_URL", database_url.to_owned()));
    settings.extend_from_slice(env);
    start(serve_command(&settings)).await.into_parts()
}

/// Starts the binary on sled with its files limited to `kib` KiB (RLIMIT_FSIZE, SIGXFSZ
/// ignored), so that the store's writes fail once its file reaches that size, as on a
/// full disk.
pub async fn start_binary_with_file_limit(data_dir: &Path, kib: u32) -> (Child, String) {
    let script = format!("trap '' XFSZ; ulimit -f {kib}; exec \"$0\" serve");
    let mut command = Command::new("bash");
    command.args(["-c", &script, BINARY]);
    start(with_only(command, &serve_env(data_dir)))
        .await
        .into_parts()
}

/// Runs `serve` with `env`, which must stop it at start-up: a binary that starts serving
/// instead is stopped and the test fails, rather than waiting for it forever.
pub async fn refused_start(env: &[(&str, String)]) -> std::process::Output {
    let output = tokio::time::timeout(Duration::from_secs(30), serve_command(env).output()).await;
    let description: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    output
        .unwrap_or_else(|_| panic!("serve started instead of refusing {description:?}"))
        .expect("the binary runs")
}

/// Runs the binary to its end with `args` and the settings `env` and no others, as an
/// operator runs an offline command; answers (success, stdout, stderr). It blocks: the
/// command must not need a service of this test's runtime.
pub fn run(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let output = std::process::Command::new(BINARY)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("the binary runs");
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).expect("UTF-8 output");
    (
        output.status.success(),
        text(output.stdout),
        text(output.stderr),
    )
}

/// Sends SIGTERM to `child`.
pub fn sigterm(child: &Child) {
    let pid = child.id().expect("a pid").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success(), "kill -TERM {pid}");
}

/// SIGTERM, then waits for a clean exit.
pub async fn stop(mut child: Child) {
    sigterm(&child);
    let status = child.wait().await.expect("exits");
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM must end the service cleanly"
    );
}

/// A callback to `/twilio/status` of a binary at `address`, signed as Twilio signs it for
/// [`PUBLIC_URL`]; ready to send.
pub fn signed_callback(
    client: &reqwest::Client,
    address: &str,
    params: &[(String, String)],
) -> reqwest::RequestBuilder {
    let signature = sign(&format!("{PUBLIC_URL}/twilio/status"), params);
    client
        .post(format!("{address}/twilio/status"))
        .header("Content-Type", FORM)
        .header("X-Twilio-Signature", signature)
        .body(encode(params))
}

/// Posts a [`signed_callback`] to a binary at `address`.
pub async fn post_to_binary(
    client: &reqwest::Client,
    address: &str,
    params: &[(String, String)],
) -> reqwest::Result<Response> {
    signed_callback(client, address, params).send().await
}

/// Posts `body` to `/twilio/events` of a binary at `address`, signed as a Twilio Event
/// Streams sink signs it for [`PUBLIC_URL`].
pub async fn post_events_to_binary(
    client: &reqwest::Client,
    address: &str,
    body: &str,
) -> reqwest::Result<Response> {
    let target = target_for("/twilio/events", body.as_bytes());
    let signature = sign_url(&format!("{PUBLIC_URL}{target}"));
    client
        .post(format!("{address}{target}"))
        .header("Content-Type", "application/json")
        .header("X-Twilio-Signature", signature)
        .body(body.to_owned())
        .send()
        .await
}

/// `GET /v1/messages/{sid}` of a binary at `address`.
pub async fn get_from_binary(client: &reqwest::Client, address: &str, sid: &str) -> Response {
    client
        .get(format!("{address}/v1/messages/{sid}"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("the request is answered")
}

/// The JSON answer to an authorized GET of `url`, at a binary or any running service;
/// panics unless it is a `200`.
pub async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    let response = client
        .get(url)
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("the request is answered");
    assert_eq!(response.status(), 200, "{url}");
    response.json().await.expect("a JSON answer")
}
