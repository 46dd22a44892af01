//! The answer to a request that no route takes: `405` with `Allow` when the path is served
//! with other methods, else `404`; a JSON error like every other answer of the API.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use serde_json::json;

use super::openapi::methods_at;

pub async fn no_route(request: HttpRequest) -> HttpResponse {
    let path = request.path();
    match methods_at(path) {
        Some(methods) => {
            let allowed = methods.join(", ");
            HttpResponse::MethodNotAllowed()
                .insert_header((header::ALLOW, allowed.as_str()))
                .json(json!({
                    "error": format!("{} is not allowed on {path}; it takes {allowed}", request.method()),
                }))
        }
        None => HttpResponse::NotFound().json(json!({ "error": format!("no such route: {path}") })),
    }
}
