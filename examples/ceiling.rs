//! The ceiling of the HTTP stack: the smallest actix-web server that answers the callback
//! routes (`/twilio/status`, `/twilio/events`) with 200, so the benchmarks can show what
//! statushook costs on top of it.
//!
//! `cargo run --release --example ceiling -- 127.0.0.1:9090`

use actix_web::{web, App, HttpResponse, HttpServer};

fn main() -> std::io::Result<()> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9090".into());
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(|| {
            App::new()
                .route(
                    "/twilio/status",
                    web::post().to(|_body: web::Bytes| async { HttpResponse::Ok().finish() }),
                )
                // The Event Streams route, with a body limit as large as statushook's.
                .service(
                    web::resource("/twilio/events")
                        .app_data(web::PayloadConfig::new(1024 * 1024))
                        .route(
                            web::post()
                                .to(|_body: web::Bytes| async { HttpResponse::Ok().finish() }),
                        ),
                )
        })
        .bind(listen)?
        .run()
        .await
    })
}
