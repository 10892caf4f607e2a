//! DHT operations for local clients: each starts a Kademlia query whose progress events
//! complete the caller's reply.

use super::Code;
use super::{ApiError, DhtAnswer, DhtQuery, Node, Reply};
use libp2p::kad::{
    self, GetProvidersOk, GetRecordOk, QueryId, QueryResult, Quorum, Record, RecordKey,
};
use libp2p::PeerId;
use std::collections::{BTreeSet, HashMap};

/// A query in flight and who waits for it.
pub struct Pending {
    query: DhtQuery,
    reply: Reply<DhtAnswer>,
    providers: BTreeSet<PeerId>,
    /// Requests the query sent to peers so far, and how many were answered.
    asked: (u32, u32),
}

/// The DHT queries local clients wait for, by query id (Kademlia's `QueryId`; anything in
/// tests), and how each one's progress becomes its answer.
pub struct Dht<K = QueryId> {
    pending: HashMap<K, Pending>,
}

impl<K> Default for Dht<K> {
    fn default() -> Self {
        Dht {
            pending: HashMap::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq> Dht<K> {
    /// `reply` waits for query `id`.
    pub fn started(&mut self, id: K, query: DhtQuery, reply: Reply<DhtAnswer>) {
        self.pending.insert(
            id,
            Pending {
                query,
                reply,
                providers: BTreeSet::new(),
                asked: (0, 0),
            },
        );
    }

    /// How far query `id` got: `requests` sent to peers, `answered` successfully.
    pub fn asked(&mut self, id: &K, requests: u32, answered: u32) {
        if let Some(p) = self.pending.get_mut(id) {
            p.asked = (requests, answered);
        }
    }

    /// The peer a pending `find-peer` looks for.
    pub fn looking_for(&self, id: &K) -> Option<PeerId> {
        match self.pending.get(id)?.query {
            DhtQuery::FindPeer(p) => Some(p),
            _ => None,
        }
    }

    /// Feeds one progress event of query `id`; `known` is what the node already knows of the
    /// peer a `find-peer` looks for. Answers the caller when the query is decided and returns
    /// true when Kademlia can stop it early (a record was found).
    pub fn progress(
        &mut self,
        id: K,
        result: QueryResult,
        last: bool,
        known: Option<DhtAnswer>,
    ) -> bool {
        let Some(mut p) = self.pending.remove(&id) else {
            return false;
        };
        let mut stop = false;
        let outcome: Option<Result<DhtAnswer, ApiError>> = match (&p.query, result) {
            (DhtQuery::Get(key), QueryResult::GetRecord(Ok(GetRecordOk::FoundRecord(r)))) => {
                stop = true;
                Some(Ok(DhtAnswer::Record {
                    key: key.clone(),
                    value: r.record.value,
                    from: r.peer,
                }))
            }
            (DhtQuery::Get(key), QueryResult::GetRecord(_)) if last => Some(Err(not_found(format!("no value for key {:?} in the DHT", show(key))))),
            (DhtQuery::Get(_), QueryResult::GetRecord(_)) => None,
            (DhtQuery::Put(key, _), QueryResult::PutRecord(r)) => Some(match r {
                Ok(_) => Ok(DhtAnswer::Done),
                Err(kad::PutRecordError::QuorumFailed { .. }) => Err(failed(match p.asked {
                    (0, _) => format!(
                        "stored {:?} locally, but no DHT server was reachable to store it too (the routing table is empty or its peers did not answer: see p2pctl peers and the bootstrap peers)",
                        show(key)
                    ),
                    (asked, answered) => format!(
                        "stored {:?} locally, but none of the {asked} DHT servers asked stored it ({answered} answered, {} refused or did not answer; servers refuse records they cannot validate or that exceed their size limit)",
                        show(key),
                        asked - answered.min(asked)
                    ),
                })),
                Err(e) => Err(failed(format!("put failed: {e}"))),
            }),
            (DhtQuery::Provide(key), QueryResult::StartProviding(r)) => Some(match r {
                Ok(_) => Ok(DhtAnswer::Done),
                Err(e) => Err(failed(format!("announcing as provider of {:?} failed: {e}", show(key)))),
            }),
            (DhtQuery::Providers(key), QueryResult::GetProviders(r)) => {
                if let Ok(GetProvidersOk::FoundProviders { providers, .. }) = r {
                    p.providers.extend(providers);
                }
                last.then(|| {
                    if p.providers.is_empty() {
                        Err(not_found(format!("no providers for key {:?}", show(key))))
                    } else {
                        Ok(peer_list(std::mem::take(&mut p.providers)))
                    }
                })
            }
            (DhtQuery::Closest(_), QueryResult::GetClosestPeers(r)) => Some(match r {
                Ok(ok) => Ok(peer_list(ok.peers.into_iter().map(|i| i.peer_id))),
                Err(kad::GetClosestPeersError::Timeout { peers, .. }) if !peers.is_empty() => {
                    Ok(peer_list(peers.into_iter().map(|i| i.peer_id)))
                }
                Err(e) => Err(failed(format!("closest-peers query failed: {e}"))),
            }),
            (DhtQuery::FindPeer(peer), QueryResult::GetClosestPeers(r)) => {
                let peers = match r {
                    Ok(ok) => ok.peers,
                    Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
                };
                let found = peers.into_iter().find(|i| i.peer_id == *peer);
                let has_addrs = |a: &DhtAnswer| matches!(a, DhtAnswer::Peer { addrs, .. } if !addrs.is_empty());
                Some(match found {
                    Some(info) if !info.addrs.is_empty() => Ok(DhtAnswer::Peer {
                        peer: *peer,
                        addrs: info.addrs,
                    }),
                    // Found, but nobody (the peer itself included) gave an address: what this
                    // node knows, or a clear failure — never a success with no address.
                    Some(_) => known.filter(has_addrs).ok_or_else(|| {
                        not_found(format!(
                            "peer {peer} is in the DHT but no peer (itself included) gave an address for it"
                        ))
                    }),
                    None => known
                        .filter(has_addrs)
                        .ok_or_else(|| not_found(format!("peer {peer} was not found in the DHT"))),
                })
            }
            _ => None,
        };
        match outcome {
            Some(result) => {
                let _ = p.reply.send(result);
            }
            None if !last => {
                self.pending.insert(id, p);
            }
            None => {
                let _ = p
                    .reply
                    .send(Err(failed("the DHT query ended without an answer".into())));
            }
        }
        stop
    }
}

fn not_found(what: String) -> ApiError {
    ApiError::new(Code::NotFound, what)
}

fn failed(what: String) -> ApiError {
    ApiError::new(Code::Failed, what)
}

fn peer_list(peers: impl IntoIterator<Item = PeerId>) -> DhtAnswer {
    DhtAnswer::Peers(peers.into_iter().collect())
}

fn show(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

impl Node {
    /// Starts a DHT query; its progress events answer `reply`.
    pub fn dht(&mut self, query: DhtQuery, reply: Reply<DhtAnswer>) {
        let kad = &mut self.swarm.behaviour_mut().kad;
        let id = match &query {
            DhtQuery::FindPeer(peer) => {
                if self.swarm.is_connected(peer) {
                    if let Some(found) = self.known_addrs(peer) {
                        let _ = reply.send(Ok(found));
                        return;
                    }
                }
                self.swarm.behaviour_mut().kad.get_closest_peers(*peer)
            }
            DhtQuery::Get(key) => kad.get_record(RecordKey::new(key)),
            DhtQuery::Put(key, value) => {
                let record = Record::new(RecordKey::new(key), value.clone());
                match kad.put_record(record, Quorum::One) {
                    Ok(id) => id,
                    Err(e) => {
                        let _ = reply.send(Err(failed(format!("cannot store the record: {e}"))));
                        return;
                    }
                }
            }
            DhtQuery::Provide(key) => match kad.start_providing(RecordKey::new(key)) {
                Ok(id) => id,
                Err(e) => {
                    let _ = reply.send(Err(failed(format!(
                        "cannot store the provider record: {e}"
                    ))));
                    return;
                }
            },
            DhtQuery::Providers(key) => kad.get_providers(RecordKey::new(key)),
            DhtQuery::Closest(key) => kad.get_closest_peers(key.clone()),
        };
        self.dht.started(id, query, reply);
    }

    /// Addresses of a peer we are connected to or hold in the routing table.
    fn known_addrs(&mut self, peer: &PeerId) -> Option<DhtAnswer> {
        let mut addrs = Vec::new();
        for bucket in self.swarm.behaviour_mut().kad.kbuckets() {
            for e in bucket.iter() {
                if e.node.key.preimage() == peer {
                    addrs.extend(e.node.value.iter().cloned());
                }
            }
        }
        // A connected peer's own listen addresses (identify) and the ones this node dialled.
        for a in self.peers.known_addrs(peer) {
            if !addrs.contains(&a) {
                addrs.push(a);
            }
        }
        if addrs.is_empty() {
            return None;
        }
        Some(DhtAnswer::Peer { peer: *peer, addrs })
    }

    pub(super) fn on_query_progress(&mut self, id: QueryId, result: QueryResult, last: bool) {
        let known = self
            .dht
            .looking_for(&id)
            .and_then(|peer| self.known_addrs(&peer));
        if self.dht.progress(id, result, last, known) {
            if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                q.finish();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kad::{GetClosestPeersOk, PeerInfo, PeerRecord};
    use tokio::sync::oneshot;

    type Answer = oneshot::Receiver<Result<DhtAnswer, ApiError>>;

    fn start(dht: &mut Dht<u32>, id: u32, query: DhtQuery) -> Answer {
        let (reply, rx) = oneshot::channel();
        dht.started(id, query, reply);
        rx
    }

    fn answer(rx: &mut Answer) -> Option<Result<DhtAnswer, ApiError>> {
        rx.try_recv().ok()
    }

    #[test]
    fn a_found_record_answers_and_stops_the_query() {
        let mut dht = Dht::default();
        let mut rx = start(&mut dht, 1, DhtQuery::Get(b"k".to_vec()));
        let from = PeerId::random();
        let found = QueryResult::GetRecord(Ok(GetRecordOk::FoundRecord(PeerRecord {
            peer: Some(from),
            record: Record::new(RecordKey::new(&b"k"), b"v".to_vec()),
        })));
        assert!(dht.progress(1, found, false, None));
        assert_eq!(
            answer(&mut rx).unwrap().unwrap(),
            DhtAnswer::Record {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                from: Some(from)
            }
        );
        // A late event for the answered query is ignored.
        let late = QueryResult::GetRecord(Err(kad::GetRecordError::NotFound {
            key: RecordKey::new(&b"k"),
            closest_peers: vec![],
        }));
        assert!(!dht.progress(1, late, true, None));
    }

    #[test]
    fn no_record_is_not_found_only_at_the_last_step() {
        let mut dht = Dht::default();
        let mut rx = start(&mut dht, 1, DhtQuery::Get(b"k".to_vec()));
        let none = || {
            QueryResult::GetRecord(Ok(GetRecordOk::FinishedWithNoAdditionalRecord {
                cache_candidates: Default::default(),
            }))
        };
        dht.progress(1, none(), false, None);
        assert!(answer(&mut rx).is_none());
        dht.progress(1, none(), true, None);
        let e = answer(&mut rx).unwrap().unwrap_err();
        assert_eq!(e.code, Code::NotFound);
        assert!(e.message.contains("no value for key \"k\""), "{e}");
    }

    #[test]
    fn providers_gather_over_the_steps() {
        let mut dht = Dht::default();
        let mut rx = start(&mut dht, 7, DhtQuery::Providers(b"k".to_vec()));
        let (a, b) = (PeerId::random(), PeerId::random());
        for p in [a, b] {
            let step = QueryResult::GetProviders(Ok(GetProvidersOk::FoundProviders {
                key: RecordKey::new(&b"k"),
                providers: [p].into(),
            }));
            dht.progress(7, step, false, None);
        }
        assert!(answer(&mut rx).is_none());
        let end = QueryResult::GetProviders(Ok(GetProvidersOk::FinishedWithNoAdditionalRecord {
            closest_peers: vec![],
        }));
        dht.progress(7, end, true, None);
        let DhtAnswer::Peers(mut got) = answer(&mut rx).unwrap().unwrap() else {
            panic!("not a peer list")
        };
        got.sort();
        let mut want = vec![a, b];
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn a_put_no_server_accepted_says_so() {
        let mut dht = Dht::default();
        let mut rx = start(&mut dht, 1, DhtQuery::Put(b"k".to_vec(), b"v".to_vec()));
        let r = QueryResult::PutRecord(Err(kad::PutRecordError::QuorumFailed {
            key: RecordKey::new(&b"k"),
            success: vec![],
            quorum: std::num::NonZeroUsize::MIN,
        }));
        dht.progress(1, r.clone(), true, None);
        let e = answer(&mut rx).unwrap().unwrap_err();
        assert_eq!(e.code, Code::Failed);
        assert!(e.message.contains("no DHT server was reachable"), "{e}");
        // Servers were asked and refused: that is what the message says, not "are peers
        // connected?".
        let mut rx = start(&mut dht, 2, DhtQuery::Put(b"k".to_vec(), b"v".to_vec()));
        dht.asked(&2, 3, 1);
        dht.progress(2, r, true, None);
        let e = answer(&mut rx).unwrap().unwrap_err();
        assert!(
            e.message.contains("none of the 3 DHT servers asked stored it (1 answered, 2 refused or did not answer"),
            "{e}"
        );
    }

    #[test]
    fn find_peer_falls_back_to_what_the_node_knows() {
        let mut dht = Dht::default();
        let target = PeerId::random();
        let mut rx = start(&mut dht, 1, DhtQuery::FindPeer(target));
        assert_eq!(dht.looking_for(&1), Some(target));
        let others = QueryResult::GetClosestPeers(Ok(GetClosestPeersOk {
            key: vec![],
            peers: vec![PeerInfo {
                peer_id: PeerId::random(),
                addrs: vec![],
            }],
        }));
        let known = DhtAnswer::Peer {
            peer: target,
            addrs: vec!["/ip4/192.0.2.1/tcp/1".parse().unwrap()],
        };
        dht.progress(1, others.clone(), true, Some(known.clone()));
        assert_eq!(answer(&mut rx).unwrap().unwrap(), known);
        let mut rx = start(&mut dht, 2, DhtQuery::FindPeer(target));
        dht.progress(2, others, true, None);
        assert_eq!(answer(&mut rx).unwrap().unwrap_err().code, Code::NotFound);
    }

    #[test]
    fn find_peer_never_succeeds_without_an_address() {
        let mut dht = Dht::default();
        let target = PeerId::random();
        // The target answered about itself, with no address.
        let bare = QueryResult::GetClosestPeers(Ok(GetClosestPeersOk {
            key: vec![],
            peers: vec![PeerInfo {
                peer_id: target,
                addrs: vec![],
            }],
        }));
        let known = DhtAnswer::Peer {
            peer: target,
            addrs: vec!["/ip4/192.0.2.1/tcp/1".parse().unwrap()],
        };
        let mut rx = start(&mut dht, 1, DhtQuery::FindPeer(target));
        dht.progress(1, bare.clone(), true, Some(known.clone()));
        assert_eq!(answer(&mut rx).unwrap().unwrap(), known);
        let mut rx = start(&mut dht, 2, DhtQuery::FindPeer(target));
        dht.progress(2, bare, true, None);
        let e = answer(&mut rx).unwrap().unwrap_err();
        assert_eq!(e.code, Code::NotFound);
        assert!(e.message.contains("gave an address"), "{e}");
    }

    #[test]
    fn closest_peers_after_a_timeout_are_still_an_answer() {
        let mut dht = Dht::default();
        let mut rx = start(&mut dht, 1, DhtQuery::Closest(b"k".to_vec()));
        let p = PeerId::random();
        let r = QueryResult::GetClosestPeers(Err(kad::GetClosestPeersError::Timeout {
            key: vec![],
            peers: vec![PeerInfo {
                peer_id: p,
                addrs: vec![],
            }],
        }));
        dht.progress(1, r, true, None);
        assert_eq!(answer(&mut rx).unwrap().unwrap(), DhtAnswer::Peers(vec![p]));
    }

    #[test]
    fn a_query_that_ends_without_its_kind_of_result_fails() {
        let mut dht = Dht::default();
        let mut rx = start(&mut dht, 1, DhtQuery::Provide(b"k".to_vec()));
        let unrelated = QueryResult::Bootstrap(Ok(kad::BootstrapOk {
            peer: PeerId::random(),
            num_remaining: 0,
        }));
        dht.progress(1, unrelated.clone(), false, None);
        assert!(answer(&mut rx).is_none());
        dht.progress(1, unrelated, true, None);
        assert!(answer(&mut rx)
            .unwrap()
            .unwrap_err()
            .message
            .contains("ended without an answer"));
    }
}
