//! The shim's side of container logs: splits stdout/stderr bytes into lines and appends CRI
//! records to the log file, rotating by size (`path` -> `path.1` -> ... up to `max_files`).
//! Log files are 0640. While the filesystem has less free space than the configured floor,
//! records are dropped and counted; a marker line says how much was lost once space is back.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::container::log::{Stream, format_line, rotated_path};
use crate::container::spec::LogConfig;

/// Longest line kept whole; longer lines are written as `P` chunks of this size.
pub const MAX_LINE: usize = 16 * 1024;

/// How many bytes are written between two free-space checks.
const CHECK_EVERY_BYTES: u64 = 256 * 1024;
/// How often free space is checked again while below the floor.
const RECHECK_BELOW: Duration = Duration::from_secs(1);

/// Appends CRI records to the container's log with size-based rotation.
pub struct LogWriter {
    path: PathBuf,
    max_size: u64,
    max_files: u32,
    min_free: u64,
    /// Bytes written since the last free-space check.
    since_check: u64,
    /// Below the floor since this check: records are dropped.
    below_since: Option<Instant>,
    /// Bytes dropped while below the floor, not yet reported in the log.
    dropped: u64,
    file: File,
    size: u64,
}

impl LogWriter {
    pub fn open(config: &LogConfig) -> std::io::Result<Self> {
        if let Some(parent) = config.path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = open_log(&config.path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            path: config.path.clone(),
            max_size: config.max_size_bytes.max(1),
            max_files: config.max_files.max(1),
            min_free: config.min_free_bytes,
            since_check: CHECK_EVERY_BYTES,
            below_since: None,
            dropped: 0,
            file,
            size,
        })
    }

    /// Writes one record, rotating first when it would push the file past the size limit.
    pub fn write(
        &mut self,
        now: SystemTime,
        stream: Stream,
        partial: bool,
        text: &[u8],
    ) -> std::io::Result<()> {
        let record = format_line(now, stream, partial, text);
        if !self.room_for(record.len() as u64) {
            self.dropped += record.len() as u64;
            return Ok(());
        }
        if self.dropped > 0 {
            let note = format!(
                "skiff: {} bytes of log were dropped while the disk had less than {} bytes free",
                self.dropped, self.min_free
            );
            self.dropped = 0;
            self.append(format_line(now, Stream::Stderr, false, note.as_bytes()))?;
        }
        self.append(record)
    }

    /// Whether the filesystem has room above the floor (checked every `CHECK_EVERY_BYTES`,
    /// and at most once per `RECHECK_BELOW` while below it).
    fn room_for(&mut self, len: u64) -> bool {
        if self.min_free == 0 {
            return true;
        }
        self.since_check += len;
        let due = match self.below_since {
            Some(at) => at.elapsed() >= RECHECK_BELOW,
            None => self.since_check >= CHECK_EVERY_BYTES,
        };
        if due {
            self.since_check = 0;
            let free = free_bytes(&self.path);
            self.below_since = (free < self.min_free).then(Instant::now);
        }
        self.below_since.is_none()
    }

    fn append(&mut self, record: Vec<u8>) -> std::io::Result<()> {
        if self.size > 0 && self.size + record.len() as u64 > self.max_size {
            self.rotate()?;
        }
        self.file.write_all(&record)?;
        self.size += record.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        if self.max_files == 1 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        let oldest = rotated_path(&self.path, self.max_files - 1);
        match std::fs::remove_file(&oldest) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        for n in (1..self.max_files - 1).rev() {
            let from = rotated_path(&self.path, n);
            if from.exists() {
                std::fs::rename(&from, rotated_path(&self.path, n + 1))?;
            }
        }
        std::fs::rename(&self.path, rotated_path(&self.path, 1))?;
        self.file = open_log(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

fn open_log(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

/// Free bytes (for unprivileged users too, as df shows) on the filesystem of `path`; when it
/// cannot be read, as much as there could be (never stop logging on a failed check).
fn free_bytes(path: &Path) -> u64 {
    let dir = path.parent().unwrap_or(path);
    match nix::sys::statvfs::statvfs(dir) {
        Ok(s) => s.blocks_available() * s.fragment_size(),
        Err(_) => u64::MAX,
    }
}

/// Cuts a byte stream into lines: complete lines, and `MAX_LINE` chunks of overlong ones.
#[derive(Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes; calls `emit(text, partial)` for every finished line or chunk.
    pub fn push<E>(
        &mut self,
        data: &[u8],
        emit: &mut impl FnMut(&[u8], bool) -> Result<(), E>,
    ) -> Result<(), E> {
        self.buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(nl) = self.buf[start..].iter().position(|b| *b == b'\n') {
            let line = &self.buf[start..start + nl];
            if line.is_empty() {
                emit(b"", false)?;
            }
            let mut chunks = line.chunks(MAX_LINE).peekable();
            while let Some(chunk) = chunks.next() {
                emit(chunk, chunks.peek().is_some())?;
            }
            start += nl + 1;
        }
        self.buf.drain(..start);
        while self.buf.len() >= MAX_LINE {
            let chunk: Vec<u8> = self.buf.drain(..MAX_LINE).collect();
            emit(&chunk, true)?;
        }
        Ok(())
    }

    /// Flushes an unterminated last line as a full record (the stream ended).
    pub fn finish<E>(
        &mut self,
        emit: &mut impl FnMut(&[u8], bool) -> Result<(), E>,
    ) -> Result<(), E> {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            emit(&rest, false)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::log::read_log;

    fn split(input: &[&[u8]]) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        let mut s = LineSplitter::default();
        let mut emit = |t: &[u8], p: bool| -> Result<(), ()> {
            out.push((String::from_utf8_lossy(t).into_owned(), p));
            Ok(())
        };
        for chunk in input {
            s.push(chunk, &mut emit).unwrap();
        }
        s.finish(&mut emit).unwrap();
        out
    }

    #[test]
    fn splits_lines_across_reads() {
        let got = split(&[b"a\nb", b"c\n\nd"]);
        let want = [("a", false), ("bc", false), ("", false), ("d", false)];
        assert_eq!(got, want.map(|(t, p)| (t.to_string(), p)));
    }

    #[test]
    fn long_lines_become_partial_chunks() {
        let long = vec![b'x'; MAX_LINE * 2 + 5];
        let mut input = long.clone();
        input.push(b'\n');
        let got = split(&[&input]);
        assert_eq!(
            got.iter().map(|(t, p)| (t.len(), *p)).collect::<Vec<_>>(),
            [(MAX_LINE, true), (MAX_LINE, true), (5, false)]
        );
    }

    #[test]
    fn rotates_and_keeps_at_most_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            path: dir.path().join("c.log"),
            max_size_bytes: 200,
            max_files: 3,
            min_free_bytes: 0,
        };
        let mut w = LogWriter::open(&config).unwrap();
        for i in 0..40 {
            w.write(
                SystemTime::now(),
                Stream::Stdout,
                false,
                format!("line {i:02}").as_bytes(),
            )
            .unwrap();
        }
        assert!(rotated_path(&config.path, 2).exists());
        assert!(!rotated_path(&config.path, 3).exists());
        for p in [config.path.clone(), rotated_path(&config.path, 1)] {
            assert!(std::fs::metadata(&p).unwrap().len() <= 200);
        }
        let lines = read_log(&config.path, None).unwrap();
        let nums: Vec<u32> = lines.iter().map(|l| l.text[5..].parse().unwrap()).collect();
        assert_eq!(*nums.last().unwrap(), 39);
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
    }

    #[test]
    fn below_the_free_space_floor_lines_are_dropped_then_counted() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            path: dir.path().join("c.log"),
            max_size_bytes: 1 << 20,
            max_files: 2,
            // More than any disk has: every line is below the floor.
            min_free_bytes: u64::MAX,
        };
        let mut w = LogWriter::open(&config).unwrap();
        assert_eq!(
            std::fs::metadata(&config.path)
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o640
        );
        for i in 0..10 {
            w.write(
                SystemTime::now(),
                Stream::Stdout,
                false,
                format!("lost {i}").as_bytes(),
            )
            .unwrap();
        }
        assert_eq!(std::fs::metadata(&config.path).unwrap().len(), 0);
        // Space comes back (a floor any disk meets), checked again after the re-check delay.
        w.min_free = 1;
        w.below_since = Instant::now().checked_sub(RECHECK_BELOW);
        w.write(SystemTime::now(), Stream::Stdout, false, b"kept")
            .unwrap();
        let lines = read_log(&config.path, None).unwrap();
        let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts.len(), 2, "{texts:?}");
        assert!(texts[0].starts_with("skiff: ") && texts[0].contains("bytes of log were dropped"));
        assert_eq!(texts[1], "kept");
    }
}
