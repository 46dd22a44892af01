//! A budget of wrong tokens per client address, so that guessing the bearer token is slow.
//!
//! Each address has a token bucket of [`BURST`] wrong tokens, refilled at
//! [`REFILL_PER_SECOND`]. A request that presents a wrong bearer token takes one. While an
//! address's bucket is empty, every request from it that presents a token is answered
//! `429` with `Retry-After`, the right token too: were the right token let through, the
//! answer would still tell a guesser when a guess was right, and the bucket would slow
//! nothing. A request that presents no bearer token guesses nothing; it is answered `401`
//! and spends nothing. So a guesser gets one try a second per address, and a client that
//! holds the token is never refused unless it shares an address with one that guesses
//! (behind a proxy, every client shares the proxy's; see `docs/operations.md`, "Hostile
//! clients").
//!
//! `429` rather than a delay: a delayed answer keeps a connection and a task per guess, so
//! an attacker with many connections would be slowed no more than their number allows,
//! while a `429` costs nothing to give and tells a well-behaved client when to retry.
//!
//! IPv6 addresses are counted by their /64, which one host commonly has whole. The table
//! holds at most [`MOST_ADDRESSES`] addresses; when it is full, those with a full bucket
//! are forgotten, and if none is, new addresses share one bucket.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Refusals an address may collect at once: enough for a person retyping a token.
pub const BURST: f64 = 10.0;
/// Refusals an address is given back each second.
pub const REFILL_PER_SECOND: f64 = 1.0;
/// Addresses remembered at most.
const MOST_ADDRESSES: usize = 10_000;
/// The key of the bucket shared by addresses that found the table full.
const OVERFLOW: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// What a request to the API presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// The API token.
    Right,
    /// A bearer token that is not the API token: a guess, perhaps.
    Wrong,
    /// No bearer token at all.
    Missing,
}

/// What to do with a request to the API.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Its token is right and its address has budget left: serve it.
    Serve,
    /// Its token is missing or wrong: `401` (a wrong one is taken from the budget).
    Refuse,
    /// Its address has no budget left: `429`, retry after this long.
    Throttle(Duration),
}

#[derive(Default)]
pub struct Refusals {
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * REFILL_PER_SECOND).min(BURST);
        self.at = now;
    }
}

impl Refusals {
    /// The verdict on a request from `address` that presented `token`.
    pub fn judge(&self, address: Option<IpAddr>, token: Token, now: Instant) -> Verdict {
        let authorized = match token {
            Token::Missing => return Verdict::Refuse,
            Token::Right => true,
            Token::Wrong => false,
        };
        let key = address.map_or(OVERFLOW, by_host);
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !buckets.contains_key(&key) {
            if authorized {
                // Nothing to remember about an address that never failed.
                return Verdict::Serve;
            }
            if buckets.len() >= MOST_ADDRESSES {
                buckets.retain(|_, bucket| {
                    bucket.refill(now);
                    bucket.tokens < BURST
                });
            }
        }
        let key = if buckets.len() >= MOST_ADDRESSES && !buckets.contains_key(&key) {
            OVERFLOW
        } else {
            key
        };
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: BURST,
            at: now,
        });
        bucket.refill(now);
        if bucket.tokens < 1.0 {
            let wait = (1.0 - bucket.tokens) / REFILL_PER_SECOND;
            return Verdict::Throttle(Duration::from_secs_f64(wait));
        }
        if authorized {
            Verdict::Serve
        } else {
            bucket.tokens -= 1.0;
            Verdict::Refuse
        }
    }
}

/// The part of an address that identifies a host: all of an IPv4 address, the /64 of an
/// IPv6 one (an IPv4-mapped IPv6 address counts as the IPv4 address).
fn by_host(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().expect("an address"))
    }

    #[test]
    fn an_address_gets_its_burst_of_refusals_then_is_throttled_until_refilled() {
        let refusals = Refusals::default();
        let start = Instant::now();
        for n in 0..BURST as usize {
            assert_eq!(
                refusals.judge(ip("192.0.2.1"), Token::Wrong, start),
                Verdict::Refuse,
                "refusal {n}"
            );
        }
        assert!(matches!(
            refusals.judge(ip("192.0.2.1"), Token::Wrong, start),
            Verdict::Throttle(_)
        ));
        // The right token is throttled too: its answer would tell a guesser it was right.
        assert!(matches!(
            refusals.judge(ip("192.0.2.1"), Token::Right, start),
            Verdict::Throttle(_)
        ));
        // A request without a token guesses nothing: it is refused, not throttled.
        assert_eq!(
            refusals.judge(ip("192.0.2.1"), Token::Missing, start),
            Verdict::Refuse
        );
        // Other addresses are not throttled.
        assert_eq!(
            refusals.judge(ip("192.0.2.2"), Token::Right, start),
            Verdict::Serve
        );
        assert_eq!(
            refusals.judge(ip("192.0.2.2"), Token::Wrong, start),
            Verdict::Refuse
        );
        let later = start + Duration::from_secs(1);
        assert_eq!(
            refusals.judge(ip("192.0.2.1"), Token::Right, later),
            Verdict::Serve
        );
        assert_eq!(
            refusals.judge(ip("192.0.2.1"), Token::Wrong, later),
            Verdict::Refuse
        );
        assert!(matches!(
            refusals.judge(ip("192.0.2.1"), Token::Wrong, later),
            Verdict::Throttle(_)
        ));
    }

    #[test]
    fn an_ipv6_host_is_counted_by_its_64() {
        let refusals = Refusals::default();
        let now = Instant::now();
        for n in 0..BURST as u32 {
            let address = format!("2001:db8:1:2::{n:x}");
            assert_eq!(
                refusals.judge(ip(&address), Token::Wrong, now),
                Verdict::Refuse
            );
        }
        assert!(matches!(
            refusals.judge(ip("2001:db8:1:2:ffff::1"), Token::Wrong, now),
            Verdict::Throttle(_)
        ));
        assert_eq!(
            refusals.judge(ip("2001:db8:1:3::1"), Token::Wrong, now),
            Verdict::Refuse
        );
    }

    #[test]
    fn the_table_stays_bounded() {
        let refusals = Refusals::default();
        let now = Instant::now();
        for n in 0..MOST_ADDRESSES as u32 + 500 {
            let address = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n));
            refusals.judge(Some(address), Token::Wrong, now);
        }
        let held = refusals.buckets.lock().expect("not poisoned").len();
        assert!(held <= MOST_ADDRESSES + 1, "{held}");
    }
}
