//! `GET /ui/`: the dashboard, served from the binary itself. Its files (`ui/` in the
//! repository: plain HTML, CSS and JavaScript modules, no build step and no dependency) are
//! embedded at compile time, so the dashboard needs no second server, no CDN and no network
//! beyond this service. The static files need no token: everything they show comes from
//! the `/v1` API, called with the token the user signs in with.
//!
//! Every answer carries a Content-Security-Policy that allows scripts, styles and requests
//! from this origin only (no inline script or style, no framing), and an ETag, so that a
//! browser revalidates (`no-cache`) and gets `304 Not Modified` until the binary changes.

use actix_web::http::header;
use actix_web::middleware::Compress;
use actix_web::{web, HttpRequest, HttpResponse};

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    /// A hash of `body`, computed at compile time: the ETag changes with the content.
    hash: u64,
}

macro_rules! asset {
    ($name:literal, $content_type:literal) => {{
        const BODY: &[u8] = include_bytes!(concat!("../../ui/", $name));
        Asset {
            name: $name,
            content_type: $content_type,
            body: BODY,
            hash: fnv1a(BODY),
        }
    }};
}

/// FNV-1a, 64 bits: enough to tell versions of a file apart, and computable in a `const`.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut index = 0;
    while index < bytes.len() {
        hash ^= bytes[index] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        index += 1;
    }
    hash
}

/// Every file of the dashboard.
static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("lib.js", "text/javascript; charset=utf-8"),
    asset!("chart.js", "text/javascript; charset=utf-8"),
    asset!("overview.js", "text/javascript; charset=utf-8"),
    asset!("messages.js", "text/javascript; charset=utf-8"),
];

/// Only this origin's scripts, styles and API; images only as data URLs (the empty icon).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// The dashboard's routes: `/ui` redirects to `/ui/`, which serves `index.html`.
pub fn ui_routes(config: &mut web::ServiceConfig) {
    config.service(
        web::scope("/ui")
            .wrap(Compress::default())
            .route("", web::get().to(redirect))
            .route("/", web::get().to(index))
            .route("/{file}", web::get().to(file)),
    );
}

async fn redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/ui/"))
        .finish()
}

async fn index(request: HttpRequest) -> HttpResponse {
    serve(&request, "index.html")
}

async fn file(request: HttpRequest, name: web::Path<String>) -> HttpResponse {
    serve(&request, &name)
}

fn serve(request: &HttpRequest, name: &str) -> HttpResponse {
    let Some(asset) = ASSETS.iter().find(|asset| asset.name == name) else {
        return HttpResponse::NotFound().json(serde_json::json!({
            "error": format!("no such file of the dashboard: {name}")
        }));
    };
    let etag = format!("\"{:016x}\"", asset.hash);
    let fresh = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .is_some_and(|tags| tags.as_bytes() == etag.as_bytes());
    let mut response = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"));
    if fresh {
        return response.finish();
    }
    response.content_type(asset.content_type).body(asset.body)
}
