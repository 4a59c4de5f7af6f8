//! Container logs in CRI format (`<RFC3339Nano> stdout|stderr F|P <text>`): reading across
//! rotated files (`path.N` ... `path.1`, `path`) and following a live log through rotations.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::error::LogError;
use super::time::{format_rfc3339_nanos, parse_rfc3339};

/// Which output of the container a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One log record. `partial` is true for a `P` chunk of a line longer than the shim's buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub time: SystemTime,
    pub stream: Stream,
    pub partial: bool,
    pub text: String,
}

/// Renders one CRI log record including its trailing newline.
pub fn format_line(time: SystemTime, stream: Stream, partial: bool, text: &[u8]) -> Vec<u8> {
    let head = format!(
        "{} {} {} ",
        format_rfc3339_nanos(time),
        stream.as_str(),
        if partial { "P" } else { "F" }
    );
    let mut out = Vec::with_capacity(head.len() + text.len() + 1);
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(text);
    out.push(b'\n');
    out
}

/// Parses one CRI log record (without its newline); `None` for malformed lines.
pub fn parse_line(line: &str) -> Option<LogLine> {
    let mut parts = line.splitn(4, ' ');
    let time = parse_rfc3339(parts.next()?)?;
    let stream = match parts.next()? {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        "F" => false,
        "P" => true,
        _ => return None,
    };
    Some(LogLine {
        time,
        stream,
        partial,
        text: parts.next().unwrap_or("").to_string(),
    })
}

/// Path of the `n`th rotated file (`n >= 1`).
pub fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Rotated files that exist, oldest first.
fn rotated_files(path: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (1..)
        .map(|n| rotated_path(path, n))
        .take_while(|p| p.exists())
        .collect();
    files.reverse();
    files
}

fn parse_all(bytes: &[u8], out: &mut Vec<LogLine>) {
    for raw in bytes.split(|b| *b == b'\n') {
        if let Some(line) = parse_line(&String::from_utf8_lossy(raw)) {
            out.push(line);
        }
    }
}

fn io_err<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(std::io::Error) -> LogError + 'a {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        what,
        source,
    }
}

/// Reads every line of the log across its rotated files in order; the last `tail` lines only
/// when given. A missing log reads as empty.
pub fn read_log(path: &Path, tail: Option<usize>) -> Result<Vec<LogLine>, LogError> {
    follow_log(path, tail).map(|(lines, _)| lines)
}

/// Like [`read_log`], and returns a follower positioned right after the lines returned.
pub fn follow_log(
    path: &Path,
    tail: Option<usize>,
) -> Result<(Vec<LogLine>, LogFollower), LogError> {
    let mut lines = Vec::new();
    for old in rotated_files(path) {
        match std::fs::read(&old) {
            Ok(bytes) => parse_all(&bytes, &mut lines),
            // Rotated away while we listed: its lines moved to an older name we already passed.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&old, "reading")(e)),
        }
    }
    let mut follower = LogFollower {
        path: path.to_path_buf(),
        file: None,
        pending: Vec::new(),
    };
    lines.extend(follower.poll()?);
    if let Some(n) = tail {
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
    }
    Ok((lines, follower))
}

/// Yields lines appended to a log since the last call, following the shim's rotations
/// (the old file is drained before the new one is read) and truncation.
#[derive(Debug)]
pub struct LogFollower {
    path: PathBuf,
    file: Option<(File, u64)>,
    pending: Vec<u8>,
}

impl LogFollower {
    /// Starts at the end of the current log: only lines appended later are returned.
    pub fn from_end(path: &Path) -> Result<Self, LogError> {
        let mut follower = LogFollower {
            path: path.to_path_buf(),
            file: None,
            pending: Vec::new(),
        };
        if let Ok(mut file) = File::open(path) {
            let ino = file.metadata().map_err(io_err(path, "stat"))?.ino();
            file.seek(SeekFrom::End(0))
                .map_err(io_err(path, "seeking"))?;
            follower.file = Some((file, ino));
        }
        Ok(follower)
    }

    /// Returns the complete lines appended since the last call (non-blocking).
    pub fn poll(&mut self) -> Result<Vec<LogLine>, LogError> {
        let mut lines = Vec::new();
        loop {
            if self.file.is_none() {
                match File::open(&self.path) {
                    Ok(file) => {
                        let ino = file.metadata().map_err(io_err(&self.path, "stat"))?.ino();
                        self.file = Some((file, ino));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(lines),
                    Err(e) => return Err(io_err(&self.path, "opening")(e)),
                }
            }
            let Some((file, ino)) = self.file.as_mut() else {
                return Ok(lines);
            };
            let pos = file
                .stream_position()
                .map_err(io_err(&self.path, "seeking"))?;
            let len = file.metadata().map_err(io_err(&self.path, "stat"))?.len();
            if len < pos {
                // Truncated in place: start over.
                file.seek(SeekFrom::Start(0))
                    .map_err(io_err(&self.path, "seeking"))?;
                self.pending.clear();
            }
            let mut buf = Vec::new();
            file.read_to_end(&mut buf)
                .map_err(io_err(&self.path, "reading"))?;
            self.pending.extend_from_slice(&buf);
            if let Some(last_nl) = self.pending.iter().rposition(|b| *b == b'\n') {
                let rest = self.pending.split_off(last_nl + 1);
                parse_all(&self.pending, &mut lines);
                self.pending = rest;
            }
            let current_ino = std::fs::metadata(&self.path).map(|m| m.ino()).ok();
            match current_ino {
                Some(i) if i != *ino => {
                    // Rotated: the old file is drained; continue with the new one.
                    self.file = None;
                    self.pending.clear();
                }
                _ => return Ok(lines),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn format_and_parse_round_trip() {
        let raw = format_line(at(5), Stream::Stderr, true, b"a b  c");
        let text = String::from_utf8(raw).unwrap();
        assert_eq!(text, "1970-01-01T00:00:05.000000000Z stderr P a b  c\n");
        let line = parse_line(text.trim_end_matches('\n')).unwrap();
        assert_eq!(
            line,
            LogLine {
                time: at(5),
                stream: Stream::Stderr,
                partial: true,
                text: "a b  c".into()
            }
        );
        assert_eq!(
            parse_line("1970-01-01T00:00:05Z stdout F ").unwrap().text,
            ""
        );
        assert!(parse_line("1970-01-01T00:00:05Z stdin F x").is_none());
        assert!(parse_line("not a line").is_none());
    }

    #[test]
    fn reads_rotated_files_in_order_with_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        for (file, n) in [
            (rotated_path(&path, 2), 1),
            (rotated_path(&path, 1), 2),
            (path.clone(), 3),
        ] {
            std::fs::write(
                file,
                format_line(at(n), Stream::Stdout, false, n.to_string().as_bytes()),
            )
            .unwrap();
        }
        let texts = |v: Vec<LogLine>| v.into_iter().map(|l| l.text).collect::<Vec<_>>();
        assert_eq!(texts(read_log(&path, None).unwrap()), ["1", "2", "3"]);
        assert_eq!(texts(read_log(&path, Some(2)).unwrap()), ["2", "3"]);
        assert!(
            read_log(&dir.path().join("none.log"), None)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn follower_sees_appends_partial_writes_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut f = File::create(&path).unwrap();
        f.write_all(&format_line(at(1), Stream::Stdout, false, b"old"))
            .unwrap();
        let mut follower = LogFollower::from_end(&path).unwrap();
        assert!(follower.poll().unwrap().is_empty());
        let line = format_line(at(2), Stream::Stdout, false, b"two");
        f.write_all(&line[..10]).unwrap();
        assert!(follower.poll().unwrap().is_empty());
        f.write_all(&line[10..]).unwrap();
        assert_eq!(follower.poll().unwrap()[0].text, "two");
        // Rotate the way the shim does: the last lines go to the old file, then rename.
        f.write_all(&format_line(at(3), Stream::Stdout, false, b"three"))
            .unwrap();
        std::fs::rename(&path, rotated_path(&path, 1)).unwrap();
        let mut g = File::create(&path).unwrap();
        g.write_all(&format_line(at(4), Stream::Stderr, false, b"four"))
            .unwrap();
        let got: Vec<String> = follower
            .poll()
            .unwrap()
            .into_iter()
            .map(|l| l.text)
            .collect();
        assert_eq!(got, ["three", "four"]);
    }
}
