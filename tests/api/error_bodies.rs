//! Every error answer is the documented `{"error": …}` JSON, whichever layer produced it:
//! a property over every method and path of the OpenAPI document, with malformed query
//! strings, repeated and 5,000-fold parameters, oversized heads, bad JSON, wrong content
//! types, compressed and oversized bodies.
//!
//! One layer cannot be reached: actix-http's request parser answers some heads itself,
//! before any service runs, with an empty body — a request target over 65,534 bytes (the
//! most the `http` crate's `Uri` holds) or a malformed request line or header (`400`),
//! more than 96 headers or a head over 128 KiB (`431`), and a first head that has not
//! arrived after 5 s (`408`). The property allows exactly those cases that test shows
//! to be past the parser's limits, and the last test pins the limits themselves.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;

use crate::raw_http::{exchange, exchange_from, RawResponse};
use crate::support::fixtures::API_TOKEN;
use crate::support::spawn::spawn_app;

/// Where requests without the right token come from, so that their refusals spend another
/// address's budget and the authorized requests keep reaching the handlers.
const OTHER_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// The most bytes of request target the parser takes (`http::Uri`'s limit).
const PARSER_TARGET: usize = 65_534;
/// The most headers the parser takes.
const PARSER_HEADERS: usize = 96;
/// The head size past which the parser refuses.
const PARSER_HEAD: usize = 128 * 1024;

#[derive(Debug, Clone, Copy)]
enum Auth {
    Right,
    Wrong,
    Missing,
}

/// One request, as built by the strategies.
#[derive(Debug, Clone)]
struct Case {
    method: &'static str,
    target: String,
    auth: Auth,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Case {
    fn bytes(&self) -> Vec<u8> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: hooks.example.com\r\n",
            self.method, self.target
        );
        match self.auth {
            Auth::Right => head.push_str(&format!("Authorization: Bearer {API_TOKEN}\r\n")),
            Auth::Wrong => {
                head.push_str("Authorization: Bearer not-the-token-0123456789abcdef0123\r\n")
            }
            Auth::Missing => {}
        }
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.body.len()
        ));
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }

    fn header_count(&self) -> usize {
        // Host, Content-Length, Connection, and Authorization when sent.
        3 + usize::from(!matches!(self.auth, Auth::Missing)) + self.headers.len()
    }

    /// Whether actix's parser refuses this request before any service sees it.
    fn past_the_parser(&self) -> bool {
        let head = self.bytes().len() - self.body.len();
        self.target.len() > PARSER_TARGET
            || self.header_count() > PARSER_HEADERS
            || head >= PARSER_HEAD
    }
}

const METHODS: [&str; 6] = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// A method and a path template: mostly an operation of the document, so that each
/// route's own refusals are reached; else any method on any path, or on none.
fn route(operations: Vec<(&'static str, String)>) -> impl Strategy<Value = (&'static str, String)> {
    let mut templates: Vec<String> = operations.iter().map(|(_, path)| path.clone()).collect();
    templates.extend(["/", "/nowhere", "/v1", "/v1/messages/a/b", "/twilio"].map(str::to_owned));
    prop_oneof![
        7 => prop::sample::select(operations),
        3 => (prop::sample::select(METHODS.to_vec()), prop::sample::select(templates)),
    ]
}

/// Values for `{name}` segments, valid and not.
fn segment() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "SM0123456789abcdef0123456789abcdef".to_owned(),
        "SMzz".to_owned(),
        "%ZZ".to_owned(),
        "%00".to_owned(),
        "app.js".to_owned(),
        "..%2F..%2Fetc".to_owned(),
        "x".repeat(300),
    ])
}

/// `template` with each `{name}` segment replaced by `segment`.
fn fill(template: &str, segment: &str) -> String {
    let path: String = template
        .split('/')
        .skip(1)
        .map(|part| {
            if part.starts_with('{') {
                format!("/{segment}")
            } else {
                format!("/{part}")
            }
        })
        .collect();
    if path.is_empty() {
        "/".to_owned()
    } else {
        path
    }
}

/// Query strings: none, documented names with odd values (some given twice), thousands of
/// `status=`, broken percent-encoding, noise, and targets too long for the service or for
/// the parser.
fn query(names: Vec<String>) -> impl Strategy<Value = String> {
    let value = prop::sample::select(vec![
        "",
        "1",
        "-1",
        "0",
        "99999999999",
        "abc",
        "%2B15550009",
        "+1555",
        "%201",
        "2026-13-01T00:00:00Z",
        "2026-01-01T00%3A00%3A00Z",
        "sent",
        "%ZZ",
        "%",
        "jsonl",
    ]);
    let pair =
        (prop::sample::select(names), value).prop_map(|(name, value)| format!("{name}={value}"));
    prop_oneof![
        Just(String::new()),
        prop::collection::vec(pair.clone(), 1..4).prop_map(|pairs| pairs.join("&")),
        pair.prop_map(|pair| format!("{pair}&{pair}")),
        Just("status=sent&".repeat(5_000)),
        Just("status=delivered&".repeat(5_000)),
        Just("a=%ZZ&b=%&=&&c".to_owned()),
        "[a-z0-9=&%+;~.]{0,60}",
        Just(format!("x={}", "y".repeat(10_000))),
    ]
}

/// Extra headers: content types, encodings, and heads over the service's limit or the
/// parser's.
fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    let one = |name: &str, value: &str| vec![(name.to_owned(), value.to_owned())];
    prop_oneof![
        Just(Vec::new()),
        Just(one("Content-Type", "application/json")),
        Just(one("Content-Type", "application/x-www-form-urlencoded")),
        Just(one("Content-Type", "text/plain; charset=utf-8")),
        Just(one("Content-Type", "multipart/form-data; boundary=x")),
        Just(one("Content-Type", "application/json; charset=latin1")),
        Just(one("Content-Encoding", "gzip")),
        Just(one("X-Twilio-Signature", "garbage")),
        Just(one("Idempotency-Key", &"k".repeat(400))),
        Just(one("X-Padding", &"p".repeat(40 * 1024))),
        Just(one("X-Padding", &"p".repeat(140 * 1024))),
        Just(
            (0..100)
                .map(|n| (format!("X-Extra-{n}"), "1".to_owned()))
                .collect()
        ),
    ]
}

/// Bodies: none, broken and wrong JSON, noise, a form, and one over every route's limit.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => Just(Vec::new()),
        1 => Just(b"{".to_vec()),
        1 => Just(b"null".to_vec()),
        1 => Just(b"[]".to_vec()),
        1 => Just(b"{\"to\": 1, \"validity_period\": \"soon\"}".to_vec()),
        1 => Just(b"MessageSid=SM0123456789abcdef0123456789abcdef&MessageStatus=sent".to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..200),
        3 => Just(vec![b'a'; 300 * 1024]),
    ]
}

fn case(
    operations: Vec<(&'static str, String)>,
    names: Vec<String>,
) -> impl Strategy<Value = Case> {
    (
        route(operations),
        segment(),
        query(names),
        prop::sample::select(vec![
            Auth::Right,
            Auth::Right,
            Auth::Right,
            Auth::Right,
            Auth::Wrong,
            Auth::Missing,
        ]),
        headers(),
        body(),
    )
        .prop_map(
            |((method, template), segment, query, auth, headers, body)| {
                let path = fill(&template, &segment);
                Case {
                    method,
                    target: if query.is_empty() {
                        path
                    } else {
                        format!("{path}?{query}")
                    },
                    auth,
                    headers,
                    body,
                }
            },
        )
}

/// Whether an answer is one the parser wrote: no body, no content type, connection closed.
fn written_by_the_parser(answer: &RawResponse) -> bool {
    matches!(answer.status, 400 | 431)
        && answer.header("content-length") == Some("0")
        && answer.header("content-type").is_none()
}

fn check(case: &Case, answer: Option<RawResponse>) -> Result<(), TestCaseError> {
    let answer = answer.ok_or_else(|| TestCaseError::fail("no answer"))?;
    if answer.status < 400 {
        return Ok(());
    }
    if case.past_the_parser() && written_by_the_parser(&answer) {
        return Ok(());
    }
    let content_type = answer.header("content-type").unwrap_or_default();
    prop_assert!(
        content_type
            .split(';')
            .next()
            .is_some_and(|essence| essence.trim() == "application/json"),
        "{} answered with content type {content_type:?}: {answer:?}",
        answer.status
    );
    let body: Value = answer
        .json()
        .ok_or_else(|| TestCaseError::fail(format!("not JSON: {answer:?}")))?;
    prop_assert!(
        body["error"]
            .as_str()
            .is_some_and(|error| !error.is_empty()),
        "{} without an error string: {body}",
        answer.status
    );
    Ok(())
}

fn runner_cases() -> u32 {
    600
}

#[test]
fn every_error_answer_of_every_route_is_json_with_an_error_string() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let (app, document) = runtime.block_on(async {
        let app = spawn_app().await;
        let document: Value = app
            .get("/openapi.json")
            .await
            .json()
            .await
            .expect("the document");
        (app, document)
    });
    let paths = document["paths"].as_object().expect("paths");
    let operations: Vec<(&'static str, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|method| item.get(method.to_lowercase()).is_some())
                .map(move |method| (*method, path.clone()))
        })
        .collect();
    let mut names: Vec<String> = paths
        .values()
        .flat_map(|item| item.as_object().into_iter().flat_map(|item| item.values()))
        .flat_map(|operation| {
            operation["parameters"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|parameter| {
            let parameter = match parameter["$ref"].as_str() {
                Some(reference) => {
                    let name = reference.rsplit('/').next().unwrap_or_default();
                    document["components"]["parameters"][name].clone()
                }
                None => parameter,
            };
            (parameter["in"] == "query").then(|| parameter["name"].as_str().map(str::to_owned))?
        })
        .collect();
    names.sort();
    names.dedup();
    assert!(
        names.len() > 10,
        "the document's query parameters: {names:?}"
    );

    let mut runner = TestRunner::new(Config {
        cases: runner_cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let past_the_parser = std::cell::Cell::new(0usize);
    let result = runner.run(&case(operations, names), |case| {
        let source = match case.auth {
            Auth::Right => None,
            Auth::Wrong | Auth::Missing => Some(OTHER_CLIENT),
        };
        let answer = runtime.block_on(exchange_from(
            source,
            &app.address,
            &case.bytes(),
            Duration::from_secs(20),
        ));
        if case.past_the_parser() {
            past_the_parser.set(past_the_parser.get() + 1);
        }
        check(&case, answer)
    });
    eprintln!(
        "error bodies: {} requests, {} of them past the parser's limits",
        runner_cases(),
        past_the_parser.get()
    );
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

#[tokio::test]
async fn the_parser_answers_only_past_its_limits_and_the_service_answers_json_up_to_them() {
    let app = spawn_app().await;
    let get = |target: String, extra: String| {
        format!("GET {target} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n").into_bytes()
    };
    let ask = |request: Vec<u8>| {
        let address = app.address.clone();
        async move {
            exchange(&address, &request, Duration::from_secs(10))
                .await
                .expect("an answer")
        }
    };
    let target = |length: usize| {
        let path = "/v1/messages?x=";
        format!("{path}{}", "a".repeat(length - path.len()))
    };

    // Up to the parser's limits, the service answers, in JSON.
    let longest = ask(get(target(PARSER_TARGET), String::new())).await;
    assert_eq!(longest.status, 414, "{longest:?}");
    assert!(longest.json().is_some_and(|body| body["error"].is_string()));
    let many = (0..PARSER_HEADERS - 2)
        .map(|n| format!("X-Extra-{n}: 1\r\n"))
        .collect::<String>();
    assert_eq!(ask(get("/healthz".into(), many)).await.status, 200);
    let large = ask(get(
        "/healthz".into(),
        format!("X-Padding: {}\r\n", "p".repeat(100 * 1024)),
    ))
    .await;
    assert_eq!(large.status, 431, "{large:?}");
    assert!(large.json().is_some_and(|body| body["error"].is_string()));

    // Past them, the parser answers alone, with no body: nothing of the service runs.
    let beyond = [
        (
            "a target of 65,535 bytes",
            get(target(PARSER_TARGET + 1), String::new()),
            400,
        ),
        (
            "97 headers",
            get(
                "/healthz".into(),
                (0..PARSER_HEADERS - 1)
                    .map(|n| format!("X-Extra-{n}: 1\r\n"))
                    .collect(),
            ),
            431,
        ),
        (
            "a head of 140 KiB",
            get(
                "/healthz".into(),
                format!("X-Padding: {}\r\n", "p".repeat(140 * 1024)),
            ),
            431,
        ),
        (
            "a space in the target",
            b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            400,
        ),
        (
            "a Content-Length that is not a number",
            b"POST /twilio/status HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n".to_vec(),
            400,
        ),
    ];
    for (what, request, status) in beyond {
        let answer = ask(request).await;
        assert_eq!(answer.status, status, "{what}: {answer:?}");
        assert!(written_by_the_parser(&answer), "{what}: {answer:?}");
    }
}

#[tokio::test]
async fn the_refusals_actix_makes_by_itself_are_json_too() {
    use tokio::io::AsyncWriteExt;

    let app = spawn_app().await;
    // Over the body limit of POST /v1/messages: refused by actix's extractor.
    let mut large = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        300 * 1024
    )
    .into_bytes();
    large.extend(vec![b'a'; 300 * 1024]);
    // A body that ends before its Content-Length: the client closes its side.
    let short = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"to\""
    );
    let answers = [
        (
            "a body over the route's limit",
            exchange(&app.address, &large, Duration::from_secs(10)).await,
            413,
        ),
        (
            "a body that ends early",
            {
                let mut stream =
                    tokio::net::TcpStream::connect(crate::raw_http::host_port(&app.address))
                        .await
                        .expect("a connection");
                stream.write_all(short.as_bytes()).await.expect("sent");
                stream.shutdown().await.expect("half-closed");
                crate::raw_http::read_response(&mut stream).await
            },
            400,
        ),
    ];
    for (what, answer, status) in answers {
        let answer = answer.unwrap_or_else(|| panic!("{what}: no answer"));
        assert_eq!(answer.status, status, "{what}: {answer:?}");
        assert_eq!(
            answer.header("content-type"),
            Some("application/json"),
            "{what}"
        );
        assert!(
            answer.json().is_some_and(|body| body["error"].is_string()),
            "{what}: {answer:?}"
        );
    }
}
