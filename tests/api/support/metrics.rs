//! Reading `/metrics`, the Prometheus text a service exposes, the same way for an app in
//! this process and for a binary.

/// The `/metrics` text of the service at `address` (`http://127.0.0.1:PORT`).
pub async fn scrape(client: &reqwest::Client, address: &str) -> String {
    let response = client
        .get(format!("{address}/metrics"))
        .send()
        .await
        .expect("the request is answered");
    assert_eq!(response.status(), 200, "GET /metrics");
    response.text().await.expect("the metrics text")
}

/// The value of the sample `name` (with its labels, exactly as exposed:
/// `statushook_callbacks_total{outcome="stored"}`) in the `/metrics` text `text`; fails the
/// test when there is none. Only a whole name matches: `statushook_messages` is not
/// `statushook_messages_total`.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            let value = line.strip_prefix(name)?.strip_prefix(' ')?;
            value.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no metric {name} in /metrics:\n{text}"))
}
