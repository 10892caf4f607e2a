//! `ban`, `unban`, `bans`, `trust add|rm|ls`, `limits`, `limits set`.

use super::Caller;
use crate::config::values::PeerRef;
use crate::node::Code;
use crate::node::{ApiError, LimitView, NodeHandle, TrustAction, TrustedView};
use crate::policy::bans::{Ban, BanTarget};
use p2pd_proto::control::{
    response::Kind, trust_request::Action, BanEntry, BanImportRequest, BanImportResponse, BanList,
    BanRequest, BansRequest, LimitEntry, LimitList, LimitsSetRequest, RejectedTarget, TrustList,
    TrustRequest, TrustedPeer, UnbanRequest,
};
use std::time::Duration;

/// The longest timed ban: 100 years. A permanent ban is its own value (no expiry).
pub const MAX_BAN_SECS: u64 = 100 * 365 * 86_400;

fn target(s: &str) -> Result<BanTarget, ApiError> {
    s.parse()
        .map_err(|e: String| ApiError::new(Code::BadRequest, e))
}

/// A ban's duration on the wire (seconds, 0 = permanent), checked.
fn duration(secs: u64) -> Result<Option<Duration>, ApiError> {
    if secs > MAX_BAN_SECS {
        return Err(ApiError::new(
            Code::BadRequest,
            format!(
                "a timed ban lasts at most 100 years ({MAX_BAN_SECS} s; {secs} s asked); leave out --for for a permanent ban"
            ),
        ));
    }
    Ok((secs > 0).then(|| Duration::from_secs(secs)))
}

pub async fn ban(node: &NodeHandle, caller: &Caller, req: BanRequest) -> Result<Kind, ApiError> {
    caller.audit("ban", &req.target);
    let target = target(&req.target)?;
    let duration = duration(req.duration_secs)?;
    let by = format!("uid {}", caller.uid);
    let reason = req.reason;
    let ban = node
        .ask(move |n, reply| n.ban(target, duration, reason, by, reply))
        .await?;
    Ok(Kind::BanList(BanList {
        bans: vec![entry(&ban)],
        total: 1,
    }))
}

/// Many bans as one change: targets parsed here (off the event loop), added together, and
/// acknowledged once all are durable; the ones that cannot be banned are listed with why.
pub async fn ban_import(
    node: &NodeHandle,
    caller: &Caller,
    req: BanImportRequest,
) -> Result<Kind, ApiError> {
    caller.audit("ban_import", &format!("{} targets", req.targets.len()));
    let duration = duration(req.duration_secs)?;
    let mut rejected = Vec::new();
    let mut targets = Vec::with_capacity(req.targets.len());
    for t in req.targets {
        match t.parse::<BanTarget>() {
            Ok(target) => targets.push(target),
            Err(e) => rejected.push(RejectedTarget {
                target: t,
                reason: e,
            }),
        }
    }
    let by = format!("uid {}", caller.uid);
    let reason = req.reason;
    let (accepted, refused) = node
        .ask(move |n, reply| n.ban_many(targets, duration, reason, by, reply))
        .await?;
    rejected.extend(refused.into_iter().map(|(t, why)| RejectedTarget {
        target: t.to_string(),
        reason: why,
    }));
    Ok(Kind::BanImport(BanImportResponse {
        accepted: u32::try_from(accepted).unwrap_or(u32::MAX),
        rejected,
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

pub async fn bans(node: &NodeHandle, req: BansRequest) -> Result<Kind, ApiError> {
    let page = p2pd_proto::limits::BANS_PAGE;
    let limit = match req.limit as usize {
        0 => page,
        n => n.min(page),
    };
    let offset = req.offset as usize;
    let (bans, total) = node.call(move |n| Ok(n.bans_page(offset, limit))).await?;
    Ok(Kind::BanList(BanList {
        bans: bans.iter().map(entry).collect(),
        total: u32::try_from(total).unwrap_or(u32::MAX),
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
