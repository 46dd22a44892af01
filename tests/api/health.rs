//! `/healthz`, `/readyz` and `/metrics`.

use crate::helpers::spawn_app;

#[tokio::test]
async fn health_and_readiness_answer_200_without_a_token() {
    let app = spawn_app().await;
    for path in ["/healthz", "/readyz"] {
        let response = app
            .client
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), 200, "{path}");
    }
}
