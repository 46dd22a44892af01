//! `POST /twilio/status`: what is accepted, what is refused, and what is stored.

use futures_util::future::join_all;
use statushook::secret::Secret;
use statushook::twilio::signature;

use crate::support::fixtures::{
    callback, encode, event_statuses, new_sid, permutations, with, AUTH_TOKEN, FORM,
};
use crate::support::spawn::{spawn_app, spawn_app_with, Settings, TestApp};

#[tokio::test]
async fn a_signed_callback_is_stored_with_every_parameter_and_answered_with_an_empty_200() {
    let app = spawn_app().await;
    let sid = new_sid();
    let params = with(callback(&sid, "sent"), "ChannelPrefix", "sms");

    let response = app.post_callback(&params).await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.expect("a body").len(), 0);
    let message = app.message_json(&sid).await;
    assert_eq!(message["status"], "sent");
    let stored = &message["events"][0]["params"];
    for (name, value) in &params {
        assert_eq!(stored[name], value.as_str(), "parameter {name}");
    }
}

/// A request that must be refused, and the answer it must get.
struct Refused {
    case: &'static str,
    expected: u16,
    body: String,
    headers: Vec<(&'static str, String)>,
}

fn refused_cases(app: &TestApp, sid: &str) -> Vec<Refused> {
    let good = callback(sid, "delivered");
    let signed = |params: &[(String, String)]| app.sign("/twilio/status", params);
    let form = |signature: String| {
        vec![
            ("Content-Type", FORM.to_owned()),
            ("X-Twilio-Signature", signature),
        ]
    };
    let mut tampered = good.clone();
    tampered[1].1 = "failed".into();
    let wrong_key = signature::sign_sha1(
        &Secret::new("not-the-token"),
        "https://hooks.example.com/twilio/status",
        &good,
    );
    let other_url = signature::sign_sha1(
        &Secret::new(AUTH_TOKEN),
        "https://hooks.example.com/somewhere/else",
        &good,
    );
    let without = |name: &str| {
        good.iter()
            .filter(|(k, _)| k != name)
            .cloned()
            .collect::<Vec<_>>()
    };
    let replaced = |name: &str, value: &str| {
        good.iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    if k == name {
                        value.to_owned()
                    } else {
                        v.clone()
                    },
                )
            })
            .collect::<Vec<_>>()
    };
    let huge = with(good.clone(), "Padding", &"x".repeat(64 * 1024));
    let no_sid = without("MessageSid");
    let bad_sid = replaced("MessageSid", "SM123");
    let call_sid = replaced("MessageSid", &sid.replacen("SM", "CA", 1));
    let no_status = without("MessageStatus");
    let empty_status = replaced("MessageStatus", "");
    vec![
        Refused {
            case: "unsigned",
            expected: 403,
            body: encode(&good),
            headers: vec![("Content-Type", FORM.into())],
        },
        Refused {
            case: "signed with another token",
            expected: 403,
            body: encode(&good),
            headers: form(wrong_key),
        },
        Refused {
            case: "signed for another URL",
            expected: 403,
            body: encode(&good),
            headers: form(other_url),
        },
        Refused {
            case: "a parameter changed after signing",
            expected: 403,
            body: encode(&tampered),
            headers: form(signed(&good)),
        },
        Refused {
            case: "a parameter added after signing",
            expected: 403,
            body: encode(&with(good.clone(), "X", "1")),
            headers: form(signed(&good)),
        },
        Refused {
            case: "signature not base64",
            expected: 403,
            body: encode(&good),
            headers: form("!!!".into()),
        },
        Refused {
            case: "signed but without MessageSid",
            expected: 400,
            body: encode(&no_sid),
            headers: form(signed(&no_sid)),
        },
        Refused {
            case: "signed but with a short MessageSid",
            expected: 400,
            body: encode(&bad_sid),
            headers: form(signed(&bad_sid)),
        },
        Refused {
            case: "signed but with a call SID",
            expected: 400,
            body: encode(&call_sid),
            headers: form(signed(&call_sid)),
        },
        Refused {
            case: "signed but without MessageStatus",
            expected: 400,
            body: encode(&no_status),
            headers: form(signed(&no_status)),
        },
        Refused {
            case: "signed but with an empty MessageStatus",
            expected: 400,
            body: encode(&empty_status),
            headers: form(signed(&empty_status)),
        },
        Refused {
            case: "JSON body",
            expected: 415,
            body: r#"{"MessageSid":"x"}"#.into(),
            headers: vec![
                ("Content-Type", "application/json".into()),
                ("X-Twilio-Signature", signed(&good)),
            ],
        },
        Refused {
            case: "no content type",
            expected: 415,
            body: encode(&good),
            headers: vec![("X-Twilio-Signature", signed(&good))],
        },
        Refused {
            case: "multipart body",
            expected: 415,
            body: encode(&good),
            headers: vec![
                ("Content-Type", "multipart/form-data; boundary=x".into()),
                ("X-Twilio-Signature", signed(&good)),
            ],
        },
        Refused {
            case: "over 64 KiB, even when signed",
            expected: 413,
            body: encode(&huge),
            headers: form(signed(&huge)),
        },
        Refused {
            case: "over 64 KiB and unsigned with a wrong type",
            expected: 413,
            body: "a".repeat(70_000),
            headers: vec![("Content-Type", "text/plain".into())],
        },
        Refused {
            case: "wrong type and unsigned",
            expected: 415,
            body: "a=b".into(),
            headers: vec![("Content-Type", "text/plain".into())],
        },
        Refused {
            case: "unsigned and malformed",
            expected: 403,
            body: "MessageStatus=sent".into(),
            headers: vec![("Content-Type", FORM.into())],
        },
    ]
}

#[tokio::test]
async fn forged_unsigned_tampered_malformed_oversized_and_mistyped_callbacks_are_refused_and_store_nothing(
) {
    let app = spawn_app().await;
    let sid = new_sid();
    for case in refused_cases(&app, &sid) {
        let headers: Vec<(&str, &str)> =
            case.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let response = app.post_raw("/twilio/status", case.body, &headers).await;
        assert_eq!(response.status().as_u16(), case.expected, "{}", case.case);
        assert!(
            !app.is_stored(&sid).await,
            "{} must store nothing",
            case.case
        );
    }
}

#[tokio::test]
async fn a_body_of_exactly_64_kib_is_accepted() {
    let app = spawn_app().await;
    let sid = new_sid();
    let base = encode(&callback(&sid, "sent"));
    let filler = 64 * 1024 - base.len() - "&Padding=".len();
    let params = with(callback(&sid, "sent"), "Padding", &"x".repeat(filler));
    assert_eq!(encode(&params).len(), 64 * 1024);
    assert_eq!(app.post_callback(&params).await.status(), 200);
}

#[tokio::test]
async fn signatures_verify_with_the_port_as_given_removed_or_defaulted() {
    let cases = [
        (
            "https://hooks.example.com:443",
            "https://hooks.example.com/twilio/status",
        ),
        (
            "https://hooks.example.com",
            "https://hooks.example.com:443/twilio/status",
        ),
        (
            "http://hooks.example.com",
            "http://hooks.example.com:80/twilio/status",
        ),
        (
            "https://hooks.example.com:8443",
            "https://hooks.example.com/twilio/status",
        ),
        (
            "https://hooks.example.com:8443",
            "https://hooks.example.com:8443/twilio/status",
        ),
    ];
    for (public_url, signed_url) in cases {
        let app = spawn_app_with(Settings {
            public_url: Some(public_url),
            ..Settings::default()
        })
        .await;
        let sid = new_sid();
        let params = callback(&sid, "sent");
        let response = app.post_signed_by(AUTH_TOKEN, signed_url, &params).await;
        assert_eq!(
            response.status(),
            200,
            "public URL {public_url}, signed {signed_url}"
        );
    }
}

#[tokio::test]
async fn a_different_custom_port_is_refused() {
    let app = spawn_app_with(Settings {
        public_url: Some("https://hooks.example.com:8443"),
        ..Settings::default()
    })
    .await;
    let params = callback(&new_sid(), "sent");
    let signed_url = "https://hooks.example.com:9443/twilio/status";
    let response = app.post_signed_by(AUTH_TOKEN, signed_url, &params).await;
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn the_query_string_is_signed_exactly_as_received() {
    let app = spawn_app().await;
    let sid = new_sid();
    let params = callback(&sid, "sent");
    let target = "/twilio/status?tenant=acme%20corp&b=2&a=1";
    assert_eq!(app.post_signed(target, &params).await.status(), 200);

    // The same signature presented with the query re-ordered or re-encoded must fail.
    let signature = app.sign(target, &params);
    for other in [
        "/twilio/status?a=1&b=2&tenant=acme%20corp",
        "/twilio/status?tenant=acme+corp&b=2&a=1",
    ] {
        let response = app
            .post_raw(
                other,
                encode(&params),
                &[("Content-Type", FORM), ("X-Twilio-Signature", &signature)],
            )
            .await;
        assert_eq!(response.status(), 403, "{other}");
    }
}

#[tokio::test]
async fn a_public_url_with_a_path_prefix_and_trailing_slash_is_signed_with_the_prefix() {
    let app = spawn_app_with(Settings {
        public_url: Some("https://example.com/statushook/"),
        ..Settings::default()
    })
    .await;
    let params = callback(&new_sid(), "sent");
    let response = app
        .post_signed_by(
            AUTH_TOKEN,
            "https://example.com/statushook/twilio/status",
            &params,
        )
        .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn repeated_names_and_utf8_values_verify_and_are_kept() {
    let app = spawn_app().await;
    let sid = new_sid();
    let mut params = callback(&sid, "delivered");
    params.push(("Note".into(), "ñáéíóú — 你好 👋 & = + %".into()));
    params.push(("Tag".into(), "b".into()));
    params.push(("Tag".into(), "a".into()));
    params.push(("Tag".into(), "b".into()));

    assert_eq!(app.post_callback(&params).await.status(), 200);

    let message = app.message_json(&sid).await;
    let stored = &message["events"][0]["params"];
    assert_eq!(stored["Note"], "ñáéíóú — 你好 👋 & = + %");
    assert_eq!(stored["Tag"], serde_json::json!(["b", "a", "b"]));
}

#[tokio::test]
async fn the_secondary_token_is_accepted_during_a_rotation() {
    let app = spawn_app_with(Settings {
        env: vec![("TWILIO_AUTH_TOKEN_SECONDARY", "the-old-token".into())],
        ..Settings::default()
    })
    .await;
    let url = "https://hooks.example.com/twilio/status";
    for (token, expected) in [
        ("the-old-token", 200),
        (AUTH_TOKEN, 200),
        ("a-third-token", 403),
    ] {
        let params = callback(&new_sid(), "sent");
        let response = app.post_signed_by(token, url, &params).await;
        assert_eq!(response.status(), expected, "token {token}");
    }
}

#[tokio::test]
async fn a_sha256_shared_key_signature_is_verified_under_the_named_key() {
    let app = spawn_app_with(Settings {
        env: vec![(
            "STATUSHOOK_SHARED_KEYS",
            "KS1=first-secret,KS2=second-secret".into(),
        )],
        ..Settings::default()
    })
    .await;
    let url = "https://hooks.example.com/twilio/status";
    let cases = [
        ("KS2", "second-secret", 200),
        ("KS1", "first-secret", 200),
        ("KS1", "second-secret", 403),
        ("KS9", "second-secret", 403),
    ];
    for (key_id, secret, expected) in cases {
        let params = callback(&new_sid(), "sent");
        let signature = signature::sign_sha256(&Secret::new(secret), url, &params);
        let settings = format!("key={key_id},algorithm=HMAC_SHA256");
        let headers = [
            ("Content-Type", FORM),
            ("X-Twilio-Signature", signature.as_str()),
            ("X-Twilio-Webhooks-Signature-Settings", settings.as_str()),
        ];
        let response = app
            .post_raw("/twilio/status", encode(&params), &headers)
            .await;
        assert_eq!(
            response.status(),
            expected,
            "key {key_id} signed with {secret}"
        );
    }
}

#[tokio::test]
async fn every_arrival_order_of_queued_sending_sent_delivered_ends_delivered_with_history_in_arrival_order(
) {
    let app = spawn_app().await;
    let orders = permutations(&["queued", "sending", "sent", "delivered"]);
    assert_eq!(orders.len(), 24);
    for order in orders {
        let sid = new_sid();
        for status in &order {
            assert_eq!(
                app.post_callback(&callback(&sid, status)).await.status(),
                200
            );
        }
        let message = app.message_json(&sid).await;
        assert_eq!(message["status"], "delivered", "order {order:?}");
        assert_eq!(
            event_statuses(&message),
            order,
            "history keeps arrival order"
        );
    }
}

#[tokio::test]
async fn duplicates_add_no_event_whether_by_content_or_by_idempotency_token() {
    let app = spawn_app().await;
    let sid = new_sid();
    let sent = callback(&sid, "sent");
    for _ in 0..3 {
        assert_eq!(app.post_callback(&sent).await.status(), 200);
    }
    // The same status with another error code is a different transition.
    let failed_a = with(callback(&sid, "failed"), "ErrorCode", "30003");
    let failed_b = with(callback(&sid, "failed"), "ErrorCode", "30005");
    assert_eq!(app.post_callback(&failed_a).await.status(), 200);
    assert_eq!(app.post_callback(&failed_a).await.status(), 200);
    assert_eq!(app.post_callback(&failed_b).await.status(), 200);

    // A repeated idempotency token is a retry of a delivery already stored.
    let queued = callback(&sid, "queued");
    let delivered = callback(&sid, "delivered");
    let signature = app.sign("/twilio/status", &queued);
    let first = [
        ("Content-Type", FORM),
        ("X-Twilio-Signature", signature.as_str()),
        ("I-Twilio-Idempotency-Token", "token-1"),
    ];
    assert_eq!(
        app.post_raw("/twilio/status", encode(&queued), &first)
            .await
            .status(),
        200
    );
    let signature = app.sign("/twilio/status", &delivered);
    let replay = [
        ("Content-Type", FORM),
        ("X-Twilio-Signature", signature.as_str()),
        ("I-Twilio-Idempotency-Token", "token-1"),
    ];
    assert_eq!(
        app.post_raw("/twilio/status", encode(&delivered), &replay)
            .await
            .status(),
        200
    );

    let message = app.message_json(&sid).await;
    assert_eq!(
        event_statuses(&message),
        ["sent", "failed", "failed", "queued"]
    );
    assert_eq!(message["status"], "failed");
    assert_eq!(message["error_code"], 30005);
}

#[tokio::test]
async fn an_unknown_status_is_kept_in_history_without_changing_the_current_status() {
    let app = spawn_app().await;
    let sid = new_sid();
    for status in ["queued", "bounced_by_carrier", "sent"] {
        assert_eq!(
            app.post_callback(&callback(&sid, status)).await.status(),
            200
        );
    }
    let message = app.message_json(&sid).await;
    assert_eq!(message["status"], "sent");
    assert_eq!(
        event_statuses(&message),
        ["queued", "bounced_by_carrier", "sent"]
    );

    let only_unknown = new_sid();
    assert_eq!(
        app.post_callback(&callback(&only_unknown, "bounced_by_carrier"))
            .await
            .status(),
        200
    );
    assert_eq!(
        app.message_json(&only_unknown).await["status"],
        serde_json::Value::Null
    );
}

#[tokio::test]
async fn a_late_lower_rank_callback_does_not_regress_and_equal_ranks_follow_the_dlr_date() {
    let app = spawn_app().await;
    let sid = new_sid();
    let delivered = with(callback(&sid, "delivered"), "RawDlrDoneDate", "2611260905");
    let late_failed = with(
        with(callback(&sid, "failed"), "RawDlrDoneDate", "2611260901"),
        "ErrorCode",
        "30008",
    );
    for params in [delivered, callback(&sid, "sent"), late_failed] {
        assert_eq!(app.post_callback(&params).await.status(), 200);
    }
    let message = app.message_json(&sid).await;
    assert_eq!(message["status"], "delivered");
    assert_eq!(message["error_code"], serde_json::Value::Null);
    assert_eq!(event_statuses(&message), ["delivered", "sent", "failed"]);
}

#[tokio::test]
async fn hundreds_of_concurrent_callbacks_from_several_clients_are_all_stored() {
    let app = spawn_app().await;
    let clients: Vec<reqwest::Client> = (0..4).map(|_| reqwest::Client::new()).collect();
    let sids: Vec<String> = (0..400).map(|_| new_sid()).collect();
    let requests = sids.iter().enumerate().flat_map(|(i, sid)| {
        let client = clients[i % clients.len()].clone();
        let app = &app;
        ["sent", "delivered"].into_iter().map(move |status| {
            let params = callback(sid, status);
            let signature = app.sign("/twilio/status", &params);
            let request = client
                .post(format!("{}/twilio/status", app.address))
                .header("Content-Type", FORM)
                .header("X-Twilio-Signature", signature)
                .body(encode(&params));
            async move { request.send().await.expect("answered").status().as_u16() }
        })
    });
    let statuses = join_all(requests).await;
    assert_eq!(statuses.len(), 800);
    assert!(statuses.iter().all(|status| *status == 200), "{statuses:?}");
    for sid in &sids {
        let message = app.message_json(sid).await;
        assert_eq!(message["status"], "delivered");
        assert_eq!(message["events"].as_array().map(Vec::len), Some(2));
    }
}
