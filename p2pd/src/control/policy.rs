//! `ban`, `unban`, `bans`, `trust add|rm|ls`, `limits`, `limits set`.

use super::Caller;
use crate::config::values::PeerRef;
use crate::node::{ApiError, Command, NodeHandle, TrustAction};
use crate::policy::bans::BanTarget;
use p2pd_proto::control::{
    response::Kind, trust_request::Action, BanRequest, ErrorCode, LimitsSetRequest, TrustRequest,
    UnbanRequest,
};
use std::time::Duration;

/// The longest ban reason: it is stored, listed and logged.
pub const MAX_REASON_BYTES: usize = 1024;

/// The longest timed ban: 100 years. A permanent ban is its own value (no expiry).
pub const MAX_BAN_SECS: u64 = 100 * 365 * 86_400;

fn target(s: &str) -> Result<BanTarget, ApiError> {
    s.parse()
        .map_err(|e: String| ApiError::new(ErrorCode::BadRequest, e))
}

pub async fn ban(node: &NodeHandle, caller: &Caller, req: BanRequest) -> Result<Kind, ApiError> {
    caller.audit("ban", &req.target);
    let target = target(&req.target)?;
    if req.reason.len() > MAX_REASON_BYTES {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!(
                "the reason is {} bytes long; at most {MAX_REASON_BYTES} are kept",
                req.reason.len()
            ),
        ));
    }
    if req.duration_secs > MAX_BAN_SECS {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!(
                "a timed ban lasts at most 100 years ({MAX_BAN_SECS} s; {} s asked); leave out --for for a permanent ban",
                req.duration_secs
            ),
        ));
    }
    let duration = (req.duration_secs > 0).then(|| Duration::from_secs(req.duration_secs));
    let by = format!("uid {}", caller.uid);
    let e = node
        .ask(|reply| Command::Ban {
            target,
            duration,
            reason: req.reason,
            by,
            reply,
        })
        .await?;
    Ok(Kind::BanList(p2pd_proto::control::BanList {
        bans: vec![e],
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
    node.ask(|reply| Command::Unban { target, by, reply })
        .await?;
    Ok(Kind::Ack(p2pd_proto::control::Ack {}))
}

pub async fn bans(node: &NodeHandle) -> Result<Kind, ApiError> {
    node.ask(Command::Bans).await.map(Kind::BanList)
}

pub async fn trust(
    node: &NodeHandle,
    caller: &Caller,
    req: TrustRequest,
) -> Result<Kind, ApiError> {
    let bad = |e: String| ApiError::new(ErrorCode::BadRequest, e);
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
    node.ask(|reply| Command::Trust { action, reply })
        .await
        .map(Kind::TrustList)
}

pub async fn limits(node: &NodeHandle) -> Result<Kind, ApiError> {
    node.ask(Command::Limits).await.map(Kind::LimitList)
}

pub async fn limits_set(
    node: &NodeHandle,
    caller: &Caller,
    req: LimitsSetRequest,
) -> Result<Kind, ApiError> {
    caller.audit("limits_set", &format!("{}={}", req.name, req.value));
    node.ask(|reply| Command::LimitsSet {
        name: req.name,
        value: req.value,
        reply,
    })
    .await
    .map(Kind::LimitList)
}
