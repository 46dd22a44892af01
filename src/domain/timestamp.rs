use chrono::{DateTime, SecondsFormat, Utc};

/// Microseconds since the Unix epoch, UTC. Stored big-endian in index keys, so byte order
/// is time order.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn now() -> Self {
        let micros = Utc::now().timestamp_micros();
        Timestamp(u64::try_from(micros).unwrap_or(0))
    }

    /// Parses an RFC 3339 time such as `2026-11-26T09:00:00Z`.
    pub fn parse_rfc3339(raw: &str) -> Result<Self, String> {
        let time = DateTime::parse_from_rfc3339(raw)
            .map_err(|_| format!("{raw:?} is not an RFC 3339 time such as 2026-11-26T09:00:00Z"))?;
        u64::try_from(time.timestamp_micros())
            .map(Timestamp)
            .map_err(|_| format!("{raw:?} is before 1970"))
    }

    /// RFC 3339 in UTC with milliseconds, the form every API answer uses.
    pub fn to_rfc3339(self) -> String {
        let micros = i64::try_from(self.0).unwrap_or(i64::MAX);
        DateTime::<Utc>::from_timestamp_micros(micros)
            .unwrap_or_default()
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    pub fn to_be_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }
}

impl serde::Serialize for RfcTime {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0.to_rfc3339())
    }
}

/// A timestamp that serializes as RFC 3339, for JSON answers.
#[derive(Debug, Clone, Copy)]
pub struct RfcTime(pub Timestamp);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_rfc3339_at_millisecond_precision() {
        let t = Timestamp::parse_rfc3339("2026-11-26T09:00:03.410Z").expect("valid");
        assert_eq!(t.to_rfc3339(), "2026-11-26T09:00:03.410Z");
        let offset = Timestamp::parse_rfc3339("2026-11-26T10:00:03.410+01:00").expect("valid");
        assert_eq!(offset, t);
        assert!(Timestamp::parse_rfc3339("yesterday").is_err());
    }
}
