//! The node's side of block exchange: requests go out and answers come in inside the signed
//! envelope; inbound requests are rate-limited, opened, and served from the store off the loop.

use super::Code;
use super::{ApiError, Node, Reply};
use crate::blocks::codec::Answer;
use crate::blocks::envelope;
use libp2p::request_response::{self, ResponseChannel};
use libp2p::PeerId;
use p2pd_proto::wire::{BlockRequest, BlockResponse, SignedMessage};
use prost::Message;

fn refusal(msg: String) -> BlockResponse {
    BlockResponse {
        error: msg,
        ..Default::default()
    }
}

/// Times a block request is sent again when the connection it went out on closes or is lost
/// before the answer: a peer may hold several connections (AutoNAT dial-backs, a QUIC and a TCP
/// one), the requests are spread over all of them, and the short-lived ones close under a
/// fetch. That is no fault of the provider, whose other connection still serves.
const RESENDS_ON_CLOSE: u8 = 3;

/// A block request awaiting its answer.
pub(super) struct Pending {
    peer: PeerId,
    request: BlockRequest,
    reply: Reply<Answer>,
    resent: u8,
}

impl Node {
    /// Asks `peer` for a block manifest or chunk.
    pub fn block_request(&mut self, peer: PeerId, request: BlockRequest, reply: Reply<Answer>) {
        self.send_block_request(Pending {
            peer,
            request,
            reply,
            resent: 0,
        });
    }

    /// `providers` with those this node is connected to first, and how many those are: a
    /// provider that went away (provider records outlive their nodes) costs a dial, up to the
    /// handshake timeout, before anything is asked of the next.
    pub fn connected_first(
        &mut self,
        mut providers: Vec<PeerId>,
        reply: Reply<(Vec<PeerId>, usize)>,
    ) {
        providers.sort_by_key(|p| !self.swarm.is_connected(p));
        let connected = providers
            .iter()
            .take_while(|p| self.swarm.is_connected(p))
            .count();
        let _ = reply.send(Ok((providers, connected)));
    }

    /// Seals (afresh each time: a resent envelope would be a replay) and sends.
    fn send_block_request(&mut self, pending: Pending) {
        let sealed = self.blocks.signer.seal(pending.request.encode_to_vec());
        self.p2p.message("out", "block", sealed.payload.len());
        let id = self
            .swarm
            .behaviour_mut()
            .blocks
            .send_request(&pending.peer, sealed);
        self.block_requests.insert(id, pending);
    }

    /// Sends an answer sealed off the event loop ([`Node::seal_response`] for small ones).
    pub(crate) fn block_respond(
        &mut self,
        channel: ResponseChannel<SignedMessage>,
        sealed: SignedMessage,
    ) {
        self.p2p.message("out", "block", sealed.payload.len());
        if self
            .swarm
            .behaviour_mut()
            .blocks
            .send_response(channel, sealed)
            .is_err()
        {
            tracing::debug!("block requester went away before the answer");
        }
    }

    fn seal(&self, response: BlockResponse) -> SignedMessage {
        self.blocks.signer.seal(response.encode_to_vec())
    }

    /// An answer to our block request: the replay check here, the signature check (a hash over
    /// up to a 1 MiB chunk) and decoding off the loop; a forged answer costs the peer score, a
    /// body that does not match the hash signed for it is refused like any corrupt chunk.
    fn open_answer(&mut self, from: PeerId, msg: SignedMessage, reply: Reply<Answer>) {
        let refused = move |e: envelope::Refusal| {
            ApiError::new(Code::Failed, format!("answer from {from} refused: {e}"))
        };
        if let Err(e) = envelope::fresh(&msg, &from, &mut self.envelopes) {
            self.swarm.behaviour().policy.ignored("replay");
            let _ = reply.send(Err(refused(e)));
            return;
        }
        let handle = self.handle.clone();
        tokio::task::spawn_blocking(move || {
            let opened = match envelope::verify(&msg, &from) {
                Ok(body_blake3) => crate::blocks::codec::unseal(msg, body_blake3).map_err(|e| {
                    ApiError::new(Code::Failed, format!("answer from {from} refused: {e}"))
                }),
                Err(e @ envelope::Refusal::BadBody) => Err(refused(e)),
                Err(e) => {
                    handle.try_tell(move |node| node.punish_invalid(from, "bad_signature"));
                    Err(refused(e))
                }
            };
            let _ = reply.send(opened);
        });
    }

    /// Opens an envelope from `peer`; a forged or replayed one costs the peer score.
    fn open_envelope<M: Message + Default>(
        &mut self,
        peer: PeerId,
        msg: SignedMessage,
    ) -> Result<M, String> {
        let payload = match envelope::open(msg, &peer, &mut self.envelopes) {
            Ok(p) => p,
            Err(e) => {
                // A forged envelope is provably invalid and costs score; a replayed one is
                // refused (anti-replay on our own protocol stays strict) without penalty.
                match e {
                    envelope::Refusal::Replay(_) => self.swarm.behaviour().policy.ignored("replay"),
                    envelope::Refusal::BadSignature(_) => {
                        self.punish_invalid(peer, "bad_signature")
                    }
                    envelope::Refusal::BadBody => self.swarm.behaviour().policy.ignored("bad_body"),
                }
                return Err(e.to_string());
            }
        };
        M::decode(payload).map_err(|e| format!("undecodable message: {e}"))
    }

    pub(super) fn on_block_event(
        &mut self,
        event: request_response::Event<SignedMessage, SignedMessage>,
    ) {
        match event {
            request_response::Event::Message { message, peer, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    self.p2p.message("in", "block", request.payload.len());
                    if !self.rate_allows(&peer) {
                        let sealed = self.seal(refusal("rate limited; slow down".into()));
                        self.block_respond(channel, sealed);
                        return;
                    }
                    let request: BlockRequest = match self.open_envelope(peer, request) {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::debug!(peer_id = %peer, error = %e, "refused a block request");
                            let sealed = self.seal(refusal(e));
                            self.block_respond(channel, sealed);
                            return;
                        }
                    };
                    // Disk reads and compression happen off the loop; the answer comes back
                    // as a command.
                    let service = self.blocks.clone();
                    let handle = self.handle.clone();
                    tokio::task::spawn_blocking(move || {
                        let (response, data_blake3) = crate::blocks::codec::serve_answer(
                            &service.store,
                            &service.key,
                            service.compress_threshold,
                            &request,
                        );
                        // Signing hashes the (1 MiB) answer, or its body when the store does
                        // not know the hash: here, not on the loop.
                        let response = crate::blocks::codec::seal(
                            &service.signer,
                            request.envelope,
                            response,
                            data_blake3,
                        );
                        handle.try_tell(move |node| node.block_respond(channel, response));
                    });
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    self.p2p.message("in", "block", response.payload.len());
                    if let Some(p) = self.block_requests.remove(&request_id) {
                        self.open_answer(p.peer, response, p.reply);
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id,
                error,
                peer,
                ..
            } => {
                tracing::debug!(peer_id = %peer, error = %error, "block request failed");
                let Some(mut pending) = self.block_requests.remove(&request_id) else {
                    return;
                };
                // The connection went away under the request (closed, or lost mid-stream): not
                // the provider's doing while another connection to it stays up.
                let closed = matches!(
                    error,
                    request_response::OutboundFailure::ConnectionClosed
                        | request_response::OutboundFailure::Io(_)
                );
                if closed && pending.resent < RESENDS_ON_CLOSE && self.swarm.is_connected(&peer) {
                    pending.resent += 1;
                    self.send_block_request(pending);
                    return;
                }
                let _ = pending.reply.send(Err(ApiError::new(
                    Code::Failed,
                    format!("block request to {peer} failed: {error}"),
                )));
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(peer_id = %peer, error = %error, "inbound block request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}
