//! Networks by prefix: which of many banned addresses and CIDRs cover an address, in a few
//! hash lookups (one per prefix length in use) whatever the number of entries.

use ipnet::IpNet;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

#[derive(Debug, Clone)]
pub struct NetIndex<V> {
    nets: HashMap<IpNet, V>,
    /// How many entries have each (IPv6?, prefix length), longest first when iterated in
    /// reverse.
    lens: BTreeMap<(bool, u8), usize>,
}

impl<V> Default for NetIndex<V> {
    fn default() -> Self {
        NetIndex {
            nets: HashMap::new(),
            lens: BTreeMap::new(),
        }
    }
}

fn key(net: &IpNet) -> (bool, u8) {
    (matches!(net, IpNet::V6(_)), net.prefix_len())
}

impl<V> NetIndex<V> {
    /// Adds (or replaces) `net` (host bits cleared).
    pub fn insert(&mut self, net: IpNet, value: V) -> Option<V> {
        let net = net.trunc();
        let old = self.nets.insert(net, value);
        if old.is_none() {
            *self.lens.entry(key(&net)).or_default() += 1;
        }
        old
    }

    pub fn remove(&mut self, net: &IpNet) -> Option<V> {
        let net = net.trunc();
        let old = self.nets.remove(&net)?;
        if let Some(n) = self.lens.get_mut(&key(&net)) {
            *n -= 1;
            if *n == 0 {
                self.lens.remove(&key(&net));
            }
        }
        Some(old)
    }

    pub fn get_mut(&mut self, net: &IpNet) -> Option<&mut V> {
        self.nets.get_mut(&net.trunc())
    }

    pub fn clear(&mut self) {
        self.nets.clear();
        self.lens.clear();
    }

    pub fn len(&self) -> usize {
        self.nets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// The entries that cover `ip`, most specific first.
    pub fn covering(&self, ip: IpAddr) -> impl Iterator<Item = (IpNet, &V)> + '_ {
        let v6 = ip.is_ipv6();
        self.lens
            .range((v6, 0)..=(v6, 128))
            .rev()
            .filter_map(move |(&(_, len), _)| {
                let net = IpNet::new(ip, len).ok()?.trunc();
                self.nets.get(&net).map(|v| (net, v))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn the_most_specific_covering_entry_comes_first() {
        let mut i = NetIndex::default();
        i.insert(net("10.0.0.0/8"), "wide");
        i.insert(net("10.1.2.3/16"), "narrow");
        i.insert(net("10.1.2.3/32"), "host");
        i.insert(net("2001:db8::/32"), "v6");
        fn found<'a>(i: &NetIndex<&'a str>, ip: &str) -> Vec<&'a str> {
            i.covering(ip.parse().unwrap()).map(|(_, v)| *v).collect()
        }
        assert_eq!(found(&i, "10.1.2.3"), ["host", "narrow", "wide"]);
        assert_eq!(found(&i, "10.1.9.9"), ["narrow", "wide"]);
        assert_eq!(found(&i, "11.0.0.1"), Vec::<&str>::new());
        assert_eq!(found(&i, "2001:db8::1"), ["v6"]);
        assert_eq!(i.remove(&net("10.1.0.0/16")), Some("narrow"));
        assert_eq!(found(&i, "10.1.9.9"), ["wide"]);
        assert_eq!(i.len(), 3);
    }

    /// 100,000 entries: a lookup is a handful of hash probes.
    #[test]
    fn large_lists_stay_cheap() {
        let mut i = NetIndex::default();
        for n in 0..100_000u32 {
            let a = std::net::Ipv4Addr::from(0x0a00_0000 | (n << 8));
            i.insert(IpNet::new(a.into(), 24).unwrap(), n);
        }
        assert_eq!(i.covering("10.0.3.7".parse().unwrap()).count(), 1);
        assert_eq!(i.lens.len(), 1, "one prefix length to probe");
    }
}
