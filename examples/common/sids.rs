//! The SID of the `n`-th message of `examples/fill`, which `examples/query_bench` looks up.

/// How the SIDs of a fill are made.
#[derive(Clone, Copy)]
pub enum Sids {
    /// 32 hex digits spread over the whole key space, as Twilio issues them.
    Random,
    /// `SM` and the message's number: each new message at the end of the key space.
    Sequential,
}

impl Sids {
    /// `random` (also when absent) or `sequential`.
    pub fn parse(text: Option<&str>) -> Result<Sids, String> {
        match text {
            None | Some("random") => Ok(Sids::Random),
            Some("sequential") => Ok(Sids::Sequential),
            Some(other) => Err(format!("SIDs are random or sequential, not {other}")),
        }
    }

    pub fn sid(self, n: u64) -> String {
        match self {
            // splitmix64 is a bijection of u64, so the first half alone keeps SIDs unique.
            Sids::Random => format!("SM{:016x}{:016x}", mix(n), mix(!n)),
            Sids::Sequential => format!("SM{n:032x}"),
        }
    }
}

fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
