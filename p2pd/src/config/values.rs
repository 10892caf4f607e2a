//! Value types of the config file: each parses from the text an operator writes ("30s",
//! "256MiB", "/ip4/0.0.0.0/tcp/4001") and prints back the same way, so `check-config` output can
//! be fed back in as a config file.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A value written as text in the config, parsed into `T`.
pub trait ConfigText: FromStr + fmt::Display + Clone {
    /// What an accepted value looks like, for error messages.
    const EXPECTED: &'static str;
}

/// Wrapper that (de)serializes a [`ConfigText`] value as a string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
#[serde(bound(
    serialize = "T: ConfigText",
    deserialize = "T: ConfigText, <T as FromStr>::Err: fmt::Display"
))]
pub struct Text<T: ConfigText>(pub T);

impl<T: ConfigText> TryFrom<String> for Text<T>
where
    T::Err: fmt::Display,
{
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        T::from_str(s.trim())
            .map(Text)
            .map_err(|e| format!("invalid value \"{s}\" ({e}); expected {}", T::EXPECTED))
    }
}

impl<T: ConfigText> From<Text<T>> for String {
    fn from(t: Text<T>) -> String {
        t.0.to_string()
    }
}

impl<T: ConfigText> std::ops::Deref for Text<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl ConfigText for libp2p::Multiaddr {
    const EXPECTED: &'static str = "a multiaddr such as /ip4/0.0.0.0/tcp/4001";
}

impl ConfigText for std::net::SocketAddr {
    const EXPECTED: &'static str = "HOST:PORT such as 127.0.0.1:9100";
}

impl ConfigText for ipnet::IpNet {
    const EXPECTED: &'static str = "a CIDR such as 10.0.0.0/8 or fc00::/7";
}

/// An address range written as an IP ("192.0.2.7", a single address) or a CIDR ("10.0.0.0/8").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpRange(pub ipnet::IpNet);

impl FromStr for IpRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(ip) = s.parse::<std::net::IpAddr>() {
            return Ok(IpRange(ipnet::IpNet::from(ip)));
        }
        s.parse::<ipnet::IpNet>()
            .map(|n| IpRange(n.trunc()))
            .map_err(|_| format!("{s:?} is not an IP address or a CIDR"))
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.prefix_len() == self.0.max_prefix_len() {
            write!(f, "{}", self.0.addr())
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl ConfigText for IpRange {
    const EXPECTED: &'static str = "an IP address or a CIDR such as 192.0.2.7 or 10.0.0.0/8";
}

/// A duration written as "30s", "5m", "1h", "250ms".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = humantime::DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s).map(HumanDuration)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl ConfigText for HumanDuration {
    const EXPECTED: &'static str = "a duration such as \"30s\", \"5m\" or \"1h\"";
}

/// A byte size written as "256MiB", "1GiB", "512KiB" or a plain number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

const UNITS: [(&str, u64); 9] = [
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("TB", 1_000_000_000_000),
    ("GB", 1_000_000_000),
    ("MB", 1_000_000),
    ("KB", 1_000),
    ("B", 1),
];

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (num, mult) = UNITS
            .iter()
            .find_map(|(u, m)| s.strip_suffix(u).map(|n| (n.trim(), *m)))
            .unwrap_or((s, 1));
        let n: u64 = num.parse().map_err(|_| format!("not a number: {num:?}"))?;
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| "too large".to_string())
    }
}

impl fmt::Display for ByteSize {
    /// The exact form with the smallest number: "256MiB", "1TB" (not "976562500KiB"), "7B";
    /// binary units win a tie.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let best = UNITS
            .iter()
            .filter(|(_, mult)| self.0 >= *mult && self.0.is_multiple_of(*mult))
            .min_by_key(|(unit, mult)| (self.0 / mult, !unit.ends_with("iB")));
        match best {
            Some((unit, mult)) => write!(f, "{}{unit}", self.0 / mult),
            None => write!(f, "{}B", self.0),
        }
    }
}

impl ConfigText for ByteSize {
    const EXPECTED: &'static str = "a size such as \"256MiB\" or \"1GiB\"";
}

/// A peer id, or a multiaddr ending in `/p2p/ID`; shared with clients.
pub use p2pd_proto::target::PeerRef;

impl ConfigText for PeerRef {
    const EXPECTED: &'static str = "a peer id (12D3Koo...) or a multiaddr ending in /p2p/PEER_ID";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_round_trip() {
        for s in ["256MiB", "1GiB", "512KiB", "7B", "1TB", "3MB"] {
            assert_eq!(s.parse::<ByteSize>().unwrap().to_string(), s);
        }
        assert_eq!("1000".parse::<ByteSize>().unwrap().0, 1000);
        assert!("lots".parse::<ByteSize>().is_err());
        let d: HumanDuration = "30s".parse().unwrap();
        assert_eq!(d.0, Duration::from_secs(30));
        assert_eq!(d.to_string(), "30s");
    }
}
