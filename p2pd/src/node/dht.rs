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
}

#[derive(Default)]
pub struct Dht {
    pending: HashMap<QueryId, Pending>,
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
        self.dht.pending.insert(
            id,
            Pending {
                query,
                reply,
                providers: BTreeSet::new(),
            },
        );
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
        if addrs.is_empty() && !self.swarm.is_connected(peer) {
            return None;
        }
        Some(DhtAnswer::Peer { peer: *peer, addrs })
    }

    pub(super) fn on_query_progress(&mut self, id: QueryId, result: QueryResult, last: bool) {
        let Some(mut p) = self.dht.pending.remove(&id) else {
            return;
        };
        let outcome: Option<Result<DhtAnswer, ApiError>> = match (&p.query, result) {
            (DhtQuery::Get(key), QueryResult::GetRecord(Ok(GetRecordOk::FoundRecord(r)))) => {
                if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                    q.finish();
                }
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
                Err(kad::PutRecordError::QuorumFailed { .. }) => Err(failed(format!(
                    "stored {:?} locally but no other DHT server accepted it (are peers connected? see p2pctl peers)",
                    show(key)
                ))),
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
                Some(match found {
                    Some(info) => Ok(DhtAnswer::Peer {
                        peer: *peer,
                        addrs: info.addrs,
                    }),
                    None => self
                        .known_addrs(peer)
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
                self.dht.pending.insert(id, p);
            }
            None => {
                let _ = p
                    .reply
                    .send(Err(failed("the DHT query ended without an answer".into())));
            }
        }
    }
}
