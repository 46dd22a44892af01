//! `/healthz` (the process answers), `/readyz` (the store takes a durable write) and
//! `/metrics` (Prometheus text).

use std::fmt::Write;

use actix_web::http::header;
use actix_web::{web, HttpResponse};

use crate::routes;
use crate::startup::AppState;
use crate::telemetry::Repeats;

/// Plain text, as `openapi.json` says, so that a client is never left to guess.
const TEXT: &str = "text/plain; charset=utf-8";

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type(TEXT).body("ok")
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.store.probe().await {
        Ok(()) => HttpResponse::Ok().content_type(TEXT).body("ready"),
        Err(error) => {
            if Repeats::global().first("readiness probe failed") {
                tracing::error!(%error, "readiness probe failed");
            }
            // An error like every other: JSON.
            HttpResponse::ServiceUnavailable()
                .insert_header((header::RETRY_AFTER, "1"))
                .json(serde_json::json!({ "error": "the store is not writable" }))
        }
    }
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let counts = state.store.stats(None, None).await.ok();
    let bytes = state.store.size_on_disk().await.ok();
    let mut text = state.metrics.render(counts, bytes);
    // The probe of /readyz, so that an alert on readiness needs nothing but the scrape.
    let ready = state.store.probe().await.is_ok();
    let _ = writeln!(
        text,
        "# HELP statushook_ready Whether the store took a durable write at this scrape, as GET /readyz checks (1) or not (0).\n\
         # TYPE statushook_ready gauge\nstatushook_ready {}",
        u8::from(ready)
    );
    let waiting = routes::MAX_LONG_POLLS - state.long_polls.available_permits();
    let _ = writeln!(
        text,
        "# HELP statushook_long_polls Change-feed long polls waiting now (at most {}).\n\
         # TYPE statushook_long_polls gauge\nstatushook_long_polls {waiting}",
        routes::MAX_LONG_POLLS
    );
    if let Some(forwarding) = &state.forwarding {
        forwarding.render_metrics(&mut text);
    }
    state.alert_metrics.render(&mut text);
    state.connections.render_metrics(&mut text);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(text)
}
