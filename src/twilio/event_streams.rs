//! Twilio's Event Streams API (`https://events.twilio.com/v1`): the webhook *sink* that
//! delivers to `{PUBLIC_URL}/twilio/events`, and the *subscription* of that sink to the
//! message status event types. `statushook streams setup` makes sure both exist
//! ([`set_up`]), `streams status` shows them ([`status`]).
//!
//! Setting up is idempotent: the sink is found by its destination before one is created,
//! the subscriptions of the sink are read before one is created, and a subscription that
//! lacks some of the types gets only those added. A second run changes nothing.
//!
//! Requests are form-encoded with Basic auth, like the rest of Twilio's REST API; lists are
//! read page by page (`meta.next_page_url`, whose path and query are followed at the
//! configured base URL, so that a mock of the API serves the next pages too). Nothing here
//! is retried: a failed step stops the command, which can simply be run again.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::TwilioCredentials;
use crate::twilio::client::TwilioError;

/// The event types statushook stores: every status of `Messaging.MessageStatus`.
pub const MESSAGE_STATUS_TYPES: [&str; 6] = [
    "com.twilio.messaging.message.queued",
    "com.twilio.messaging.message.sent",
    "com.twilio.messaging.message.delivered",
    "com.twilio.messaging.message.undelivered",
    "com.twilio.messaging.message.failed",
    "com.twilio.messaging.message.read",
];

/// The schema of the message status event types.
pub const MESSAGE_STATUS_SCHEMA: &str = "Messaging.MessageStatus";

/// A sink as the API answers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sink {
    pub sid: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub sink_type: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub sink_configuration: serde_json::Value,
}

impl Sink {
    /// The URL a webhook sink delivers to.
    pub fn destination(&self) -> Option<&str> {
        self.sink_configuration["destination"].as_str()
    }
}

/// A subscription as the API answers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub sid: String,
    #[serde(default)]
    pub sink_sid: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// One event type of a subscription, at a schema version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscribedEvent {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub schema_version: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum StreamsApiError {
    #[error("twilio error {}: {}", .0.code.map_or_else(|| "-".to_owned(), |c| c.to_string()), .0.message)]
    Twilio(TwilioError),
    #[error("twilio did not answer in time")]
    Timeout,
    #[error("cannot reach twilio: {0}")]
    Transport(String),
    #[error("twilio's answer could not be read: {0}")]
    Unreadable(String),
}

/// A client of the Event Streams API for one account.
#[derive(Debug, Clone)]
pub struct EventStreamsClient {
    http: reqwest::Client,
    base: String,
    credentials: TwilioCredentials,
}

/// What [`set_up`] found and did.
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    pub sink: Sink,
    pub sink_created: bool,
    pub subscription: Subscription,
    pub subscription_created: bool,
    /// Types added to a subscription that lacked them.
    pub types_added: Vec<String>,
    /// The subscription's types afterwards.
    pub types: Vec<SubscribedEvent>,
}

/// What [`status`] found: the sink delivering to the destination, if any, its
/// subscriptions with their types, and the message status types none of them covers.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub destination: String,
    pub sink: Option<Sink>,
    pub subscriptions: Vec<SubscriptionStatus>,
    pub missing_types: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SubscriptionStatus {
    #[serde(flatten)]
    pub subscription: Subscription,
    pub types: Vec<SubscribedEvent>,
}

impl Status {
    /// A sink delivering to the destination, subscribed to every message status type.
    pub fn is_complete(&self) -> bool {
        self.sink.is_some() && self.missing_types.is_empty()
    }
}

impl EventStreamsClient {
    pub fn new(
        credentials: TwilioCredentials,
        base: &str,
        timeout: Duration,
    ) -> Result<Self, StreamsApiError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("statushook/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| StreamsApiError::Transport(error.to_string()))?;
        Ok(EventStreamsClient {
            http,
            base: base.trim_end_matches('/').to_owned(),
            credentials,
        })
    }

    /// Every sink of the account.
    pub async fn sinks(&self) -> Result<Vec<Sink>, StreamsApiError> {
        self.list("/v1/Sinks?PageSize=1000", "sinks").await
    }

    /// Creates a webhook sink POSTing to `destination`; `batch` asks Twilio to send events
    /// in arrays.
    pub async fn create_sink(
        &self,
        destination: &str,
        batch: bool,
    ) -> Result<Sink, StreamsApiError> {
        let configuration = serde_json::json!({
            "destination": destination,
            "method": "POST",
            "batch_events": batch,
        });
        let form = [
            (
                "Description",
                format!("statushook: {}", crate::config::loggable_url(destination)),
            ),
            ("SinkType", "webhook".to_owned()),
            ("SinkConfiguration", configuration.to_string()),
        ];
        self.post("/v1/Sinks", &form).await
    }

    /// The subscriptions delivering to `sink_sid`.
    pub async fn subscriptions(
        &self,
        sink_sid: &str,
    ) -> Result<Vec<Subscription>, StreamsApiError> {
        self.list(
            &format!("/v1/Subscriptions?SinkSid={sink_sid}&PageSize=1000"),
            "subscriptions",
        )
        .await
    }

    /// The event types of a subscription.
    pub async fn subscribed_events(
        &self,
        subscription_sid: &str,
    ) -> Result<Vec<SubscribedEvent>, StreamsApiError> {
        self.list(
            &format!("/v1/Subscriptions/{subscription_sid}/SubscribedEvents?PageSize=1000"),
            "types",
        )
        .await
    }

    /// Creates a subscription of `sink_sid` to `types`, each at `schema_version`.
    pub async fn create_subscription(
        &self,
        sink_sid: &str,
        types: &[&str],
        schema_version: u32,
    ) -> Result<Subscription, StreamsApiError> {
        let mut form = vec![
            (
                "Description",
                "statushook: message status events".to_owned(),
            ),
            ("SinkSid", sink_sid.to_owned()),
        ];
        for kind in types {
            let item = serde_json::json!({"type": kind, "schema_version": schema_version});
            form.push(("Types", item.to_string()));
        }
        self.post("/v1/Subscriptions", &form).await
    }

    /// Adds `kind` at `schema_version` to a subscription.
    pub async fn subscribe(
        &self,
        subscription_sid: &str,
        kind: &str,
        schema_version: u32,
    ) -> Result<SubscribedEvent, StreamsApiError> {
        let form = [
            ("Type", kind.to_owned()),
            ("SchemaVersion", schema_version.to_string()),
        ];
        self.post(
            &format!("/v1/Subscriptions/{subscription_sid}/SubscribedEvents"),
            &form,
        )
        .await
    }

    /// The latest version of a schema (`GET /v1/Schemas/{id}`).
    pub async fn latest_schema_version(&self, schema: &str) -> Result<u32, StreamsApiError> {
        #[derive(Deserialize)]
        struct Schema {
            latest_version: u32,
        }
        let schema: Schema = self
            .get(&format!("{}/v1/Schemas/{schema}", self.base))
            .await?;
        Ok(schema.latest_version)
    }

    /// Every item of a list, page by page.
    async fn list<T: DeserializeOwned>(
        &self,
        first: &str,
        key: &str,
    ) -> Result<Vec<T>, StreamsApiError> {
        let mut items = Vec::new();
        let mut next = Some(format!("{}{first}", self.base));
        // A bound on pages, so that an API that always answers a next page cannot hold the
        // command forever.
        for _ in 0..100 {
            let Some(url) = next.take() else {
                break;
            };
            let page: serde_json::Value = self.get(&url).await?;
            let list = page[key].as_array().cloned().unwrap_or_default();
            for item in list {
                items.push(
                    serde_json::from_value(item)
                        .map_err(|error| StreamsApiError::Unreadable(error.to_string()))?,
                );
            }
            next = page["meta"]["next_page_url"]
                .as_str()
                .and_then(path_and_query)
                .map(|tail| format!("{}{tail}", self.base));
        }
        Ok(items)
    }

    async fn get<T: DeserializeOwned>(&self, url: &str) -> Result<T, StreamsApiError> {
        let request = self.http.get(url);
        self.send(request).await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        form: &[(&str, String)],
    ) -> Result<T, StreamsApiError> {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form.iter().map(|(name, value)| (*name, value.as_str())))
            .finish();
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body);
        self.send(request).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, StreamsApiError> {
        let response = request
            .basic_auth(
                &self.credentials.username,
                Some(self.credentials.password.expose()),
            )
            .send()
            .await
            .map_err(|error| {
                if error.is_timeout() {
                    StreamsApiError::Timeout
                } else {
                    StreamsApiError::Transport(error.without_url().to_string())
                }
            })?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|error| StreamsApiError::Transport(error.without_url().to_string()))?;
        if !(200..300).contains(&status) {
            return Err(StreamsApiError::Twilio(
                serde_json::from_str::<TwilioError>(&text).unwrap_or(TwilioError {
                    code: None,
                    message: if text.is_empty() {
                        format!("HTTP {status}")
                    } else {
                        text
                    },
                    more_info: None,
                    status,
                }),
            ));
        }
        serde_json::from_str(&text).map_err(|error| StreamsApiError::Unreadable(error.to_string()))
    }
}

/// Makes sure a webhook sink delivers to `destination` and is subscribed to every message
/// status type: finds what exists, creates or adds only what is missing.
pub async fn set_up(
    client: &EventStreamsClient,
    destination: &str,
    batch: bool,
) -> Result<Setup, StreamsApiError> {
    let (sink, sink_created) = match find_sink(client, destination).await? {
        Some(sink) => (sink, false),
        None => (client.create_sink(destination, batch).await?, true),
    };
    let mut best: Option<(Subscription, Vec<SubscribedEvent>)> = None;
    for subscription in client.subscriptions(&sink.sid).await? {
        let types = client.subscribed_events(&subscription.sid).await?;
        let covered = |types: &[SubscribedEvent]| missing(types).len();
        if best
            .as_ref()
            .is_none_or(|(_, known)| covered(&types) < covered(known))
        {
            best = Some((subscription, types));
        }
    }
    match best {
        Some((subscription, mut types)) => {
            let lacking = missing(&types);
            let mut added = Vec::new();
            if !lacking.is_empty() {
                let version = client.latest_schema_version(MESSAGE_STATUS_SCHEMA).await?;
                for kind in lacking {
                    types.push(client.subscribe(&subscription.sid, kind, version).await?);
                    added.push(kind.to_owned());
                }
            }
            Ok(Setup {
                sink,
                sink_created,
                subscription,
                subscription_created: false,
                types_added: added,
                types,
            })
        }
        None => {
            let version = client.latest_schema_version(MESSAGE_STATUS_SCHEMA).await?;
            let subscription = client
                .create_subscription(&sink.sid, &MESSAGE_STATUS_TYPES, version)
                .await?;
            let types = MESSAGE_STATUS_TYPES
                .iter()
                .map(|kind| SubscribedEvent {
                    kind: (*kind).to_owned(),
                    schema_version: Some(version),
                })
                .collect();
            Ok(Setup {
                sink,
                sink_created,
                subscription,
                subscription_created: true,
                types_added: MESSAGE_STATUS_TYPES
                    .iter()
                    .map(|t| (*t).to_owned())
                    .collect(),
                types,
            })
        }
    }
}

/// What exists for `destination`, changing nothing.
pub async fn status(
    client: &EventStreamsClient,
    destination: &str,
) -> Result<Status, StreamsApiError> {
    let Some(sink) = find_sink(client, destination).await? else {
        return Ok(Status {
            destination: destination.to_owned(),
            sink: None,
            subscriptions: Vec::new(),
            missing_types: MESSAGE_STATUS_TYPES
                .iter()
                .map(|t| (*t).to_owned())
                .collect(),
        });
    };
    let mut subscriptions = Vec::new();
    let mut all_types = Vec::new();
    for subscription in client.subscriptions(&sink.sid).await? {
        let types = client.subscribed_events(&subscription.sid).await?;
        all_types.extend(types.iter().cloned());
        subscriptions.push(SubscriptionStatus {
            subscription,
            types,
        });
    }
    Ok(Status {
        destination: destination.to_owned(),
        sink: Some(sink),
        subscriptions,
        missing_types: missing(&all_types)
            .iter()
            .map(|t| (*t).to_owned())
            .collect(),
    })
}

/// The webhook sink delivering to `destination`: an active one if there are several.
async fn find_sink(
    client: &EventStreamsClient,
    destination: &str,
) -> Result<Option<Sink>, StreamsApiError> {
    let mut found: Vec<Sink> = client
        .sinks()
        .await?
        .into_iter()
        .filter(|sink| {
            sink.sink_type
                .as_deref()
                .is_none_or(|kind| kind == "webhook")
                && sink
                    .destination()
                    .is_some_and(|known| same_url(known, destination))
        })
        .collect();
    found.sort_by_key(|sink| sink.status.as_deref() != Some("active"));
    Ok(found.into_iter().next())
}

/// The message status types that `types` lacks.
fn missing(types: &[SubscribedEvent]) -> Vec<&'static str> {
    MESSAGE_STATUS_TYPES
        .iter()
        .filter(|wanted| !types.iter().any(|known| known.kind == **wanted))
        .copied()
        .collect()
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// The path and query of an absolute URL.
fn path_and_query(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.find('/').map(|slash| &rest[slash..])
}
