//! The durable side of the ban list: one writer task owns `bans.json`.
//!
//! A change is acknowledged only after the list that contains it has been written by atomic
//! replace (fsync'd file and directory). Changes that arrive while a write is in flight are
//! written together by the next one (group commit), so a burst of bans costs a few writes, not
//! one each. The writer also remembers what it last wrote: a reload compares the file with that,
//! so what an operator edited by hand is told apart from changes made since (see [`Edits`]).
//!
//! When a write fails (disk full, read-only), the changes it carried are refused and memory must
//! not keep them: the writer moves to a new *epoch* and hands the node the list that is on disk
//! ([`Revert`]); writes made before the node took it back (older epochs) are refused too, so
//! memory never holds what a restart would not load.

use super::bans::{Ban, BanList, BanTarget};
use libp2p::PeerId;
use std::path::PathBuf;
use tokio::sync::{mpsc, oneshot};

/// Called with the outcome of the write that carried a change.
pub type Ack = Box<dyn FnOnce(Result<(), String>) + Send>;

/// An [`Ack`] whose outcome arrives on the returned receiver.
pub fn ack_channel() -> (Ack, oneshot::Receiver<Result<(), String>>) {
    let (tx, rx) = oneshot::channel();
    (
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
        rx,
    )
}

enum Job {
    Write {
        list: BanList,
        epoch: u64,
        ack: Option<Ack>,
    },
    Edits(oneshot::Sender<Edits>),
    Flush(oneshot::Sender<()>),
}

/// What an operator changed in the file since p2pd last wrote it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Edits {
    pub bans: Vec<Ban>,
    pub unbans: Vec<BanTarget>,
    pub trusted: Vec<PeerId>,
    pub untrusted: Vec<PeerId>,
}

impl Edits {
    pub fn is_empty(&self) -> bool {
        *self == Edits::default()
    }

    /// Adds `later` on top: for each target, the later edit wins.
    fn then(&mut self, later: Edits) {
        for b in later.bans {
            self.unbans.retain(|t| *t != b.target);
            self.bans.retain(|x| x.target != b.target);
            self.bans.push(b);
        }
        for t in later.unbans {
            self.bans.retain(|x| x.target != t);
            if !self.unbans.contains(&t) {
                self.unbans.push(t);
            }
        }
        for p in later.trusted {
            self.untrusted.retain(|x| *x != p);
            if !self.trusted.contains(&p) {
                self.trusted.push(p);
            }
        }
        for p in later.untrusted {
            self.trusted.retain(|x| *x != p);
            if !self.untrusted.contains(&p) {
                self.untrusted.push(p);
            }
        }
    }

    /// The difference from `written` (what p2pd wrote) to `file` (what is there now).
    pub fn between(written: &BanList, file: &BanList) -> Edits {
        Edits {
            bans: file
                .iter()
                .filter(|b| written.get(&b.target) != Some(b))
                .cloned()
                .collect(),
            unbans: written
                .iter()
                .filter(|w| file.get(&w.target).is_none())
                .map(|w| w.target.clone())
                .collect(),
            trusted: file.trusted.difference(&written.trusted).copied().collect(),
            untrusted: written.trusted.difference(&file.trusted).copied().collect(),
        }
    }
}

/// What the writer asks of the node after a failed write: go back to `list`, the list on disk,
/// and tag later writes with `epoch`.
#[derive(Debug)]
pub struct Revert {
    pub list: BanList,
    pub epoch: u64,
}

/// Hands a [`Revert`] to the node; resolves once the node has it queued.
pub type OnFailure = Box<dyn Fn(Revert) -> futures::future::BoxFuture<'static, ()> + Send + Sync>;

#[derive(Clone)]
pub struct BanStore {
    tx: mpsc::UnboundedSender<Job>,
}

impl BanStore {
    /// Starts the writer for `path`, which holds `loaded` (what start-up read from it).
    pub fn start(path: PathBuf, loaded: BanList, on_failure: OnFailure) -> BanStore {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer(path, loaded, rx, on_failure));
        BanStore { tx }
    }

    /// Queues `list` (made in `epoch`) for writing; `ack` runs once it is on disk, or with the
    /// reason it is not.
    pub fn save(&self, list: BanList, epoch: u64, ack: Option<Ack>) {
        if let Err(mpsc::error::SendError(Job::Write { ack: Some(ack), .. })) =
            self.tx.send(Job::Write { list, epoch, ack })
        {
            ack(Err("the ban list writer has stopped".into()));
        }
    }

    /// Waits until every change sent before has been written.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Job::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Reads the file and returns what was edited in it since p2pd last wrote it.
    pub async fn edits(&self) -> Edits {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Job::Edits(tx)).is_err() {
            return Edits::default();
        }
        rx.await.unwrap_or_default()
    }
}

type Stamp = [u8; 32];

/// A digest of the file's bytes, to notice that someone else wrote it (size and time stamps can
/// repeat within a clock tick).
fn digest(bytes: &[u8]) -> Stamp {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

fn stamp(path: &std::path::Path) -> Option<Stamp> {
    std::fs::read(path).ok().map(|b| digest(&b))
}

/// The writer's memory: what it last wrote, and operator edits not yet applied by a reload.
struct Writer {
    path: PathBuf,
    written: BanList,
    stamp: Option<Stamp>,
    unapplied: Edits,
}

impl Writer {
    /// Reads the file if someone changed it since our last write, and keeps what they edited,
    /// so that our next write cannot lose it before a reload applies it.
    async fn collect_edits(&mut self) {
        let p = self.path.clone();
        let known = self.stamp;
        let read = tokio::task::spawn_blocking(move || {
            let bytes = std::fs::read(&p).ok()?;
            let now = Some(digest(&bytes));
            (now != known).then(|| (serde_json::from_slice::<BanList>(&bytes), now))
        })
        .await
        .ok()
        .flatten();
        let Some((parsed, now)) = read else {
            return;
        };
        let file = match parsed {
            Ok(file) => file,
            Err(e) => {
                // A half-finished edit must not read as "no bans at all".
                tracing::error!(path = %self.path.display(), error = %e, "bans.json was edited by hand and does not parse; the edit is ignored (fix the file and reload; p2pd rewrites it on its next change)");
                return;
            }
        };
        {
            let edits = Edits::between(&self.written, &file);
            if !edits.is_empty() {
                tracing::info!(path = %self.path.display(), "bans.json was edited by hand; the edits apply at the next reload");
            }
            self.unapplied.then(edits);
            self.written = file;
            self.stamp = now;
        }
    }

    async fn write(&mut self, list: BanList) -> Result<(), String> {
        self.collect_edits().await;
        let p = self.path.clone();
        let copy = list.clone();
        let save = move || copy.save(&p).map(|written| digest(&written));
        match tokio::task::spawn_blocking(save).await {
            Ok(Ok(now)) => {
                self.written = list;
                self.stamp = Some(now);
                Ok(())
            }
            Ok(Err(e)) => {
                tracing::error!(path = %self.path.display(), error = %e, "cannot save the ban list (disk full or read-only?); the changes it carried are refused and undone");
                Err(format!(
                    "not done: {} could not be written ({e}); free space or make it writable, then retry",
                    self.path.display()
                ))
            }
            Err(e) => Err(format!("the ban list writer failed: {e}")),
        }
    }
}

async fn writer(
    path: PathBuf,
    loaded: BanList,
    mut rx: mpsc::UnboundedReceiver<Job>,
    on_failure: OnFailure,
) {
    let mut w = Writer {
        stamp: stamp(&path),
        path,
        written: loaded,
        unapplied: Edits::default(),
    };
    let mut epoch = 0;
    let mut last_failure = String::new();
    while let Some(job) = rx.recv().await {
        let mut newest = None;
        let mut acks = Vec::new();
        let mut stale = Vec::new();
        let mut queries = Vec::new();
        let mut flushes = Vec::new();
        let mut take = |job: Job| match job {
            Job::Write {
                list,
                epoch: e,
                ack,
            } if e == epoch => {
                newest = Some(list);
                acks.extend(ack);
            }
            // Made before the node went back to the list on disk: it carries refused changes.
            Job::Write { ack, .. } => stale.extend(ack),
            Job::Edits(reply) => queries.push(reply),
            Job::Flush(reply) => flushes.push(reply),
        };
        take(job);
        while let Ok(job) = rx.try_recv() {
            take(job);
        }
        for ack in stale {
            ack(Err(last_failure.clone()));
        }
        if let Some(list) = newest {
            let result = w.write(list).await;
            if let Err(e) = &result {
                epoch += 1;
                last_failure = e.clone();
                // Memory goes back to what is on disk before anyone hears of the failure.
                on_failure(Revert {
                    list: w.written.clone(),
                    epoch,
                })
                .await;
            }
            for ack in acks {
                ack(result.clone());
            }
        }
        if !queries.is_empty() {
            w.collect_edits().await;
            let edits = std::mem::take(&mut w.unapplied);
            for reply in queries {
                let _ = reply.send(edits.clone());
            }
        }
        for reply in flushes {
            let _ = reply.send(());
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    fn ban(t: &str, reason: &str) -> Ban {
        Ban {
            target: t.parse().unwrap(),
            reason: reason.into(),
            created_unix: 1,
            expires_unix: None,
            created_by: "uid 0".into(),
        }
    }

    pub fn ignore_failures() -> OnFailure {
        Box::new(|_| Box::pin(async {}))
    }

    #[test]
    fn edits_are_what_the_file_changed() {
        let p = PeerId::random();
        let q = PeerId::random();
        let mut written = BanList::default();
        written.add(ban("192.0.2.1", "a"));
        written.add(ban("192.0.2.2", "b"));
        written.trusted.insert(p);
        let mut file = written.clone();
        file.remove(&"192.0.2.1".parse().unwrap());
        file.add(ban("192.0.2.2", "edited"));
        file.add(ban("10.0.0.0/8", "new"));
        file.trusted.remove(&p);
        file.trusted.insert(q);
        let e = Edits::between(&written, &file);
        assert_eq!(e.unbans, vec!["192.0.2.1".parse().unwrap()]);
        assert_eq!(e.bans.len(), 2);
        assert_eq!((e.trusted, e.untrusted), (vec![q], vec![p]));
        assert!(Edits::between(&file, &file).is_empty());
    }

    #[tokio::test]
    async fn acknowledged_lists_are_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bans.json");
        let store = BanStore::start(path.clone(), BanList::default(), ignore_failures());
        let mut list = BanList::default();
        let mut waits = Vec::new();
        for i in 0..50 {
            list.add(ban(&format!("192.0.2.{i}"), "x"));
            let (ack, rx) = ack_channel();
            store.save(list.clone(), 0, Some(ack));
            waits.push((i, rx));
        }
        for (i, rx) in waits {
            rx.await.unwrap().unwrap();
            let on_disk = BanList::load(&path);
            assert!(
                on_disk.len() > i,
                "ban {i} acknowledged before it was written"
            );
        }
        assert!(store.edits().await.is_empty());
        // A hand edit that does not parse is not read as an empty list.
        std::fs::write(&path, b"{\"bans\": [").unwrap();
        assert!(store.edits().await.is_empty());
        store.save(list.clone(), 0, None);
        store.flush().await;
        assert_eq!(BanList::load(&path), list);
    }
}
