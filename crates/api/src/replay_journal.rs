//! The replay guard's memory on disk, so that a request seen once is refused again after a
//! crsd restart (or a kill -9) for as long as its Timestamp is inside the window.
//!
//! Why a journal of its own and not a table: it is written on every signed request, and a
//! SQLite commit per request would put the whole API behind the store's one writer. Here a
//! request costs one `write(2)` of a fixed 24-byte record to a file opened `O_APPEND` (the page
//! cache keeps it across a crash of crsd; no fsync on the request path) and, at most once a
//! second, an `fdatasync` off the request's thread (a host crash loses at most that second).
//!
//! Records are `key (16 bytes) ‖ expires (i64 LE, unix seconds)`: the key is a SHA-256 prefix
//! of what was used (a SecretId and Nonce, or a TC3 signature), so the file holds no client
//! text and a record can never be mis-parsed. A torn last record (power loss mid-write) is
//! ignored. The journal is cut into segments, one per window: a segment opened at `start`
//! takes records until `start + window`, whose requests' Timestamps are at most one window in
//! the future, so every record in it has expired by `start + 3 × window`, when it is deleted.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub type Key = [u8; 16];

const RECORD: usize = 24;
const SYNC_EVERY: Duration = Duration::from_secs(1);

pub struct Journal {
    dir: PathBuf,
    window: i64,
    /// The segment records go to, and when it was opened (unix seconds, also its name).
    current: Option<(i64, File)>,
    last_sync: Instant,
    dirty: bool,
}

impl Journal {
    /// Opens the folder (made 0700 if missing) and returns the records that have not expired
    /// at `now`; segments that can hold nothing unexpired are deleted.
    pub fn open(dir: &Path, window: i64, now: i64) -> io::Result<(Journal, HashMap<Key, i64>)> {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let mut live = HashMap::new();
        for (start, path) in segments(dir)? {
            if start.saturating_add(window.saturating_mul(3)) < now {
                fs::remove_file(&path)?;
                continue;
            }
            let mut bytes = Vec::new();
            File::open(&path)?.read_to_end(&mut bytes)?;
            for rec in bytes.chunks_exact(RECORD) {
                let key: Key = rec[..16].try_into().expect("16 bytes");
                let expires = i64::from_le_bytes(rec[16..].try_into().expect("8 bytes"));
                if expires >= now {
                    let e = live.entry(key).or_insert(expires);
                    *e = (*e).max(expires);
                }
            }
        }
        let journal = Journal {
            dir: dir.to_path_buf(),
            window: window.max(1),
            current: None,
            last_sync: Instant::now(),
            dirty: false,
        };
        Ok((journal, live))
    }

    /// Appends one record; rotates and deletes old segments when a window has passed.
    pub fn append(&mut self, key: &Key, expires: i64, now: i64) -> io::Result<()> {
        let stale = self
            .current
            .as_ref()
            .is_none_or(|(start, _)| now >= start.saturating_add(self.window) || now < *start);
        if stale {
            self.rotate(now)?;
        }
        let (_, file) = self.current.as_mut().expect("a segment is open");
        let mut rec = [0u8; RECORD];
        rec[..16].copy_from_slice(key);
        rec[16..].copy_from_slice(&expires.to_le_bytes());
        file.write_all(&rec)?;
        self.dirty = true;
        if self.last_sync.elapsed() >= SYNC_EVERY {
            self.sync_in_background();
        }
        Ok(())
    }

    fn rotate(&mut self, now: i64) -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(self.dir.join(format!("{now}.log")))?;
        if let Some((_, old)) = self.current.replace((now, file)) {
            let _ = old.sync_data();
        }
        for (start, path) in segments(&self.dir)? {
            if start.saturating_add(self.window.saturating_mul(3)) < now {
                fs::remove_file(path)?;
            }
        }
        Ok(())
    }

    /// fdatasync of the current segment on a blocking thread (inline outside a runtime).
    fn sync_in_background(&mut self) {
        self.last_sync = Instant::now();
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        let Some(file) = self.current.as_ref().and_then(|(_, f)| f.try_clone().ok()) else {
            return;
        };
        let sync = move || {
            if let Err(e) = file.sync_data() {
                tracing::warn!(error = %e, "cannot sync the replay journal");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(sync)),
            Err(_) => sync(),
        }
    }
}

/// The segment files of `dir` as (start, path), in no particular order.
fn segments(dir: &Path) -> io::Result<Vec<(i64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let start = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<i64>().ok());
        if let Some(start) = start {
            out.push((start, path));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_until_they_expire() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, live) = Journal::open(dir.path(), 300, 1000).unwrap();
        assert!(live.is_empty());
        j.append(&[1; 16], 1300, 1000).unwrap();
        j.append(&[2; 16], 1100, 1000).unwrap();
        drop(j);
        let (_, live) = Journal::open(dir.path(), 300, 1200).unwrap();
        assert_eq!(live.get(&[1; 16]), Some(&1300));
        assert_eq!(live.get(&[2; 16]), None, "expired at 1100");
    }

    #[test]
    fn a_torn_record_is_ignored_and_old_segments_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path(), 10, 1000).unwrap();
        j.append(&[1; 16], 1010, 1000).unwrap();
        j.append(&[2; 16], 1025, 1015).unwrap(); // a new segment: 1015.log
        drop(j);
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("1015.log"))
            .unwrap();
        f.write_all(&[9; 7]).unwrap();
        let (_, live) = Journal::open(dir.path(), 10, 1020).unwrap();
        assert_eq!(live.len(), 1);
        assert_eq!(live.get(&[2; 16]), Some(&1025));
        // 1000.log can hold nothing unexpired after 1030.
        let (mut j, _) = Journal::open(dir.path(), 10, 1031).unwrap();
        assert!(!dir.path().join("1000.log").exists());
        j.append(&[3; 16], 1050, 1046).unwrap();
        assert!(!dir.path().join("1015.log").exists());
    }
}
