//! `GET /openapi.json`: the OpenAPI 3.1 description of every route, kept by hand in
//! `openapi.json` beside this file and compiled into the binary.
//!
//! The description is the contract the API is tested against (`scripts/schemathesis` runs
//! schemathesis against the live service from it), so it lives next to the handlers and
//! changes with them. The test below reads the routes table of `startup.rs` and fails
//! when a route is served but not described, or described but not served.

use std::sync::OnceLock;

use actix_web::http::header::ContentType;
use actix_web::HttpResponse;

/// The document, as served.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

const METHODS: [&str; 7] = ["get", "post", "put", "patch", "delete", "head", "options"];

pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(OPENAPI_JSON)
}

/// The methods served at `path` (upper case, in the document's order), or `None` when no
/// route has this path. A `{name}` template segment matches any non-empty segment, as
/// actix's does. Read from the document, which the test below keeps equal to the routes
/// table, so that a `405` can say in `Allow` what the path takes.
pub fn methods_at(path: &str) -> Option<Vec<&'static str>> {
    static PATHS: OnceLock<Vec<(&'static str, Vec<&'static str>)>> = OnceLock::new();
    let paths = PATHS.get_or_init(|| {
        let document: serde_json::Value = serde_json::from_str(OPENAPI_JSON).unwrap_or_default();
        let Some(items) = document["paths"].as_object() else {
            return Vec::new();
        };
        items
            .iter()
            .map(|(template, item)| {
                let methods = METHODS
                    .iter()
                    .filter(|method| item.get(**method).is_some())
                    .map(|method| &*method.to_uppercase().leak())
                    .collect();
                (&*template.clone().leak(), methods)
            })
            .collect()
    });
    paths
        .iter()
        .find(|(template, _)| matches_template(template, path))
        .map(|(_, methods)| methods.clone())
}

fn matches_template(template: &str, path: &str) -> bool {
    let (mut wanted, mut given) = (template.split('/'), path.split('/'));
    loop {
        match (wanted.next(), given.next()) {
            (None, None) => return true,
            (Some(w), Some(g)) if w.starts_with('{') && w.ends_with('}') && !g.is_empty() => {}
            (Some(w), Some(g)) if w == g => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use serde_json::Value;

    use super::{methods_at, METHODS, OPENAPI_JSON};

    #[test]
    fn the_methods_at_a_path_come_from_the_document() {
        assert_eq!(
            methods_at("/v1/messages"),
            Some(vec!["GET", "POST", "DELETE"])
        );
        assert_eq!(
            methods_at("/v1/messages/SM0123456789abcdef0123456789abcdef"),
            Some(vec!["GET", "DELETE"])
        );
        assert_eq!(methods_at("/v1/messages/"), None);
        assert_eq!(methods_at("/v1/messages/a/b"), None);
        assert_eq!(methods_at("/twilio/status"), Some(vec!["POST"]));
        assert_eq!(methods_at("/nowhere"), None);
    }

    /// Every (method, path) the routes table of `startup.rs` serves, with actix's `{name}`
    /// and `{name:regex}` segments written as OpenAPI's `{name}`.
    ///
    /// It walks the text of `routes_table` rather than the running app, since actix cannot
    /// list its routes: `.configure(f)` is replaced by the body of `fn f` (found in `src/`);
    /// `web::scope("…")` and `web::resource("…")` set a prefix until the parenthesis around
    /// them closes; `.route("…", web::get()…)` and `.route(web::get()…)` add a route. Every
    /// string literal that starts with `/` must be one of these, so a route written in some
    /// other shape fails the test instead of going unnoticed.
    fn served_routes() -> BTreeSet<(String, String)> {
        let sources = rust_sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
        let mut text = function_body(&sources, "routes_table");
        while let Some(at) = text.find(".configure(") {
            let argument = &text[at + ".configure(".len()..];
            let end = argument.find(')').expect("a closed .configure(");
            let name = argument[..end].rsplit("::").next().unwrap_or_default();
            let body = function_body(&sources, name);
            text = format!("{}.inlined({body}{}", &text[..at], &argument[end..]);
        }
        let mut routes = BTreeSet::new();
        // (prefix, the parenthesis depth of the call that holds it, e.g. `.service(`)
        let mut prefixes: Vec<(String, usize)> = Vec::new();
        let mut depth = 0usize;
        let mut literals_used = 0usize;
        let mut i = 0;
        let prefix = |prefixes: &Vec<(String, usize)>| -> String {
            prefixes.iter().map(|(p, _)| p.as_str()).collect()
        };
        while i < text.len() {
            let rest = &text[i..];
            let literal_after = |opening: &str| -> Option<String> {
                let quoted = rest.strip_prefix(opening)?.strip_prefix('"')?;
                Some(quoted[..quoted.find('"')?].to_owned())
            };
            if let Some(path) =
                literal_after("web::scope(").or_else(|| literal_after("web::resource("))
            {
                literals_used += usize::from(path.starts_with('/'));
                prefixes.push((path, depth));
            } else if let Some(route) = rest.strip_prefix(".route(") {
                let (path, after) = match route.strip_prefix('"') {
                    Some(quoted) => {
                        let close = quoted.find('"').expect("a closed string literal");
                        (quoted[..close].to_owned(), &quoted[close + 2..])
                    }
                    None => (String::new(), route),
                };
                literals_used += usize::from(path.starts_with('/'));
                let method = METHODS
                    .iter()
                    .find(|method| after.starts_with(&format!("web::{method}()")))
                    .unwrap_or_else(|| panic!("no method in the route at {rest:.60}"));
                let full = format!("{}{path}", prefix(&prefixes));
                routes.insert((method.to_string(), openapi_path(&full)));
            }
            match text.as_bytes()[i] {
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    while prefixes.last().is_some_and(|(_, open)| depth < *open) {
                        prefixes.pop();
                    }
                }
                _ => {}
            }
            i += rest.chars().next().map_or(1, char::len_utf8);
        }
        let literals = text.matches("(\"/").count();
        assert_eq!(
            literals, literals_used,
            "the routes table has a path this test cannot place; teach served_routes its shape"
        );
        routes
    }

    /// Every `.rs` file under `dir`.
    fn rust_sources(dir: &Path) -> Vec<String> {
        let mut sources = Vec::new();
        for entry in std::fs::read_dir(dir).expect("a readable src/").flatten() {
            let path = entry.path();
            if path.is_dir() {
                sources.extend(rust_sources(&path));
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                sources.push(std::fs::read_to_string(&path).expect("a readable source"));
            }
        }
        sources
    }

    /// The body of `fn name(…)` in one of the sources, without comments and whitespace.
    fn function_body(sources: &[String], name: &str) -> String {
        let signature = format!("fn {name}(");
        let source = sources
            .iter()
            .find(|source| source.contains(&signature))
            .unwrap_or_else(|| panic!("no fn {name} in src/"));
        let start = source.find(&signature).unwrap_or_default();
        let body = &source[start..];
        let end = body.find("\n}").expect("the function ends");
        body[..end]
            .lines()
            .map(|line| line.split("//").next().unwrap_or(""))
            .collect::<String>()
            .split_whitespace()
            .collect()
    }

    fn openapi_path(actix: &str) -> String {
        let mut out = String::new();
        let mut rest = actix;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let close = rest[open..].find('}').expect("a closed segment") + open;
            let name = rest[open + 1..close].split(':').next().unwrap_or("");
            out.push_str(&format!("{{{name}}}"));
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        out
    }

    fn described_routes(document: &Value) -> BTreeSet<(String, String)> {
        let paths = document["paths"].as_object().expect("paths is an object");
        paths
            .iter()
            .flat_map(|(path, item)| {
                let item = item.as_object().expect("a path item is an object");
                METHODS
                    .iter()
                    .filter(|method| item.contains_key(**method))
                    .map(move |method| (method.to_string(), path.clone()))
            })
            .collect()
    }

    #[test]
    fn the_document_is_json_and_openapi_3_1() {
        let document: Value = serde_json::from_str(OPENAPI_JSON).expect("openapi.json is JSON");
        let version = document["openapi"].as_str().expect("an openapi version");
        assert!(version.starts_with("3.1."), "{version}");
        assert!(document["info"]["title"].is_string());
    }

    #[test]
    fn every_route_of_the_routes_table_is_described_and_nothing_else() {
        let document: Value = serde_json::from_str(OPENAPI_JSON).expect("openapi.json is JSON");
        let served = served_routes();
        assert!(
            served.contains(&("get".into(), "/v1/messages/{sid}".into())),
            "the routes table was not read: {served:?}"
        );
        let described = described_routes(&document);
        let undescribed: Vec<_> = served.difference(&described).collect();
        let unserved: Vec<_> = described.difference(&served).collect();
        assert!(
            undescribed.is_empty(),
            "served but missing from src/routes/openapi.json: {undescribed:?}"
        );
        assert!(
            unserved.is_empty(),
            "described in src/routes/openapi.json but not served: {unserved:?}"
        );
    }

    #[test]
    fn every_operation_has_an_id_and_answers_with_a_described_status() {
        let document: Value = serde_json::from_str(OPENAPI_JSON).expect("openapi.json is JSON");
        let mut ids = BTreeSet::new();
        for (method, path) in described_routes(&document) {
            let operation = &document["paths"][&path][&method];
            let id = operation["operationId"].as_str();
            assert!(
                id.is_some_and(|id| ids.insert(id.to_owned())),
                "{method} {path}: a unique operationId"
            );
            let responses = operation["responses"].as_object();
            assert!(
                responses.is_some_and(|r| !r.is_empty()),
                "{method} {path}: responses"
            );
            let secured = operation.get("security").is_some();
            assert_eq!(
                secured,
                path.starts_with("/v1/"),
                "{method} {path}: bearer security on /v1 only"
            );
        }
    }
}
