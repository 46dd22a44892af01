//! The stores of the tests: whether they store in PostgreSQL, a database of its own for
//! each test (created on the server that `scripts/pg` starts), and a store opened in this
//! process.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use statushook::config::DatabaseUrl;
use statushook::store::Store;

/// Whether the API tests run against PostgreSQL (`STATUSHOOK_TEST_STORE=postgres`, set by
/// `scripts/test` for its second run) instead of sled.
pub fn testing_postgres() -> bool {
    std::env::var("STATUSHOOK_TEST_STORE").is_ok_and(|store| store == "postgres")
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
pub async fn database_for(data_dir: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    data_dir.hash(&mut hasher);
    create_database(&format!("statushook_dir_{:016x}", hasher.finish())).await
}

/// A store opened in this process: PostgreSQL at `database`, else sled in `sled_path`.
pub async fn open_store(sled_path: &Path, database: Option<&str>) -> Store {
    match database {
        Some(url) => open_postgres(url).await,
        None => Store::open_sled(sled_path, Box::new(|_| {})).expect("store opens"),
    }
}

/// The PostgreSQL store at `database`, opened in this process.
pub async fn open_postgres(database: &str) -> Store {
    let url = DatabaseUrl::parse(database).expect("a database URL");
    Store::open_postgres(&url, Box::new(|_| {}))
        .await
        .expect("store opens")
}

/// The server of `scripts/pg`, which every PostgreSQL test needs.
fn test_server() -> String {
    std::env::var("STATUSHOOK_TEST_DATABASE_URL").expect(
        "STATUSHOOK_TEST_DATABASE_URL is not set: run the tests with scripts/test, or under \
         scripts/pg run cargo test",
    )
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

/// Connects to the database at `url` over the TLS its parameters ask for, as statushook
/// does (tokio-postgres alone refuses libpq's `sslrootcert`).
pub async fn connect_sql(
    url: &str,
) -> Result<(tokio_postgres::Client, statushook::store::Connection), tokio_postgres::Error> {
    DatabaseUrl::parse(url)
        .expect("a database URL")
        .connect()
        .await
}
