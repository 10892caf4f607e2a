//! `ban`, `unban`, `bans`, `trust add|rm|ls`, `limits`, `limits set`.

use super::Caller;
use crate::config::values::PeerRef;
use crate::node::Code;
use crate::node::{ApiError, LimitView, NodeHandle, TrustAction, TrustedView};
use crate::policy::bans::{Ban, BanTarget};
use p2pd_proto::control::{
    response::Kind, trust_request::Action, BanEntry, BanList, BanRequest, LimitEntry, LimitList,
    LimitsSetRequest, TrustList, TrustRequest, TrustedPeer, UnbanRequest,
};
use std::time::Duration;

/// The longest timed ban: 100 years. A permanent ban is its own value (no expiry).
pub const MAX_BAN_SECS: u64 = 100 * 365 * 86_400;

fn target(s: &str) -> Result<BanTarget, ApiError> {
    s.parse()
        .map_err(|e: String| ApiError::new(Code::BadRequest, e))
}

pub async fn ban(node: &NodeHandle, caller: &Caller, req: BanRequest) -> Result<Kind, ApiError> {
    caller.audit("ban", &req.target);
    let target = target(&req.target)?;
    if req.duration_secs > MAX_BAN_SECS {
        return Err(ApiError::new(
            Code::BadRequest,
            format!(
                "a timed ban lasts at most 100 years ({MAX_BAN_SECS} s; {} s asked); leave out --for for a permanent ban",
                req.duration_secs
            ),
        ));
    }
    let duration = (req.duration_secs > 0).then(|| Duration::from_secs(req.duration_secs));
    let by = format!("uid {}", caller.uid);
    let reason = req.reason;
    let ban = node
        .ask(move |n, reply| n.ban(target, duration, reason, by, reply))
        .await?;
    Ok(Kind::BanList(BanList {
        bans: vec![entry(&ban)],
    }))
}

pub async fn unban(
    node: &NodeHandle,
    caller: &Caller,
    req: UnbanRequest,
) -> Result<Kind, ApiError> {
    caller.audit("unban", &req.target);
    let target = target(&req.target)?;
    let by = format!("uid {}", caller.uid);
    node.ask(move |n, reply| n.unban(target, by, reply)).await?;
    Ok(Kind::Ack(p2pd_proto::control::Ack {}))
}

pub async fn bans(node: &NodeHandle) -> Result<Kind, ApiError> {
    let bans = node.call(|n| Ok(n.bans())).await?;
    Ok(Kind::BanList(BanList {
        bans: bans.iter().map(entry).collect(),
    }))
}

pub async fn trust(
    node: &NodeHandle,
    caller: &Caller,
    req: TrustRequest,
) -> Result<Kind, ApiError> {
    let bad = |e: String| ApiError::new(Code::BadRequest, e);
    let action = match Action::try_from(req.action).unwrap_or(Action::List) {
        Action::List => TrustAction::List,
        Action::Add => {
            caller.audit("trust_add", &req.target);
            TrustAction::Add(req.target.parse::<PeerRef>().map_err(bad)?)
        }
        Action::Remove => {
            caller.audit("trust_rm", &req.target);
            TrustAction::Remove(req.target.parse::<PeerRef>().map_err(bad)?.peer)
        }
    };
    let peers = node.ask(move |n, reply| n.trust(action, reply)).await?;
    Ok(trust_list(peers))
}

pub async fn limits(node: &NodeHandle) -> Result<Kind, ApiError> {
    let limits = node.call(|n| Ok(n.limits())).await?;
    Ok(limit_list(limits))
}

pub async fn limits_set(
    node: &NodeHandle,
    caller: &Caller,
    req: LimitsSetRequest,
) -> Result<Kind, ApiError> {
    caller.audit("limits_set", &format!("{}={}", req.name, req.value));
    let limits = node
        .call(move |n| {
            n.set_limit(&req.name, &req.value)?;
            Ok(n.limits())
        })
        .await?;
    Ok(limit_list(limits))
}

fn entry(b: &Ban) -> BanEntry {
    BanEntry {
        target: b.target.to_string(),
        kind: b.target.kind().into(),
        reason: b.reason.clone(),
        created_unix: b.created_unix,
        expires_unix: b.expires_unix.unwrap_or(0),
        created_by: b.created_by.clone(),
    }
}

fn trust_list(peers: Vec<TrustedView>) -> Kind {
    Kind::TrustList(TrustList {
        peers: peers
            .into_iter()
            .map(|t| TrustedPeer {
                peer_id: t.peer.to_string(),
                addr: t.addr.map(|a| a.to_string()).unwrap_or_default(),
                connected: t.connected,
                source: t.source.into(),
            })
            .collect(),
    })
}

fn limit_list(limits: Vec<LimitView>) -> Kind {
    Kind::LimitList(LimitList {
        limits: limits
            .into_iter()
            .map(|l| LimitEntry {
                name: l.name.into(),
                value: l.value,
                usage: l.usage.unwrap_or_default(),
                percent: l.percent.unwrap_or(-1.0),
                source: l.source,
            })
            .collect(),
    })
}
