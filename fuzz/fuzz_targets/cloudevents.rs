//! A Twilio Event Streams body. Parsing and decoding never panic; a parsed body's JSON text
//! parses back into the same body (objects keep their order); a batch keeps one member per
//! element, a lone object is one member; a message status event keeps every attribute and
//! every field of its data as a parameter, carries the token `ce:{id}`, a lower-case status
//! and the SID it names.

#![no_main]

use libfuzzer_sys::fuzz_target;
use statushook::domain::Source;
use statushook::fuzzing::cloudevents::{self, Member, Node};

fuzz_target!(|data: &[u8]| {
    let Ok(parsed) = cloudevents::parse(data) else {
        return;
    };
    let text = parsed.to_json();
    let again = cloudevents::parse(text.as_bytes()).expect("its own JSON parses");
    assert_eq!(again, parsed, "the JSON text of {text}");
    let _ = cloudevents::accounts(&parsed);
    let elements = match &parsed {
        Node::Array(items) => Some(items.clone()),
        Node::Object(_) => Some(vec![parsed.clone()]),
        Node::Scalar(_) => None,
    };
    let decoded = cloudevents::decode(parsed);
    let (Some(elements), Ok(decoded)) = (elements, decoded) else {
        return;
    };
    assert_eq!(decoded.members.len(), elements.len());
    for member in &decoded.members {
        let Member::Status { event, token } = member else {
            continue;
        };
        assert_eq!(event.source(), Source::EventStream);
        assert!(token.starts_with("ce:") && token.len() > 3);
        let status = event.status().as_str();
        assert_eq!(status, status.to_ascii_lowercase());
        // The element it came from: one whose id is the token's.
        let id = &token[3..];
        let kept = |element: &&Node| {
            let Node::Object(attributes) = element else {
                return false;
            };
            let expected: usize = attributes
                .iter()
                .map(|(name, value)| match value {
                    Node::Object(fields) if name == "data" => fields.len(),
                    _ => 1,
                })
                .sum();
            element.field("id").and_then(Node::as_str) == Some(id)
                && event.params().len() == expected
        };
        assert!(
            elements.iter().any(|e| kept(&e)),
            "every attribute and field kept, for {id:?}"
        );
        assert!(event
            .params()
            .iter()
            .any(|(name, value)| name == "data.messageSid" && value.trim() == event.sid().as_str()));
    }
});
