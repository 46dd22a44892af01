//! TLS to PostgreSQL, through real start-ups of `serve` against the server `scripts/pg`
//! starts: it speaks TLS only (its pg_hba.conf rejects every connection without it), with
//! a certificate for localhost and 127.0.0.1 signed by a CA of its own
//! (`STATUSHOOK_TEST_PG_CA`), and it also listens on 127.0.0.2, a name the certificate
//! lacks. A refused certificate must stop start-up with one line saying why.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::binary::{get_from_binary, post_to_binary, start_replica};
use crate::support::database::{connect_sql, fresh_database};
use crate::support::fixtures::{callback, new_sid, API_TOKEN, AUTH_TOKEN, PUBLIC_URL};

/// A fresh database: its URL without parameters, and the test server's CA.
async fn database() -> (String, String) {
    let url = fresh_database().await;
    let base = url.split_once('?').map_or(url.as_str(), |(base, _)| base);
    let ca = std::env::var("STATUSHOOK_TEST_PG_CA")
        .expect("STATUSHOOK_TEST_PG_CA is set by scripts/pg start");
    (base.to_owned(), ca)
}

/// Starts a replica on `url`, stores a callback through it and reads it back; answers
/// the replica, still running.
async fn serves_and_stores(url: &str) -> Child {
    let (replica, address) = start_replica(url, &[]).await;
    let client = reqwest::Client::new();
    let sid = new_sid();
    let answer = post_to_binary(&client, &address, &callback(&sid, "delivered"))
        .await
        .expect("the callback is answered");
    assert_eq!(answer.status(), 200);
    assert_eq!(get_from_binary(&client, &address, &sid).await.status(), 200);
    replica
}

/// How many sessions statushook holds on the database of `base`, and whether every one
/// of them is encrypted, as the server sees them.
async fn sessions(base: &str) -> (i64, bool) {
    let server = std::env::var("STATUSHOOK_TEST_DATABASE_URL").expect("the test server");
    let (client, connection) = connect_sql(&server).await.expect("the test server answers");
    tokio::spawn(connection);
    let name = base.rsplit('/').next().expect("a database name");
    let row = client
        .query_one(
            "SELECT count(*), coalesce(bool_and(ssl), false) FROM pg_stat_ssl \
             JOIN pg_stat_activity USING (pid) \
             WHERE application_name = 'statushook' AND datname = $1",
            &[&name],
        )
        .await
        .expect("pg_stat_ssl is readable");
    (row.get(0), row.get(1))
}

/// Runs `serve` on `url` until it exits (it must, within 30 s); answers whether it
/// failed and the lines of its stderr that are not JSON log entries.
async fn start_up_failure(url: &str) -> (bool, Vec<String>) {
    let data_dir = tempfile::tempdir().expect("a temporary folder");
    let mut child = Command::new(env!("CARGO_BIN_EXE_statushook"))
        .arg("serve")
        .env("STATUSHOOK_DATABASE_URL", url)
        .env("STATUSHOOK_LISTEN", "127.0.0.1:0")
        .env("STATUSHOOK_DATA_DIR", data_dir.path())
        .env("STATUSHOOK_PUBLIC_URL", PUBLIC_URL)
        .env("STATUSHOOK_API_TOKEN", API_TOKEN)
        .env("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
        .env("STATUSHOOK_LOG_FORMAT", "json")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
    let mut plain = Vec::new();
    let read = async {
        while let Some(line) = lines.next_line().await.expect("readable stderr") {
            if serde_json::from_str::<serde_json::Value>(&line).is_err() {
                plain.push(line);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("start-up fails within 30 s, it does not wait");
    let status = child.wait().await.expect("the binary exits");
    (!status.success(), plain)
}

/// A CA of this test alone, which signed nothing the server has.
fn another_ca(folder: &Path) -> String {
    let (key, cert) = (folder.join("other.key"), folder.join("other.crt"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=another CA"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(made.status.success(), "openssl: {made:?}");
    cert.display().to_string()
}

#[tokio::test]
async fn verify_full_against_the_servers_ca_serves_and_stores_over_encrypted_sessions() {
    let (base, ca) = database().await;
    let url = format!("{base}?sslmode=verify-full&sslrootcert={ca}");
    let _replica = serves_and_stores(&url).await;
    let (count, encrypted) = sessions(&base).await;
    assert!(count > 0, "statushook holds sessions on its database");
    assert!(encrypted, "every session of statushook is encrypted");
}

#[tokio::test]
async fn a_certificate_not_signed_by_sslrootcert_stops_start_up_with_one_line_saying_so() {
    let (base, _) = database().await;
    let folder = tempfile::tempdir().expect("a temporary folder");
    let other = another_ca(folder.path());
    let (failed, lines) =
        start_up_failure(&format!("{base}?sslmode=verify-full&sslrootcert={other}")).await;
    assert!(failed, "the exit code is not zero");
    assert_eq!(lines.len(), 1, "one line: {lines:?}");
    assert!(
        lines[0].ends_with(&format!(
            "the server's certificate is not signed by sslrootcert {other}"
        )),
        "{}",
        lines[0]
    );
}

#[tokio::test]
async fn verify_full_under_a_host_the_certificate_does_not_name_stops_start_up_naming_it() {
    let (base, ca) = database().await;
    let base = base.replacen("127.0.0.1", "127.0.0.2", 1);
    let (failed, lines) =
        start_up_failure(&format!("{base}?sslmode=verify-full&sslrootcert={ca}")).await;
    assert!(failed, "the exit code is not zero");
    assert_eq!(lines.len(), 1, "one line: {lines:?}");
    assert!(
        lines[0].ends_with("the server's certificate is for localhost, 127.0.0.1, not 127.0.0.2"),
        "{}",
        lines[0]
    );
}

#[tokio::test]
async fn verify_ca_checks_the_chain_but_not_the_host() {
    let (base, ca) = database().await;
    let base = base.replacen("127.0.0.1", "127.0.0.2", 1);
    serves_and_stores(&format!("{base}?sslmode=verify-ca&sslrootcert={ca}")).await;
    let folder = tempfile::tempdir().expect("a temporary folder");
    let other = another_ca(folder.path());
    let (failed, lines) =
        start_up_failure(&format!("{base}?sslmode=verify-ca&sslrootcert={other}")).await;
    assert!(failed && lines.len() == 1, "{lines:?}");
    assert!(
        lines[0].contains("is not signed by sslrootcert"),
        "{}",
        lines[0]
    );
}

#[tokio::test]
async fn require_encrypts_without_checking_the_certificate() {
    let (base, _) = database().await;
    let _replica = serves_and_stores(&format!("{base}?sslmode=require")).await;
    let (count, encrypted) = sessions(&base).await;
    assert!(
        count > 0 && encrypted,
        "{count} sessions, all encrypted: {encrypted}"
    );
}

#[tokio::test]
async fn require_with_sslrootcert_checks_the_chain_as_libpq_does() {
    let (base, _) = database().await;
    let folder = tempfile::tempdir().expect("a temporary folder");
    let other = another_ca(folder.path());
    let (failed, lines) =
        start_up_failure(&format!("{base}?sslmode=require&sslrootcert={other}")).await;
    assert!(failed && lines.len() == 1, "{lines:?}");
    assert!(
        lines[0].contains("is not signed by sslrootcert"),
        "{}",
        lines[0]
    );
}

#[tokio::test]
async fn without_sslmode_the_service_prefers_tls_and_its_sessions_are_encrypted() {
    let (base, _) = database().await;
    // The server takes no session without TLS, so one that serves has used TLS.
    let (failed, lines) = start_up_failure(&format!("{base}?sslmode=disable")).await;
    assert!(failed && lines.len() == 1, "{lines:?}");
    assert!(lines[0].contains("no encryption"), "{}", lines[0]);
    let _replica = serves_and_stores(&base).await;
    let (count, encrypted) = sessions(&base).await;
    assert!(count > 0, "statushook holds sessions on its database");
    assert!(encrypted, "every session of statushook is encrypted");
}
