use std::fmt;

/// A message status as Twilio reports it.
///
/// Known statuses carry a rank: a callback can only move a message's current status to an
/// equal or higher rank, which is what makes late and duplicated callbacks harmless. A status
/// statushook does not know is kept verbatim in the history and never becomes current.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MessageStatus {
    Known(KnownStatus),
    Unknown(String),
}

macro_rules! known_statuses {
    ($($variant:ident = $name:literal, rank $rank:literal;)*) => {
        /// The statuses of Twilio's Message resource, with their ranks.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum KnownStatus { $($variant),* }

        impl KnownStatus {
            pub const ALL: &'static [KnownStatus] = &[$(KnownStatus::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $(KnownStatus::$variant => $name),* }
            }

            pub fn rank(self) -> u8 {
                match self { $(KnownStatus::$variant => $rank),* }
            }

            fn from_name(name: &str) -> Option<Self> {
                match name { $($name => Some(KnownStatus::$variant),)* _ => None }
            }
        }
    };
}

known_statuses! {
    Accepted = "accepted", rank 0;
    Scheduled = "scheduled", rank 1;
    Queued = "queued", rank 2;
    Sending = "sending", rank 3;
    Sent = "sent", rank 4;
    Receiving = "receiving", rank 3;
    Received = "received", rank 5;
    Delivered = "delivered", rank 5;
    Undelivered = "undelivered", rank 5;
    Failed = "failed", rank 5;
    Canceled = "canceled", rank 5;
    PartiallyDelivered = "partially_delivered", rank 5;
    Read = "read", rank 6;
}

impl KnownStatus {
    /// A one-byte code for index keys; stable because it is the declaration order above,
    /// which must therefore only ever be appended to.
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code)).copied()
    }

    /// Final statuses are not expected to change again except to `read`; the reconciler
    /// leaves messages in them alone.
    pub fn is_final(self) -> bool {
        self.rank() >= 5
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::from_name(&raw.to_ascii_lowercase())
    }

    /// Whether this status, learnt from somewhere other than a callback (the reconciler's
    /// fetch), is news for a message whose current status is `current`: a different status
    /// of at least the same rank. An equal rank counts, since the fetched status may be the
    /// later of two final ones.
    pub fn is_news_for(self, current: Option<KnownStatus>) -> bool {
        current.is_none_or(|current| self != current && self.rank() >= current.rank())
    }
}

impl MessageStatus {
    /// Any non-empty string; known names are matched case-insensitively.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err("MessageStatus is empty".into());
        }
        Ok(match KnownStatus::parse(raw) {
            Some(known) => MessageStatus::Known(known),
            None => MessageStatus::Unknown(raw.to_owned()),
        })
    }

    pub fn known(&self) -> Option<KnownStatus> {
        match self {
            MessageStatus::Known(known) => Some(*known),
            MessageStatus::Unknown(_) => None,
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            MessageStatus::Known(known) => known.as_str(),
            MessageStatus::Unknown(raw) => raw,
        }
    }
}

/// Stored as the status text, read back through [`MessageStatus::parse`].
impl serde::Serialize for MessageStatus {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for MessageStatus {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        MessageStatus::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_follow_the_contract() {
        let expected = [
            ("accepted", 0),
            ("scheduled", 1),
            ("queued", 2),
            ("sending", 3),
            ("sent", 4),
            ("receiving", 3),
            ("received", 5),
            ("delivered", 5),
            ("undelivered", 5),
            ("failed", 5),
            ("canceled", 5),
            ("partially_delivered", 5),
            ("read", 6),
        ];
        assert_eq!(expected.len(), KnownStatus::ALL.len());
        for (name, rank) in expected {
            let status = KnownStatus::parse(name).expect(name);
            assert_eq!(status.rank(), rank, "{name}");
            assert_eq!(status.as_str(), name);
            assert_eq!(KnownStatus::from_code(status.code()), Some(status));
        }
    }

    #[test]
    fn a_fetched_status_is_news_only_if_it_differs_and_does_not_rank_lower() {
        use KnownStatus::*;
        assert!(Delivered.is_news_for(Some(Sent)));
        assert!(
            Undelivered.is_news_for(Some(Delivered)),
            "equal rank, another status"
        );
        assert!(Sent.is_news_for(None));
        assert!(!Sent.is_news_for(Some(Delivered)));
        assert!(!Delivered.is_news_for(Some(Delivered)));
    }

    #[test]
    fn unknown_and_empty_statuses() {
        assert_eq!(
            MessageStatus::parse("Delivered"),
            Ok(MessageStatus::Known(KnownStatus::Delivered))
        );
        assert_eq!(
            MessageStatus::parse("bounced"),
            Ok(MessageStatus::Unknown("bounced".into()))
        );
        assert!(MessageStatus::parse(" ").is_err());
    }
}
