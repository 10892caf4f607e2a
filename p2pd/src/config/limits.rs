//! The one table of limits: every `[limits]` key with its unit, its accepted range and whether it
//! may change on a running node. The config check, `p2pctl limits set`, `p2pctl limits` and the
//! `p2p_limit` metric all read this table, so they cannot disagree.

use super::values::{ByteSize, HumanDuration, Text};
use super::Limits;
use std::time::Duration;

/// How a limit's value is written and compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A whole number.
    Count,
    /// A duration ("30s"); the raw value is seconds.
    Seconds,
    /// A byte size ("256MiB"); the raw value is bytes.
    Bytes,
}

impl Unit {
    /// The raw value as an operator writes it.
    pub fn show(self, raw: u64) -> String {
        match self {
            Unit::Count => raw.to_string(),
            Unit::Seconds => HumanDuration(Duration::from_secs(raw)).to_string(),
            Unit::Bytes => ByteSize(raw).to_string(),
        }
    }

    /// A measured usage, rounded for reading (sizes in MiB with one decimal).
    pub fn show_usage(self, raw: u64) -> String {
        match self {
            Unit::Bytes if raw >= 1 << 20 => format!("{:.1}MiB", raw as f64 / f64::from(1 << 20)),
            _ => self.show(raw),
        }
    }

    /// Parses what an operator wrote into the raw value.
    pub fn parse(self, text: &str) -> Result<u64, String> {
        let t = text.trim();
        match self {
            Unit::Count => t
                .parse::<u64>()
                .map_err(|_| format!("\"{t}\" is not a whole number")),
            Unit::Seconds => t
                .parse::<HumanDuration>()
                .map(|d| d.0.as_secs())
                .map_err(|e| format!("\"{t}\" is not a duration ({e}); e.g. \"30s\" or \"5m\"")),
            Unit::Bytes => t
                .parse::<ByteSize>()
                .map(|b| b.0)
                .map_err(|e| format!("\"{t}\" is not a size ({e}); e.g. \"512MiB\"")),
        }
    }
}

#[derive(Debug)]
pub struct LimitSpec {
    /// The key under `[limits]`, and the NAME of `p2pctl limits set`.
    pub name: &'static str,
    pub unit: Unit,
    pub min: u64,
    pub max: u64,
    /// May change on a running node (`limits set`, reload); otherwise only at start.
    pub runtime: bool,
    pub get: fn(&Limits) -> u64,
    pub set: fn(&mut Limits, u64),
}

impl LimitSpec {
    /// The range check shared by the config file and `limits set`.
    pub fn check(&self, raw: u64) -> Result<(), String> {
        if raw < self.min || raw > self.max {
            return Err(format!(
                "{} is out of range; accepted: {} to {}",
                self.unit.show(raw),
                self.unit.show(self.min),
                self.unit.show(self.max)
            ));
        }
        Ok(())
    }

    pub fn show(&self, l: &Limits) -> String {
        self.unit.show((self.get)(l))
    }
}

fn count(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

fn secs(v: u64) -> Text<HumanDuration> {
    Text(HumanDuration(Duration::from_secs(v)))
}

macro_rules! limit {
    ($name:ident, Count, $min:expr, $max:expr, $runtime:expr) => {
        LimitSpec {
            name: stringify!($name),
            unit: Unit::Count,
            min: $min,
            max: $max,
            runtime: $runtime,
            get: |l| l.$name.into(),
            set: |l, v| l.$name = count(v),
        }
    };
    ($name:ident, Seconds, $min:expr, $max:expr, $runtime:expr) => {
        LimitSpec {
            name: stringify!($name),
            unit: Unit::Seconds,
            min: $min,
            max: $max,
            runtime: $runtime,
            get: |l| l.$name.0 .0.as_secs(),
            set: |l, v| l.$name = secs(v),
        }
    };
}

/// Every limit, in the order `p2pctl limits` shows them.
pub static LIMITS: &[LimitSpec] = &[
    limit!(max_connections, Count, 1, 1_000_000, true),
    limit!(max_inbound, Count, 1, 1_000_000, true),
    limit!(max_outbound, Count, 1, 1_000_000, true),
    limit!(max_pending_inbound, Count, 1, 100_000, true),
    limit!(max_per_peer, Count, 1, 64, true),
    limit!(max_inbound_per_ip, Count, 1, 1_000_000, true),
    limit!(max_pending_inbound_per_ip, Count, 1, 100_000, true),
    limit!(inbound_rate_per_ip, Count, 1, 1_000_000, true),
    limit!(inbound_burst_per_ip, Count, 1, 1_000_000, true),
    limit!(max_negotiating_inbound_streams, Count, 1, 100_000, false),
    limit!(max_outbound_streams, Count, 1, 100_000, false),
    limit!(idle_timeout, Seconds, 1, 86_400, false),
    limit!(stream_idle_timeout, Seconds, 1, 86_400, false),
    limit!(handshake_timeout, Seconds, 1, 300, false),
    LimitSpec {
        name: "max_memory",
        unit: Unit::Bytes,
        min: 16 << 20,
        max: 1 << 40,
        runtime: true,
        get: |l| l.max_memory.0 .0,
        set: |l, v| l.max_memory = Text(ByteSize(v)),
    },
];

pub fn spec(name: &str) -> Option<&'static LimitSpec> {
    LIMITS.iter().find(|s| s.name == name)
}

/// Range problems of `l`, as (limit name, message).
pub fn check(l: &Limits) -> Vec<(&'static str, String)> {
    LIMITS
        .iter()
        .filter_map(|s| s.check((s.get)(l)).err().map(|m| (s.name, m)))
        .collect()
}

/// Sets limit `name` from what an operator wrote, with the same checks as the config file.
pub fn set(l: &mut Limits, name: &str, value: &str) -> Result<&'static LimitSpec, String> {
    let spec = spec(name).ok_or_else(|| {
        let names: Vec<&str> = LIMITS.iter().map(|s| s.name).collect();
        format!("unknown limit \"{name}\"; known: {}", names.join(", "))
    })?;
    if !spec.runtime {
        return Err(format!(
            "{name} cannot change on a running node; set limits.{name} in the config file and restart"
        ));
    }
    let raw = spec.unit.parse(value).map_err(|e| {
        format!(
            "{e}; accepted: {} to {}",
            spec.unit.show(spec.min),
            spec.unit.show(spec.max)
        )
    })?;
    spec.check(raw)?;
    (spec.set)(l, raw);
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_limit_round_trips_and_defaults_are_in_range() {
        let mut l = Limits::default();
        assert!(check(&l).is_empty(), "{:?}", check(&l));
        for s in LIMITS {
            let v = (s.get)(&l);
            (s.set)(&mut l, v);
            assert_eq!((s.get)(&l), v, "{}", s.name);
        }
        assert!(set(&mut l, "max_per_peer", "65")
            .unwrap_err()
            .contains("65 is out of range; accepted: 1 to 64"));
        assert!(set(&mut l, "max_memory", "1TiB").is_ok());
        assert!(set(&mut l, "max_memory", "2TiB").is_err());
        assert!(set(&mut l, "idle_timeout", "5s")
            .unwrap_err()
            .contains("restart"));
        assert!(set(&mut l, "max_inbound", "zero").is_err());
        assert!(set(&mut l, "nope", "1").unwrap_err().contains("known:"));
    }
}
