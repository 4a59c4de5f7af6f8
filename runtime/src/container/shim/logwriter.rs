//! The shim's side of container logs: splits stdout/stderr bytes into lines and appends CRI
//! records to the log file, rotating by size (`path` -> `path.1` -> ... up to `max_files`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

use crate::container::log::{Stream, format_line, rotated_path};
use crate::container::spec::LogConfig;

/// Longest line kept whole; longer lines are written as `P` chunks of this size.
pub const MAX_LINE: usize = 16 * 1024;

/// Appends CRI records to the container's log with size-based rotation.
pub struct LogWriter {
    path: PathBuf,
    max_size: u64,
    max_files: u32,
    file: File,
    size: u64,
}

impl LogWriter {
    pub fn open(config: &LogConfig) -> std::io::Result<Self> {
        if let Some(parent) = config.path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&config.path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            path: config.path.clone(),
            max_size: config.max_size_bytes.max(1),
            max_files: config.max_files.max(1),
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
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
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
}
