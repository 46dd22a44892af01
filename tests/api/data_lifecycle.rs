//! The data lifecycle: retention, privacy erasure, subaccounts, and moving data out of a
//! running service and into an empty store.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{json, Value};
use tokio::process::Command;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use statushook::cli::simulate::callback_params;
use statushook::domain::{KnownStatus, MessageSid, Source, StatusEvent};
use statushook::store::{Store, StoredMessage};

use crate::support::binary::{
    get_from_binary, get_json, post_to_binary, run, serve, signed_callback, start_binary,
    start_binary_with_env, start_replica, start_sled_binary, stop, Binary, BINARY,
};
use crate::support::database::{
    database_for, fresh_database, open_store, test_database, testing_postgres,
};
use crate::support::fixtures::{callback, callbacks_to, new_sid, with, ACCOUNT_SID, API_TOKEN};
use crate::support::metrics::{metric, scrape};
use crate::support::poll::eventually;
use crate::support::spawn::{spawn_app, spawn_app_with, Settings};

/// A subaccount of `ACCOUNT_SID`.
const SUBACCOUNT: &str = "ACfedcba9876543210fedcba9876543210";

/// `statushook check` on a stopped store must pass (on the database of `data` under
/// `STATUSHOOK_TEST_STORE=postgres`); answers its report line.
async fn check(data: &Path) -> String {
    let (ok, out, err) = if testing_postgres() {
        let url = database_for(data).await;
        run(&["check"], &[("STATUSHOOK_DATABASE_URL", &url)])
    } else {
        let data = data.to_str().expect("a UTF-8 path");
        run(&["check", "--data-dir", data], &[])
    };
    assert!(ok, "statushook check failed: {out}{err}");
    out
}

/// Every row of every table of the PostgreSQL store at `url` that holds `needle`, as text
/// or (in a `bytea` column) as bytes, shown as its table and the row as text.
async fn rows_holding(url: &str, needle: &str) -> Vec<String> {
    let (client, connection) = crate::support::database::connect_sql(url)
        .await
        .expect("the test database answers");
    tokio::spawn(connection);
    let tables = client
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'statushook' AND table_type = 'BASE TABLE'",
            &[],
        )
        .await
        .expect("the tables");
    assert!(tables.len() >= 7, "the store's tables are listed");
    let hex: String = needle.bytes().map(|byte| format!("{byte:02x}")).collect();
    let mut found = Vec::new();
    for table in &tables {
        let table: String = table.get(0);
        let rows = client
            .query(
                &format!(
                    "SELECT t::text FROM statushook.{table} AS t \
                     WHERE strpos(t::text, $1) > 0 OR strpos(t::text, $2) > 0"
                ),
                &[&needle, &hex],
            )
            .await
            .expect("a table read");
        found.extend(
            rows.iter()
                .map(|row| format!("{table}: {}", row.get::<_, String>(0))),
        );
    }
    found
}

/// Hour and minute counters whose stripes sum to zero, as "span bucket kind value".
async fn empty_counters(url: &str) -> Vec<String> {
    let (client, connection) = crate::support::database::connect_sql(url)
        .await
        .expect("the test database answers");
    tokio::spawn(connection);
    let rows = client
        .query(
            "SELECT format('%s %s %s %s', span, bucket, kind, value) FROM statushook.counters \
             WHERE span <> 'a' GROUP BY span, bucket, kind, value HAVING sum(n) = 0",
            &[],
        )
        .await
        .expect("the counters");
    rows.iter().map(|row| row.get(0)).collect()
}

/// Whether any file under `dir` contains `needle`.
fn files_contain(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).expect("a folder").any(|entry| {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            return files_contain(&path, needle);
        }
        let bytes = std::fs::read(&path).expect("a readable file");
        bytes.windows(needle.len()).any(|window| window == needle)
    })
}

async fn post(client: &reqwest::Client, address: &str, params: &[(String, String)]) {
    let response = post_to_binary(client, address, params)
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
}

/// Posts a signed callback with Twilio's delivery token (`I-Twilio-Idempotency-Token`).
async fn post_with_token(
    client: &reqwest::Client,
    address: &str,
    params: &[(String, String)],
    token: &str,
) {
    let response = signed_callback(client, address, params)
        .header("I-Twilio-Idempotency-Token", token)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
}

async fn delete(client: &reqwest::Client, url: &str) -> reqwest::Response {
    client
        .delete(url)
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("answered")
}

#[tokio::test]
async fn messages_past_the_retention_age_are_deleted_with_every_trace_and_counted() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let env = [
        ("STATUSHOOK_RETENTION", "3s".to_owned()),
        ("STATUSHOOK_RETENTION_INTERVAL", "100ms".to_owned()),
    ];
    let (child, address) = start_binary_with_env(data.path(), &env).await;
    let client = reqwest::Client::new();
    let old: Vec<String> = (0..3).map(|_| new_sid()).collect();
    let token = format!("token-{}", new_sid());
    for sid in &old {
        post(&client, &address, &callback(sid, "sent")).await;
        let failed = with(callback(sid, "undelivered"), "ErrorCode", "30003");
        post_with_token(&client, &address, &failed, &format!("{token}-{sid}")).await;
    }
    eventually("retention to delete the old messages", || async {
        let response = get_from_binary(&client, &address, &old[0]).await;
        response.status() == 404
    })
    .await;
    // Posted after the old ones aged out: three seconds to go.
    let young = new_sid();
    post(&client, &address, &callback(&young, "delivered")).await;
    eventually("every old message to go", || async {
        for sid in &old {
            if get_from_binary(&client, &address, sid).await.status() != 404 {
                return false;
            }
        }
        true
    })
    .await;
    let listed = get_json(&client, &format!("{address}/v1/messages")).await;
    let sids: Vec<&str> = listed["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["sid"].as_str())
        .collect();
    assert_eq!(sids, [young.as_str()]);
    let stats = get_json(&client, &format!("{address}/v1/stats")).await;
    assert_eq!(stats["total"], 1, "{stats}");
    assert_eq!(stats["by_error_code"], json!({}), "{stats}");
    let feed = get_json(&client, &format!("{address}/v1/events?after=0")).await;
    assert_eq!(
        feed["events"].as_array().expect("events").len(),
        1,
        "{feed}"
    );
    // The job counts a batch once the store has answered it, a moment after the deletion
    // is visible: the count is awaited, and must then be exactly three.
    let retention = "statushook_deleted_messages_total{reason=\"retention\"}";
    let counted = || async { metric(&scrape(&client, &address).await, retention) };
    eventually("the deletions to be counted", || async {
        counted().await >= 3.0
    })
    .await;
    assert_eq!(counted().await, 3.0);
    stop(child).await;
    let report = check(data.path()).await;
    assert!(report.contains(" 1 messages, 1 events"), "{report}");
    if testing_postgres() {
        // No row of any table names an old message or holds one of their delivery
        // tokens, and no hour or minute counter is left at zero.
        let url = database_for(data.path()).await;
        for needle in old.iter().chain([&token]) {
            let left = rows_holding(&url, needle).await;
            assert!(left.is_empty(), "{needle} is still stored: {left:#?}");
        }
        // The same search finds the message that stays, wherever it is kept.
        let kept: BTreeSet<String> = rows_holding(&url, &young)
            .await
            .iter()
            .filter_map(|row| row.split(':').next().map(str::to_owned))
            .collect();
        assert_eq!(
            kept,
            BTreeSet::from(["events", "messages", "positions"].map(String::from))
        );
        // A message moving on leaves its former status's counters at zero (`sent`); the
        // counters a deletion empties go.
        let emptied: Vec<String> = empty_counters(&url)
            .await
            .into_iter()
            .filter(|counter| counter.ends_with(" undelivered") || counter.ends_with(" 30003"))
            .collect();
        assert_eq!(emptied, Vec::<String>::new());
    }
}

#[tokio::test]
async fn retention_goes_on_deleting_messages_as_each_passes_the_age_in_later_passes() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let env = [
        ("STATUSHOOK_RETENTION", "1s".to_owned()),
        ("STATUSHOOK_RETENTION_INTERVAL", "100ms".to_owned()),
    ];
    let (child, address) = start_binary_with_env(data.path(), &env).await;
    let client = reqwest::Client::new();
    // Each message is posted once the one before is gone: the passes that deleted the
    // earlier ones, and the passes that found nothing old since, must not pass it over.
    for _ in 0..3 {
        let sid = new_sid();
        post(&client, &address, &callback(&sid, "delivered")).await;
        assert_eq!(get_from_binary(&client, &address, &sid).await.status(), 200);
        eventually("retention to delete the message", || async {
            get_from_binary(&client, &address, &sid).await.status() == 404
        })
        .await;
    }
    stop(child).await;
}

#[tokio::test]
async fn erasing_a_phone_number_removes_its_messages_and_leaves_no_byte_of_it_in_the_store() {
    const NUMBER: &str = "+15557770123";
    let data = tempfile::tempdir().expect("a temporary folder");
    let Binary {
        child,
        address,
        log,
        ..
    } = serve(data.path(), &[]).await;
    let client = reqwest::Client::new();
    let to_it: Vec<String> = (0..3).map(|_| new_sid()).collect();
    let from_it = new_sid();
    let other = new_sid();
    let someone_else = new_sid();
    for sid in &to_it {
        let queued = callback(sid, "queued");
        let queued: Vec<(String, String)> = queued
            .into_iter()
            .map(|(k, v)| {
                if k == "To" {
                    (k, NUMBER.into())
                } else {
                    (k, v)
                }
            })
            .collect();
        post(&client, &address, &queued).await;
        let mut delivered = queued.clone();
        for (name, value) in &mut delivered {
            if name == "MessageStatus" || name == "SmsStatus" {
                *value = "delivered".into();
            }
        }
        post(&client, &address, &with(delivered, "Body", "call me")).await;
    }
    let sent_by_it: Vec<(String, String)> = callback(&from_it, "sent")
        .into_iter()
        .map(|(k, v)| {
            if k == "From" {
                (k, NUMBER.into())
            } else {
                (k, v)
            }
        })
        .collect();
    post(&client, &address, &sent_by_it).await;
    post(&client, &address, &callback(&other, "delivered")).await;
    post(&client, &address, &callback(&someone_else, "failed")).await;

    for (target, status) in [
        ("/v1/messages", 400),
        ("/v1/messages?phone=+15557770123", 400),
        ("/v1/messages?number=%2B1", 400),
        ("/v1/messages/SMnope", 400),
        (&format!("/v1/messages/{}", new_sid()), 404),
    ] {
        let response = delete(&client, &format!("{address}{target}")).await;
        assert_eq!(response.status(), status, "DELETE {target}");
        let body: Value = response.json().await.expect("a JSON error");
        assert!(body["error"].is_string(), "{target}: {body}");
    }
    let erased = delete(
        &client,
        &format!("{address}/v1/messages?phone=%2B15557770123"),
    )
    .await;
    assert_eq!(erased.status(), 200);
    assert_eq!(
        erased.json::<Value>().await.expect("JSON"),
        json!({"deleted": 4})
    );
    for sid in to_it.iter().chain([&from_it]) {
        assert_eq!(get_from_binary(&client, &address, sid).await.status(), 404);
    }
    for filter in ["to", "from"] {
        let url = format!("{address}/v1/messages?{filter}=%2B15557770123");
        let listed = get_json(&client, &url).await;
        assert_eq!(listed["messages"], json!([]), "{filter}");
    }
    let one = delete(&client, &format!("{address}/v1/messages/{someone_else}")).await;
    assert_eq!(one.status(), 204);
    let again = delete(&client, &format!("{address}/v1/messages/{someone_else}")).await;
    assert_eq!(again.status(), 404);
    let stats = get_json(&client, &format!("{address}/v1/stats")).await;
    assert_eq!(stats["total"], 1, "{stats}");
    assert_eq!(stats["by_status"], json!({"delivered": 1}), "{stats}");
    stop(child).await;

    let logged = log.read_to_end().await.join("\n");
    assert!(logged.contains("erased on request"), "{logged}");
    assert!(
        !logged.contains("5557770123"),
        "the number was logged:\n{logged}"
    );
    check(data.path()).await;
    if testing_postgres() {
        // No row of any table holds the number. (PostgreSQL keeps deleted rows in its
        // table files as dead tuples until VACUUM reclaims their space; see the README.)
        let url = database_for(data.path()).await;
        for needle in [NUMBER, "5557770123"] {
            let left = rows_holding(&url, needle).await;
            assert!(left.is_empty(), "the number is still stored: {left:#?}");
        }
        assert!(!rows_holding(&url, &other).await.is_empty());
    } else {
        // sled keeps old page versions in its log until it rewrites their segment;
        // whatever they still hold, compaction rewrites the store from its live data only.
        let before = files_contain(data.path(), NUMBER.as_bytes());
        eprintln!("the number was in dead log data before compaction: {before}");
        let path = data.path().to_str().expect("UTF-8");
        let (ok, out, err) = run(&["compact", "--data-dir", path], &[]);
        assert!(ok, "compact failed: {out}{err}");
        assert!(!files_contain(data.path(), NUMBER.as_bytes()));
        assert!(!files_contain(data.path(), b"5557770123"));
        assert!(files_contain(data.path(), other.as_bytes()));
    }
    let report = check(data.path()).await;
    assert!(report.contains(" 1 messages, 1 events"), "{report}");
    let (child, address) = start_binary(data.path()).await;
    assert_eq!(
        get_from_binary(&client, &address, &other).await.status(),
        200
    );
    stop(child).await;
}

/// Messages of several shapes: repeated and unusual parameters, an unknown status, error
/// codes, two accounts.
async fn fill(client: &reqwest::Client, address: &str) -> Vec<String> {
    let mut sids = Vec::new();
    for i in 0..40 {
        let sid = new_sid();
        let account = if i % 4 == 0 { SUBACCOUNT } else { ACCOUNT_SID };
        let first: Vec<(String, String)> = callback(&sid, "queued")
            .into_iter()
            .map(|(k, v)| {
                if k == "AccountSid" {
                    (k, account.into())
                } else {
                    (k, v)
                }
            })
            .collect();
        post(client, address, &first).await;
        let last = match i % 5 {
            0 => with(callback(&sid, "undelivered"), "ErrorCode", "30003"),
            1 => with(
                with(
                    callback(&sid, "delivered"),
                    "Note",
                    "comma, \"quote\"\nline",
                ),
                "Note",
                "second",
            ),
            2 => callback(&sid, "bounced"),
            3 => with(callback(&sid, "read"), "RawDlrDoneDate", "2611260901"),
            _ => with(callback(&sid, "failed"), "ErrorCode", "30008"),
        };
        post(client, address, &last).await;
        sids.push(sid);
    }
    sids
}

/// What a service answers about its messages: each as `GET /v1/messages/{sid}` shows it,
/// the listing (as a set: messages updated in one millisecond may list in another order
/// after an import, which keeps times to the millisecond), `/v1/stats` and its export.
#[derive(Debug, PartialEq)]
struct Answers {
    messages: BTreeMap<String, Value>,
    listed: BTreeMap<String, Value>,
    stats: Value,
    export: String,
}

async fn answers(client: &reqwest::Client, address: &str, sids: &[String]) -> Answers {
    let mut messages = BTreeMap::new();
    for sid in sids {
        let url = format!("{address}/v1/messages/{sid}");
        messages.insert(sid.clone(), get_json(client, &url).await);
    }
    let listing = get_json(client, &format!("{address}/v1/messages?limit=1000")).await;
    let listed = listing["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| (m["sid"].as_str().expect("a sid").to_owned(), m.clone()))
        .collect();
    let export = client
        .get(format!("{address}/v1/export"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .expect("answered")
        .text()
        .await
        .expect("text");
    Answers {
        messages,
        listed,
        stats: get_json(client, &format!("{address}/v1/stats")).await,
        export,
    }
}

/// `statushook export --url` of the service at `address` into a new file. Awaited, not
/// blocking: the service may be one this test runs, on this runtime.
async fn export_from(address: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().expect("a file");
    let output = Command::new(BINARY)
        .args(["export", "--url", address, "--output"])
        .arg(file.path())
        .env_clear()
        .env("STATUSHOOK_API_TOKEN", API_TOKEN)
        .output()
        .await
        .expect("the binary runs");
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{err}");
    file
}

/// `statushook import FILE` into the store of `data` (its database under
/// `STATUSHOOK_TEST_STORE=postgres`); answers (success, stderr).
async fn import_into(data: &Path, file: &Path) -> (bool, String) {
    let file = file.to_str().expect("UTF-8");
    let (ok, _, err) = if testing_postgres() {
        let url = database_for(data).await;
        run(&["import", file], &[("STATUSHOOK_DATABASE_URL", &url)])
    } else {
        let data = data.to_str().expect("UTF-8");
        run(&["import", file, "--data-dir", data], &[])
    };
    (ok, err)
}

#[tokio::test]
async fn an_export_from_the_running_service_imports_into_an_empty_store_with_the_same_answers() {
    let app = spawn_app().await;
    let sids = fill(&app.client, &app.address).await;
    let response = app.get_authorized("/v1/export").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/x-ndjson",
        "JSON lines"
    );
    let exported = response.text().await.expect("text");
    assert_eq!(exported.lines().count(), sids.len());
    let before = answers(&app.client, &app.address, &sids).await;
    assert_eq!(before.export, exported);
    for (sid, shown) in &before.messages {
        let line = exported
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).expect("a JSON line"))
            .find(|message| message["sid"] == *sid)
            .expect("every message exported");
        assert_eq!(
            &line, shown,
            "an export line is the message as GET shows it"
        );
    }

    // `statushook export --url` streams the same export.
    let file = export_from(&app.address).await;
    assert_eq!(
        std::fs::read_to_string(file.path()).expect("read"),
        exported
    );

    let data = tempfile::tempdir().expect("a temporary folder");
    let target = data.path().join("db");
    let (ok, err) = import_into(&target, file.path()).await;
    assert!(ok, "{err}");
    assert!(
        err.contains(&format!("imported {} messages", sids.len())),
        "{err}"
    );
    let (ok, err) = import_into(&target, file.path()).await;
    assert!(
        !ok,
        "a second import into the now full store must be refused"
    );
    assert!(err.contains("empty store"), "{err}");
    check(&target).await;

    let (child, address) = start_binary(&target).await;
    let after = answers(&reqwest::Client::new(), &address, &sids).await;
    assert_eq!(after, before, "the imported store answers as the first did");
    stop(child).await;
}

#[tokio::test]
async fn a_sled_store_moves_to_postgresql_by_export_and_import_with_the_same_answers() {
    let data = tempfile::tempdir().expect("a temporary folder");
    let (sled, address) = start_sled_binary(data.path()).await;
    let client = reqwest::Client::new();
    let sids = fill(&client, &address).await;
    let before = answers(&client, &address, &sids).await;
    let file = export_from(&address).await;
    stop(sled).await;

    let database = fresh_database().await;
    let path = file.path().to_str().expect("UTF-8");
    let (ok, _, err) = run(&["import", path, "--database-url", &database], &[]);
    assert!(ok, "{err}");
    assert!(
        err.contains(&format!("imported {} messages", sids.len())),
        "{err}"
    );
    let (ok, out, err) = run(&["check", "--database-url", &database], &[]);
    assert!(ok, "statushook check failed: {out}{err}");
    assert!(
        out.contains(&format!(" {} messages, ", sids.len())),
        "{out}"
    );

    let (postgres, address) = start_replica(&database, &[]).await;
    let after = answers(&client, &address, &sids).await;
    assert_eq!(after, before, "PostgreSQL answers as sled did");
    stop(postgres).await;
}

#[tokio::test]
async fn an_export_takes_a_window_and_csv_and_refuses_bad_parameters() {
    let app = spawn_app().await;
    let sids = fill(&app.client, &app.address).await;
    let late = new_sid();
    assert_eq!(
        app.post_callback(&callback(&late, "queued")).await.status(),
        200
    );
    let first = app.message_json(&sids[0]).await;
    let since = first["updated_at"].as_str().expect("a time");
    let windowed = app
        .get_authorized(&format!("/v1/export?since={since}&format=csv"))
        .await;
    assert_eq!(windowed.status(), 200);
    let csv = windowed.text().await.expect("text");
    let mut rows = csv.lines();
    assert!(rows
        .next()
        .expect("a header")
        .starts_with("sid,account_sid,"));
    assert!(csv.contains(&sids[0]) && csv.contains(&late));
    for (query, parameter) in [
        ("format=xml", "format"),
        ("since=yesterday", "since"),
        (
            "until=2020-01-01T00:00:00Z&since=2021-01-01T00:00:00Z",
            "until",
        ),
        ("phone=1", "phone"),
    ] {
        let response = app.get_authorized(&format!("/v1/export?{query}")).await;
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = response.json().await.expect("a JSON error");
        assert!(
            body["error"].as_str().expect("text").starts_with(parameter),
            "{query}: {body}"
        );
    }
    assert_eq!(app.get("/v1/export").await.status(), 401);
}

#[tokio::test]
async fn an_export_with_the_listings_filters_holds_exactly_the_messages_the_listing_shows() {
    let app = spawn_app().await;
    let outcomes = [
        ("delivered", None, "+15005550101"),
        ("failed", Some(30008), "+15005550101"),
        ("undelivered", Some(30003), "+15005550102"),
        ("undelivered", Some(30003), "+15005550103"),
        ("sent", None, "+15005550103"),
    ];
    for (status, code, to) in outcomes {
        let sid = new_sid();
        for params in callbacks_to(&sid, status, code) {
            let params: Vec<_> = params
                .into_iter()
                .map(|(name, value)| match name.as_str() {
                    "To" => (name, to.to_owned()),
                    _ => (name, value),
                })
                .collect();
            assert_eq!(app.post_callback(&params).await.status(), 200);
        }
    }
    for query in [
        "status=failed",
        "status=failed&status=undelivered",
        "error_code=30003",
        "to=%2B15005550103",
        "to=%2B15005550101&status=delivered",
        "from=%2B15005550006",
        "status=read",
    ] {
        let listed: BTreeSet<String> = app.json(&format!("/v1/messages?{query}&limit=1000")).await
            ["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .map(|m| m["sid"].as_str().expect("a sid").to_owned())
            .collect();
        let response = app.get_authorized(&format!("/v1/export?{query}")).await;
        assert_eq!(response.status(), 200, "{query}");
        let exported: BTreeSet<String> = response
            .text()
            .await
            .expect("text")
            .lines()
            .map(|line| {
                let message: Value = serde_json::from_str(line).expect("a JSON line");
                message["sid"].as_str().expect("a sid").to_owned()
            })
            .collect();
        assert_eq!(exported, listed, "{query}");
    }
    let response = app.get_authorized("/v1/export?status=lost").await;
    assert_eq!(response.status(), 400);
}

/// The store the tests run against, opened in this process: a fresh test database with
/// PostgreSQL, else a sled store in `dir`.
async fn store_in(dir: &Path) -> Store {
    open_store(&dir.join("db"), test_database().await.as_deref()).await
}

/// Records one callback of `sid` straight into `store`.
async fn record(store: &Store, sid: &str, status: &str) {
    let params = callback_params(sid, status, None, "+15005550009", "+15005550006");
    let event = StatusEvent::from_params(params, Source::Callback).expect("a valid event");
    store.record(event, None).await.expect("stored");
}

#[tokio::test]
async fn export_pages_show_the_store_as_of_their_snapshot_and_leave_out_what_was_deleted() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = store_in(dir.path()).await;
    let mut sids: Vec<String> = (0..4).map(|_| new_sid()).collect();
    sids.sort();
    let [a, b, c, d] = [0, 1, 2, 3].map(|n| sids[n].as_str());
    for sid in [a, c, d] {
        record(&store, sid, "queued").await;
    }
    let snapshot = store.snapshot().await.expect("a snapshot");
    record(&store, a, "delivered").await;
    record(&store, b, "queued").await;
    let erased = MessageSid::parse(d).expect("a sid");
    assert!(store.delete_message(&erased).await.expect("deleted"));

    // A page at a time, as small as can be: a message created after the snapshot takes
    // no place in a page, so a page comes back empty only at the end.
    let page = |after: Option<&StoredMessage>| {
        let after = after.map(|message| message.sid.clone());
        store.export_page(snapshot, after, 1)
    };
    let shown = |page: &[StoredMessage]| -> Vec<String> {
        page.iter().map(|m| m.sid.as_str().to_owned()).collect()
    };
    let first = page(None).await.expect("a page");
    assert_eq!(shown(&first), [a]);
    assert_eq!(
        first[0].events.len(),
        1,
        "an event after the snapshot is left out"
    );
    assert_eq!(first[0].state.status, Some(KnownStatus::Queued));
    let second = page(first.first()).await.expect("a page");
    assert_eq!(
        shown(&second),
        [c],
        "a message created after the snapshot is left out"
    );
    let third = page(second.first()).await.expect("a page");
    assert_eq!(
        shown(&third),
        Vec::<String>::new(),
        "a message deleted since the snapshot is left out"
    );
    store.close().await.expect("closes");
}

#[tokio::test]
async fn listings_and_stats_filter_by_account_and_page_exactly() {
    let app = spawn_app().await;
    let sids = fill(&app.client, &app.address).await;
    let of_sub: Vec<&String> = sids.iter().step_by(4).collect();
    let mut seen = Vec::new();
    let mut target = format!("/v1/messages?account_sid={SUBACCOUNT}&limit=3");
    loop {
        let page: Value = app
            .get_authorized(&target)
            .await
            .json()
            .await
            .expect("JSON");
        for message in page["messages"].as_array().expect("messages") {
            assert_eq!(message["account_sid"], SUBACCOUNT);
            seen.push(message["sid"].as_str().expect("sid").to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                target = format!("/v1/messages?account_sid={SUBACCOUNT}&limit=3&cursor={cursor}")
            }
            None => break,
        }
    }
    seen.sort();
    let mut expected: Vec<String> = of_sub.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(seen, expected);

    let stats: Value = app
        .get_authorized(&format!("/v1/stats?account_sid={SUBACCOUNT}"))
        .await
        .json()
        .await
        .expect("JSON");
    // Every fourth message is the subaccount's, and i % 5 picks its outcome (`bounced` is
    // unknown and leaves `queued` current): two of each.
    let mut by_status = BTreeMap::<&str, u64>::new();
    for i in (0..40).step_by(4) {
        let status = ["undelivered", "delivered", "queued", "read", "failed"][i % 5];
        *by_status.entry(status).or_default() += 1;
    }
    assert_eq!(stats["by_status"], json!(by_status), "{stats}");
    assert_eq!(stats["total"], 10);
    let all: Value = app
        .get_authorized("/v1/stats")
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(all["total"], 40);
    for target in ["/v1/messages?account_sid=AC1", "/v1/stats?account_sid=nope"] {
        let response = app.get_authorized(target).await;
        assert_eq!(response.status(), 400, "{target}");
    }
}

#[tokio::test]
async fn a_message_sent_for_a_subaccount_is_created_there_and_reconciled_there() {
    let twilio = MockServer::start().await;
    let sid = new_sid();
    let create = format!("/2010-04-01/Accounts/{SUBACCOUNT}/Messages.json");
    let fetch = format!("/2010-04-01/Accounts/{SUBACCOUNT}/Messages/{sid}.json");
    let resource = |status: &str| {
        json!({
            "sid": sid, "status": status, "account_sid": SUBACCOUNT,
            "from": "+15005550006", "to": "+15005550009", "error_code": null,
            "api_version": "2010-04-01"
        })
    };
    Mock::given(method("POST"))
        .and(path(create))
        .respond_with(ResponseTemplate::new(201).set_body_json(resource("queued")))
        .expect(1)
        .mount(&twilio)
        .await;
    Mock::given(method("GET"))
        .and(path(fetch))
        .respond_with(ResponseTemplate::new(200).set_body_json(resource("delivered")))
        .mount(&twilio)
        .await;
    let app = spawn_app_with(Settings {
        env: vec![
            ("TWILIO_ACCOUNT_SID", ACCOUNT_SID.into()),
            ("TWILIO_API_BASE", twilio.uri()),
            ("STATUSHOOK_RECONCILE_AFTER", "200ms".into()),
            ("STATUSHOOK_RECONCILE_RATE", "50".into()),
        ],
        ..Settings::default()
    })
    .await;
    let bad = app
        .post_json(
            "/v1/messages",
            &json!({"to": "+15005550009", "from": "+15005550006", "body": "hi", "account_sid": "AC12"}),
        )
        .await;
    assert_eq!(bad.status(), 422);
    let body: Value = bad.json().await.expect("JSON");
    assert_eq!(body["parameter"], "AccountSid", "{body}");
    let sent = app
        .post_json(
            "/v1/messages",
            &json!({"to": "+15005550009", "from": "+15005550006", "body": "hi", "account_sid": SUBACCOUNT}),
        )
        .await;
    assert_eq!(sent.status(), 201);
    assert_eq!(app.message_json(&sid).await["account_sid"], SUBACCOUNT);
    // The callback that would say `delivered` is lost; the reconciler asks the subaccount.
    eventually("the reconciler to fetch through the subaccount", || async {
        app.message_json(&sid).await["status"] == "delivered"
    })
    .await;
}

#[tokio::test]
async fn a_retention_pass_in_many_batches_deletes_every_old_message_and_keeps_those_that_moved() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = store_in(dir.path()).await;
    // A listing in progress, so that moves keep their old positions as history.
    let listing = statushook::store::ListQuery {
        limit: 1,
        ..Default::default()
    };
    store.list(listing).await.expect("lists");
    // Four outcomes, interleaved in time, every message queued first (so every status
    // range and the positions index hold history too).
    let ends = ["sent", "delivered", "undelivered", "queued"];
    let sids: Vec<String> = (0..80).map(|_| new_sid()).collect();
    for (i, sid) in sids.iter().enumerate() {
        record(&store, sid, "queued").await;
        if ends[i % 4] != "queued" {
            record(&store, sid, ends[i % 4]).await;
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let before = statushook::domain::Timestamp::now();
    let (mut deleted, mut batches) = (0, 0);
    loop {
        // Between two batches of the pass an old message moves on: it is kept.
        if batches < 4 {
            record(&store, &sids[60 + batches], "read").await;
        }
        let batch = store.expire(before, 7).await.expect("deleted");
        batches += 1;
        if batch == 0 {
            break;
        }
        deleted += batch;
    }
    assert!(batches > 80 / 7, "the pass took many batches ({batches})");
    assert_eq!(deleted, 76, "every old message but the four that moved");
    for (i, sid) in sids.iter().enumerate() {
        let sid = MessageSid::parse(sid).expect("a sid");
        let kept = store.message(&sid).await.expect("read").is_some();
        assert_eq!(kept, (60..64).contains(&i), "message {i}");
    }
    store.check().await.expect("consistent");
    store.close().await.expect("closes");
}
