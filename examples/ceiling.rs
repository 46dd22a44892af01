//! The ceiling of the HTTP stack: the smallest actix-web server that answers the callback
//! route with 200, so the benchmark can show what statushook costs on top of it.
//!
//! `cargo run --release --example ceiling -- 127.0.0.1:9090`

use actix_web::{web, App, HttpResponse, HttpServer};

fn main() -> std::io::Result<()> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9090".into());
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(|| {
            App::new().route(
                "/twilio/status",
                web::post().to(|_body: web::Bytes| async { HttpResponse::Ok().finish() }),
            )
        })
        .bind(listen)?
        .run()
        .await
    })
}
