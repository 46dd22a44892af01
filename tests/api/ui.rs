//! `/ui/`: the dashboard's files, served from the binary without a token, with a strict
//! Content-Security-Policy and revalidation by ETag.

use crate::support::spawn::spawn_app;

#[tokio::test]
async fn the_dashboard_is_served_without_a_token_with_a_strict_policy() {
    let app = spawn_app().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client");
    let redirect = client
        .get(format!("{}/ui", app.address))
        .send()
        .await
        .expect("answered");
    assert_eq!(redirect.status(), 308);
    assert_eq!(redirect.headers()["location"], "/ui/");

    let cases = [
        ("/ui/", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/app.css", "text/css; charset=utf-8"),
    ];
    for (path, content_type) in cases {
        let response = app.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], content_type, "{path}");
        assert_eq!(headers["cache-control"], "no-cache", "{path}");
        let policy = headers["content-security-policy"].to_str().expect("ascii");
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(policy.contains(directive), "{path}: {policy}");
        }
        assert!(!policy.contains("unsafe-inline"), "{path}: {policy}");
        let etag = headers["etag"].clone();
        let again = client
            .get(format!("{}{path}", app.address))
            .header("If-None-Match", etag)
            .send()
            .await
            .expect("answered");
        assert_eq!(again.status(), 304, "{path}");
    }
    let page = app.get("/ui/").await.text().await.expect("text");
    assert!(page.contains(r#"<script type="module" src="app.js"></script>"#));
    assert!(!page.contains("<script>"), "no inline script");

    let missing = app.get("/ui/secrets.txt").await;
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.expect("a JSON error");
    assert!(body["error"]
        .as_str()
        .is_some_and(|e| e.contains("secrets.txt")));
}
