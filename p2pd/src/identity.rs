//! The node's identity: an ed25519 key created once in the data dir and reused on every start.

use anyhow::{bail, Context};
use libp2p::identity::Keypair;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

pub const FILE_NAME: &str = "identity.key";

/// Loads the key at `path`, creating it (mode 0600, atomically) if it does not exist.
pub fn load_or_create(path: &Path) -> anyhow::Result<Keypair> {
    match std::fs::read(path) {
        Ok(bytes) => decode(path, &bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            match write_new(path, &key) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), peer_id = %key.public().to_peer_id(), "created a new identity");
                    Ok(key)
                }
                // Another process created it between our read and write: use theirs.
                Err(e)
                    if e.downcast_ref::<std::io::Error>().map(|e| e.kind())
                        == Some(std::io::ErrorKind::AlreadyExists) =>
                {
                    load_or_create(path)
                }
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e).with_context(|| {
            format!(
                "cannot read the identity key {}; check that the p2pd user owns the data dir",
                path.display()
            )
        }),
    }
}

fn decode(path: &Path, bytes: &[u8]) -> anyhow::Result<Keypair> {
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "identity key is readable by others; fix with chmod 600");
        }
    }
    match Keypair::from_protobuf_encoding(bytes) {
        Ok(k) => Ok(k),
        Err(e) => bail!(
            "the identity key {} is unreadable ({e}); it is not moved aside because the node's PeerId depends on it: restore it from a backup, or delete it to start with a new PeerId",
            path.display()
        ),
    }
}

/// Writes a new key to `path`; fails if the file exists.
pub fn write_new(path: &Path, key: &Keypair) -> anyhow::Result<()> {
    let bytes = key
        .to_protobuf_encoding()
        .context("cannot encode the identity key")?;
    crate::persist::create_new(path, &bytes, 0o600).map_err(anyhow::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FILE_NAME);
        let a = load_or_create(&p).unwrap();
        let b = load_or_create(&p).unwrap();
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::write(&p, b"garbage").unwrap();
        let e = load_or_create(&p).unwrap_err().to_string();
        assert!(e.contains("unreadable"), "{e}");
    }
}
