//! The durable side of the ban list: one writer task owns `bans.json` and `bans.journal`.
//!
//! A change is acknowledged only after it is durable: while the list is small (up to
//! [`SMALL_LIST`] bans) the whole list is written by atomic replace (fsync'd file and
//! directory), so `bans.json` is always current; a larger list takes each change as one line
//! appended to the journal (fsync'd), and `bans.json` is rewritten (compaction) only once the
//! journal holds as many changes as the list has bans, so a change costs the same with 2,000
//! bans or 100,000. A restart loads `bans.json` and replays the journal. Changes that arrive
//! while a write is in flight are written together by the next one (group commit). The writer
//! also remembers what it last wrote to `bans.json`: a reload compares the file with that, so
//! what an operator edited by hand is told apart from changes made since (see [`Edits`]).
//!
//! When a write fails (disk full, read-only), the changes it carried are refused and memory must
//! not keep them: the writer moves to a new *epoch* and hands the node the list that is on disk
//! ([`Revert`]); writes made before the node took it back (older epochs) are refused too, so
//! memory never holds what a restart would not load.

use super::bans::{journal_path, Ban, BanList, BanTarget, Change};
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

/// Up to this many bans the whole list is rewritten per change; beyond, changes are journalled.
pub const SMALL_LIST: usize = 1024;
/// The journal is compacted into `bans.json` once it has this many lines, or as many as the
/// list has bans if that is more.
const MIN_COMPACTION: usize = 4096;

enum Job {
    Write {
        changes: Vec<Change>,
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

    /// The changes that make a list what the edits say.
    pub fn changes(&self) -> Vec<Change> {
        let bans = self.bans.iter().map(|b| Change::Ban { ban: b.clone() });
        let unbans = self
            .unbans
            .iter()
            .map(|t| Change::Unban { target: t.clone() });
        let trusted = self.trusted.iter().map(|p| Change::Trust {
            peer: p.to_string(),
        });
        let untrusted = self.untrusted.iter().map(|p| Change::Untrust {
            peer: p.to_string(),
        });
        unbans.chain(bans).chain(untrusted).chain(trusted).collect()
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

    /// Queues `changes` (made in `epoch`) for writing; `ack` runs once they are on disk, or
    /// with the reason they are not.
    pub fn save(&self, changes: Vec<Change>, epoch: u64, ack: Option<Ack>) {
        if let Err(mpsc::error::SendError(Job::Write { ack: Some(ack), .. })) =
            self.tx.send(Job::Write {
                changes,
                epoch,
                ack,
            })
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

/// Who wrote `bans.json` last, told cheaply: its inode (atomic replace makes a new one), size
/// and modification time in nanoseconds.
type Stamp = (u64, u64, i128);

fn stamp(path: &std::path::Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    let mtime = i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
    Some((m.ino(), m.len(), mtime))
}

/// The writer's memory: the list as a restart would load it, what `bans.json` holds, and
/// operator edits not yet applied by a reload.
struct Writer {
    path: PathBuf,
    /// `bans.json` and the journal together.
    written: BanList,
    /// What `bans.json` holds (as p2pd wrote it, or as an operator edited it).
    snapshot: BanList,
    stamp: Option<Stamp>,
    journal_lines: usize,
    unapplied: Edits,
}

/// What undoes `change` on `list` (as it is before the change).
fn inverse(change: &Change, list: &BanList) -> Option<Change> {
    match change {
        Change::Ban { ban } => Some(match list.get(&ban.target) {
            Some(old) => Change::Ban { ban: old.clone() },
            None => Change::Unban {
                target: ban.target.clone(),
            },
        }),
        Change::Unban { target } => list.get(target).map(|old| Change::Ban { ban: old.clone() }),
        Change::Trust { peer } => peer
            .parse()
            .ok()
            .filter(|p| !list.trusted.contains(p))
            .map(|_| Change::Untrust { peer: peer.clone() }),
        Change::Untrust { peer } => peer
            .parse()
            .ok()
            .filter(|p| list.trusted.contains(p))
            .map(|_| Change::Trust { peer: peer.clone() }),
    }
}

/// Appends `lines` to the journal and syncs it; on failure the journal is cut back to where it
/// was, so no half-written change is left behind.
fn append(journal: &std::path::Path, lines: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(journal)?;
    let before = f.metadata()?.len();
    let written = f.write_all(lines).and_then(|()| f.sync_data());
    if written.is_err() {
        let _ = f.set_len(before).and_then(|()| f.sync_data());
    }
    written
}

impl Writer {
    /// Reads the file if someone changed it since our last write, and keeps what they edited,
    /// so that our next write cannot lose it before a reload applies it.
    async fn collect_edits(&mut self) {
        let now = stamp(&self.path);
        if now == self.stamp {
            return;
        }
        let p = self.path.clone();
        let read = tokio::task::spawn_blocking(move || {
            let bytes = std::fs::read(&p).ok()?;
            Some(serde_json::from_slice::<BanList>(&bytes))
        })
        .await
        .ok()
        .flatten();
        let Some(parsed) = read else {
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
        let edits = Edits::between(&self.snapshot, &file);
        if !edits.is_empty() {
            tracing::info!(path = %self.path.display(), "bans.json was edited by hand; the edits apply at the next reload");
        }
        self.unapplied.then(edits);
        self.snapshot = file;
        self.stamp = now;
    }

    async fn write(&mut self, changes: Vec<Change>) -> Result<(), String> {
        self.collect_edits().await;
        // Applied first (the compaction writes the result); undone if the write fails.
        let mut undo = Vec::with_capacity(changes.len());
        for c in &changes {
            undo.extend(inverse(c, &self.written));
            c.apply(&mut self.written);
        }
        let journal = journal_path(&self.path);
        let compact = self.written.len() <= SMALL_LIST
            || self.journal_lines + changes.len() > self.written.len().max(MIN_COMPACTION);
        let result = if compact {
            let list = std::mem::take(&mut self.written);
            let path = self.path.clone();
            let journalled = self.journal_lines > 0 || journal.exists();
            let (list, saved) = tokio::task::spawn_blocking(move || {
                let saved = list.save(&path).and_then(|_| {
                    // The journal's changes are in the file now; a crash before this replays
                    // them onto it, which changes nothing.
                    if journalled {
                        crate::persist::replace(&journal, b"", 0o600)?;
                    }
                    Ok(())
                });
                (list, saved)
            })
            .await
            .map_err(|e| format!("the ban list writer failed: {e}"))?;
            self.written = list;
            if saved.is_ok() {
                self.snapshot = self.written.clone();
                self.stamp = stamp(&self.path);
                self.journal_lines = 0;
            }
            saved
        } else {
            let mut lines = Vec::new();
            for c in &changes {
                serde_json::to_writer(&mut lines, c).map_err(|e| e.to_string())?;
                lines.push(b'\n');
            }
            let appended = tokio::task::spawn_blocking(move || append(&journal, &lines))
                .await
                .map_err(|e| format!("the ban list writer failed: {e}"))?;
            if appended.is_ok() {
                self.journal_lines += changes.len();
            }
            appended
        };
        result.map_err(|e| {
            for c in undo.iter().rev() {
                c.apply(&mut self.written);
            }
            tracing::error!(path = %self.path.display(), error = %e, "cannot save the ban list (disk full or read-only?); the changes it carried are refused and undone");
            format!(
                "not done: {} could not be written ({e}); free space or make it writable, then retry",
                self.path.display()
            )
        })
    }
}

async fn writer(
    path: PathBuf,
    loaded: BanList,
    mut rx: mpsc::UnboundedReceiver<Job>,
    on_failure: OnFailure,
) {
    // What bans.json holds alone (without the journal), to tell an operator's edits apart.
    let snapshot = {
        let p = path.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::read(&p)
                .ok()
                .and_then(|b| serde_json::from_slice::<BanList>(&b).ok())
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
    };
    let journal_lines = std::fs::read(journal_path(&path))
        .map(|b| b.iter().filter(|c| **c == b'\n').count())
        .unwrap_or(0);
    let mut w = Writer {
        stamp: stamp(&path),
        path,
        written: loaded,
        snapshot,
        journal_lines,
        unapplied: Edits::default(),
    };
    let mut epoch = 0;
    let mut last_failure = String::new();
    while let Some(job) = rx.recv().await {
        let mut changes = Vec::new();
        let mut acks = Vec::new();
        let mut stale = Vec::new();
        let mut queries = Vec::new();
        let mut flushes = Vec::new();
        let mut take = |job: Job| match job {
            Job::Write {
                changes: c,
                epoch: e,
                ack,
            } if e == epoch => {
                changes.extend(c);
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
        if !changes.is_empty() || !acks.is_empty() {
            let result = w.write(changes).await;
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

    /// A list of `n` IP bans (10.0.0.0 on).
    fn listed(n: usize) -> BanList {
        let mut list = BanList::default();
        for i in 0..n as u32 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            list.add(ban(&ip.to_string(), "x"));
        }
        list
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
            let b = ban(&format!("192.0.2.{i}"), "x");
            list.add(b.clone());
            let (ack, rx) = ack_channel();
            store.save(vec![Change::Ban { ban: b }], 0, Some(ack));
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
        // The next change rewrites it.
        let again = list.iter().next().cloned().unwrap();
        store.save(vec![Change::Ban { ban: again }], 0, None);
        store.flush().await;
        assert_eq!(BanList::load(&path), list);
    }

    /// A large list takes changes as journal lines: a restart replays them, a line cut short by
    /// a crash ends the replay, and compaction folds the journal into the file.
    #[tokio::test]
    async fn large_lists_journal_their_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bans.json");
        let journal = journal_path(&path);
        let mut list = listed(SMALL_LIST + 10);
        list.save(&path).unwrap();
        let store = BanStore::start(path.clone(), list.clone(), ignore_failures());
        let size = std::fs::metadata(&path).unwrap().len();
        let (ack, rx) = ack_channel();
        let extra = ban("192.0.2.200", "journalled");
        store.save(vec![Change::Ban { ban: extra.clone() }], 0, Some(ack));
        rx.await.unwrap().unwrap();
        // Acknowledged from the journal: bans.json was not rewritten.
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
        assert_eq!(
            std::fs::read_to_string(&journal).unwrap().lines().count(),
            1
        );
        list.add(extra.clone());
        assert_eq!(BanList::load(&path), list);
        // A torn last line (a crash mid-append, never acknowledged) is ignored.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&journal)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"op\":\"ban\",\"ba"))
            .unwrap();
        assert_eq!(BanList::load(&path), list);
        std::fs::write(&journal, b"").unwrap();
        // Enough changes and the journal is folded into the file.
        let unbans: Vec<Change> = list
            .iter()
            .take(SMALL_LIST / 2)
            .map(|b| Change::Unban {
                target: b.target.clone(),
            })
            .collect();
        for c in &unbans {
            c.apply(&mut list);
        }
        let (ack, rx) = ack_channel();
        store.save(vec![Change::Ban { ban: extra }], 0, None);
        store.save(unbans, 0, Some(ack));
        rx.await.unwrap().unwrap();
        // The list fell under SMALL_LIST: written whole, journal emptied.
        assert_eq!(BanList::load(&path), list);
        let on_disk: BanList = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(on_disk, list);
        assert_eq!(std::fs::read(&journal).unwrap(), b"");
    }

    /// A journal append that fails refuses the change, and the writer hands back the list
    /// without it.
    #[tokio::test]
    async fn a_failed_journal_append_is_refused_and_undone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bans.json");
        let list = listed(SMALL_LIST + 1);
        list.save(&path).unwrap();
        // The journal cannot be opened for appending: a directory is in its place.
        std::fs::create_dir(journal_path(&path)).unwrap();
        let (tx, mut reverted) = tokio::sync::mpsc::unbounded_channel();
        let on_failure: OnFailure = Box::new(move |r: Revert| {
            let _ = tx.send(r);
            Box::pin(async {})
        });
        let store = BanStore::start(path.clone(), list.clone(), on_failure);
        let (ack, rx) = ack_channel();
        store.save(
            vec![Change::Ban {
                ban: ban("192.0.2.1", "refused"),
            }],
            0,
            Some(ack),
        );
        let e = rx.await.unwrap().unwrap_err();
        assert!(e.contains("could not be written"), "{e}");
        let r = reverted.recv().await.unwrap();
        assert_eq!((r.epoch, r.list), (1, list));
    }
}
