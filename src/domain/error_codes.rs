//! Twilio's messaging error codes: the title Twilio's error dictionary gives each, so that an
//! `ErrorCode` in a callback reads as a cause ("30003: Unreachable destination handset")
//! wherever the API shows it. The table holds the codes a status callback or a refused send
//! commonly carries; any other code is shown without a title. Every code has a page at
//! [`docs_url`], whether or not it is in the table.

/// `(code, title)`, sorted by code, titles as Twilio's error dictionary words them.
const TITLES: &[(u32, &str)] = &[
    (21211, "Invalid 'To' Phone Number"),
    (
        21408,
        "Permission to send an SMS or MMS has not been enabled for the region indicated by the 'To' number",
    ),
    (
        21606,
        "The 'From' phone number provided is not a valid message-capable Twilio phone number for this destination/account",
    ),
    (21610, "Attempt to send to unsubscribed recipient"),
    (
        21611,
        "This 'From' number has exceeded the maximum number of queued messages",
    ),
    (
        21612,
        "Message cannot be sent with the current combination of 'To' and/or 'From' parameters",
    ),
    (21614, "'To' number is not a valid mobile number"),
    (30001, "Queue overflow"),
    (30002, "Account suspended"),
    (30003, "Unreachable destination handset"),
    (30004, "Message blocked"),
    (30005, "Unknown destination handset"),
    (30006, "Landline or unreachable carrier"),
    (30007, "Message filtered"),
    (30008, "Unknown error"),
    (30009, "Missing inbound segment"),
    (30010, "Message price exceeds max price"),
    (
        30011,
        "MMS not supported by the receiving phone number in this region",
    ),
    (30017, "Carrier network congestion"),
    (30019, "Content size exceeds carrier limit"),
    (30020, "Internal Failure with Message Scheduling"),
    (30021, "Internal Failure with messaging service orchestrator"),
    (30022, "US A2P 10DLC - Rate Limits Exceeded"),
    (30023, "US A2P 10DLC - Daily Message Cap Reached"),
    (30024, "Numeric Sender ID Not Provisioned on Carrier"),
    (
        30026,
        "US A2P 10DLC - 70% T-Mobile Daily Message Limit Consumed",
    ),
    (30027, "US A2P 10DLC - T-Mobile Daily Message Limit Reached"),
    (30032, "Toll-Free Number Has Not Been Verified"),
    (30034, "US A2P 10DLC - Message from an Unregistered Number"),
    (30036, "Validity Period Expired"),
    (30037, "Outbound Messaging Disabled"),
    (30038, "OTP Message Body Filtered"),
    (30039, "Filtered to Prevent Message Loops"),
    (30040, "Destination carrier requires Sender ID pre-registration"),
    (
        30041,
        "Message from an unregistered number sent to a United Kingdom number",
    ),
    (30043, "International SMS via Domestic Gateway"),
    (30450, "Message delivery blocked"),
    (30454, "Account exceeded the messages limit"),
    (30485, "Message couldn't be delivered"),
    (30500, "Twilio Internal Error"),
    (63003, "Channel could not find To address"),
    (63014, "Channel message blocked by user action"),
    (
        63016,
        "Failed to send freeform message because you are outside the allowed window",
    ),
    (63017, "Rate limit exceeded"),
    (63019, "Media failed to download"),
    (63023, "Channel generic error"),
    (63038, "Account exceeded the daily messages limit"),
];

/// Twilio's title for `code`, or `None` for a code outside the table.
pub fn describe(code: u32) -> Option<&'static str> {
    TITLES
        .binary_search_by_key(&code, |(known, _)| *known)
        .ok()
        .map(|index| TITLES[index].1)
}

/// The page of Twilio's error dictionary about `code`.
pub fn docs_url(code: u32) -> String {
    format!("https://www.twilio.com/docs/api/errors/{code}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_without_repeats_so_lookups_find_every_code() {
        assert!(TITLES.windows(2).all(|pair| pair[0].0 < pair[1].0));
        for (code, title) in TITLES {
            assert_eq!(describe(*code), Some(*title));
            assert!(!title.is_empty() && !title.ends_with('.'));
        }
    }

    #[test]
    fn common_delivery_failures_are_described_and_unknown_codes_are_not() {
        assert_eq!(describe(30003), Some("Unreachable destination handset"));
        assert_eq!(
            describe(21610),
            Some("Attempt to send to unsubscribed recipient")
        );
        assert_eq!(describe(12345), None);
        assert_eq!(
            docs_url(30008),
            "https://www.twilio.com/docs/api/errors/30008"
        );
    }
}
