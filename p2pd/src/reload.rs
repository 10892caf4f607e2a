//! Reload (SIGHUP or `p2pctl reload`): tell the service manager, re-read and validate the config
//! the way start-up did, hand a valid one to the node, and report. An invalid config is refused
//! with the reason and the running one stays.

use crate::config::{self, Overrides};
use crate::node::Code;
use crate::node::{ApiError, NodeHandle, Reloaded};
use crate::sd::Notifier;
use p2pd_proto::paths::Mode;
use std::sync::Arc;

pub struct Reloader {
    mode: Mode,
    overrides: Overrides,
    node: NodeHandle,
    notifier: Arc<Notifier>,
    bans: crate::policy::store::BanStore,
    /// One reload at a time.
    running: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub fn new(
        mode: Mode,
        overrides: Overrides,
        node: NodeHandle,
        notifier: Arc<Notifier>,
        bans: crate::policy::store::BanStore,
    ) -> Self {
        Reloader {
            mode,
            overrides,
            node,
            notifier,
            bans,
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// Reloads; `by` says who asked ("SIGHUP", "uid 0").
    pub async fn reload(&self, by: &str) -> Result<Reloaded, ApiError> {
        let _one = self.running.lock().await;
        tracing::info!(event = "reload", by, "reloading the configuration");
        self.notifier.reloading();
        let result = match config::load(self.mode, &self.overrides, std::env::vars()) {
            Ok((cfg, _)) => {
                // What the operator edited in bans.json since p2pd last wrote it; changes made
                // since then stay (the file is p2pd's output, not its source of truth).
                let bans = self.bans.edits().await;
                let applied = self
                    .node
                    .call(move |node| Ok(node.apply_config(cfg, bans)))
                    .await;
                if let Ok(r) = &applied {
                    tracing::info!(event = "reload", result = %r.message, restart_needed = ?r.restart_needed, "configuration reloaded");
                }
                applied
            }
            Err(e) => {
                tracing::error!(event = "reload", error = %e, "reload refused; the running configuration stays");
                Err(ApiError::new(
                    Code::BadRequest,
                    format!("reload refused, the running configuration stays: {e}"),
                ))
            }
        };
        self.notifier.ready(match &result {
            Ok(_) => "configuration reloaded",
            Err(_) => {
                "reload refused: invalid configuration (see the log); running with the previous one"
            }
        });
        // The summary (peers, listen addresses) replaces this message at the node's next tick.
        self.node.tell(|node| node.status_changed()).await;
        result
    }
}
