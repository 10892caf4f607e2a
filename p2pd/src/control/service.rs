//! `reload` and `log-level`: the service's own settings.

use super::{Caller, Ctx};
use crate::node::Code;
use crate::node::{ApiError, Reloaded};
use p2pd_proto::control::{response::Kind, Ack, LogLevelRequest, ReloadResponse};

/// Re-reads the config and applies it, as SIGHUP does; answers once applied or refused.
pub async fn reload(ctx: &Ctx, caller: &Caller) -> Result<Kind, ApiError> {
    caller.audit("reload", "");
    let by = format!("uid {}", caller.uid);
    let r: Reloaded = ctx.reloader.reload(&by).await?;
    Ok(Kind::Reload(ReloadResponse {
        message: r.message,
        restart_needed: r.restart_needed,
    }))
}

/// Replaces the log filter until the next reload or restart.
pub fn log_level(caller: &Caller, req: LogLevelRequest) -> Result<Kind, ApiError> {
    caller.audit("log_level", &req.filter);
    crate::logging::set_filter(&req.filter)
        .map(|()| Kind::Ack(Ack {}))
        .map_err(|e| ApiError::new(Code::BadRequest, e))
}
