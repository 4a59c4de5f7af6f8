//! Running a process in a running container (`skiff exec`, exec probes and hooks): the command
//! line of the `exec` step of the shim and the frames it speaks with the agent.
//!
//! The agent starts `<shim command> exec --state-root <dir> --id <id> --tty 0|1 -- CMD ARGS...`
//! with its stdin and stdout as pipes. The shim joins the container (namespaces, cgroup, user,
//! capabilities, seccomp filter: see `shim::exec`) and relays:
//! - its stdin carries [`ExecInput`] frames (data for the process's stdin, end of that input,
//!   terminal size);
//! - its stdout carries [`ExecOutput`] frames (the process's stdout and stderr, then exactly one
//!   `Exit`, after a `Failed` message when the process could not be started).
//!
//! The agent keeps the shim's stdin open until the exit arrives, even after `StdinEnd`: when it
//! closes it earlier (the caller went away, a probe timed out), the shim kills the process and
//! reports its exit. The shim's stderr is a diagnostic log only.
//!
//! A frame is `kind: u8`, `len: u32` big-endian, then `len` bytes (at most [`MAX_FRAME`]).

use std::ffi::OsString;
use std::path::PathBuf;

use super::shim::ShimArgsError;

/// Largest payload of one frame.
pub const MAX_FRAME: usize = 64 * 1024;
const HEADER: usize = 5;

/// Exit code reported when the process could not be started (runc's convention).
pub const EXIT_CANNOT_START: i32 = 126;
/// Exit code reported when the command was not found in the container.
pub const EXIT_NOT_FOUND: i32 = 127;

/// What the agent sends to the exec shim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecInput {
    Stdin(Vec<u8>),
    /// The caller's input ended: the process's stdin is closed (not with a terminal).
    StdinEnd,
    Resize {
        cols: u16,
        rows: u16,
    },
}

/// What the exec shim sends to the agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecOutput {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// The process could not be started; `Exit` follows.
    Failed(String),
    /// The last frame: the exit status (128 + signal when killed by one).
    Exit(i32),
}

/// A frame that breaks the format: the stream cannot be trusted any further.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("exec frame of {0} bytes is larger than {MAX_FRAME}")]
    TooLarge(usize),
    #[error("unknown exec frame kind {0}")]
    UnknownKind(u8),
    #[error("malformed exec frame of kind {0}")]
    Malformed(u8),
}

const STDIN: u8 = 1;
const STDIN_END: u8 = 2;
const RESIZE: u8 = 3;
const STDOUT: u8 = 16;
const STDERR: u8 = 17;
const FAILED: u8 = 18;
const EXIT: u8 = 19;

fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Frames for `data`, split so that none is over [`MAX_FRAME`].
fn frames(kind: u8, data: &[u8]) -> Vec<u8> {
    if data.is_empty() {
        return frame(kind, data);
    }
    data.chunks(MAX_FRAME)
        .flat_map(|c| frame(kind, c))
        .collect()
}

impl ExecInput {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ExecInput::Stdin(data) => frames(STDIN, data),
            ExecInput::StdinEnd => frame(STDIN_END, &[]),
            ExecInput::Resize { cols, rows } => {
                let mut p = cols.to_be_bytes().to_vec();
                p.extend_from_slice(&rows.to_be_bytes());
                frame(RESIZE, &p)
            }
        }
    }

    fn decode(kind: u8, payload: Vec<u8>) -> Result<Self, FrameError> {
        Ok(match kind {
            STDIN => ExecInput::Stdin(payload),
            STDIN_END if payload.is_empty() => ExecInput::StdinEnd,
            RESIZE if payload.len() == 4 => ExecInput::Resize {
                cols: u16::from_be_bytes([payload[0], payload[1]]),
                rows: u16::from_be_bytes([payload[2], payload[3]]),
            },
            STDIN_END | RESIZE => return Err(FrameError::Malformed(kind)),
            other => return Err(FrameError::UnknownKind(other)),
        })
    }
}

impl ExecOutput {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ExecOutput::Stdout(data) => frames(STDOUT, data),
            ExecOutput::Stderr(data) => frames(STDERR, data),
            ExecOutput::Failed(message) => {
                let mut bytes = message.as_bytes();
                bytes = &bytes[..bytes.len().min(MAX_FRAME)];
                frame(FAILED, bytes)
            }
            ExecOutput::Exit(code) => frame(EXIT, &code.to_be_bytes()),
        }
    }

    fn decode(kind: u8, payload: Vec<u8>) -> Result<Self, FrameError> {
        Ok(match kind {
            STDOUT => ExecOutput::Stdout(payload),
            STDERR => ExecOutput::Stderr(payload),
            FAILED => ExecOutput::Failed(String::from_utf8_lossy(&payload).into_owned()),
            EXIT if payload.len() == 4 => ExecOutput::Exit(i32::from_be_bytes([
                payload[0], payload[1], payload[2], payload[3],
            ])),
            EXIT => return Err(FrameError::Malformed(kind)),
            other => return Err(FrameError::UnknownKind(other)),
        })
    }
}

/// Splits a byte stream into frames; feed it whatever reads return.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// True when bytes of an incomplete frame are waiting.
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }

    fn next_raw(&mut self) -> Result<Option<(u8, Vec<u8>)>, FrameError> {
        let Some(head) = self.buf.get(..HEADER) else {
            return Ok(None);
        };
        let kind = head[0];
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge(len));
        }
        if self.buf.len() < HEADER + len {
            return Ok(None);
        }
        let payload = self.buf[HEADER..HEADER + len].to_vec();
        self.buf.drain(..HEADER + len);
        Ok(Some((kind, payload)))
    }

    pub fn next_input(&mut self) -> Result<Option<ExecInput>, FrameError> {
        self.next_raw()?
            .map(|(k, p)| ExecInput::decode(k, p))
            .transpose()
    }

    pub fn next_output(&mut self) -> Result<Option<ExecOutput>, FrameError> {
        self.next_raw()?
            .map(|(k, p)| ExecOutput::decode(k, p))
            .transpose()
    }
}

/// The exit code for a process that could not be started with `message`.
pub fn cannot_start_code(message: &str) -> i32 {
    if message.contains("not found") || message.contains("No such file") {
        EXIT_NOT_FOUND
    } else {
        EXIT_CANNOT_START
    }
}

/// The command line of the shim's `exec` step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecArgs {
    pub state_root: PathBuf,
    pub id: String,
    pub tty: bool,
    pub command: Vec<String>,
}

impl ExecArgs {
    /// Parses `exec --state-root <dir> --id <id> --tty 0|1 -- CMD ARGS...`.
    pub fn parse(args: &[OsString]) -> Result<Self, ShimArgsError> {
        let split = args.iter().position(|a| a == "--");
        let (flags, command) = match split {
            Some(i) => (&args[..i], &args[i + 1..]),
            None => (args, &[][..]),
        };
        let flags = super::shim::parse_flags(flags, "exec")?;
        let (mut state_root, mut id, mut tty) = (None, None, None);
        for (name, value) in flags {
            let text = || {
                value
                    .clone()
                    .into_string()
                    .map_err(|_| ShimArgsError::NotUtf8("exec flag"))
            };
            match name.as_str() {
                "--state-root" => state_root = Some(PathBuf::from(&value)),
                "--id" => id = Some(text()?),
                "--tty" => {
                    tty = Some(match text()?.as_str() {
                        "1" => true,
                        "0" => false,
                        _ => return Err(ShimArgsError::NotANumber("--tty")),
                    })
                }
                _ => return Err(ShimArgsError::UnknownFlag(name)),
            }
        }
        let command = command
            .iter()
            .map(|a| {
                a.clone()
                    .into_string()
                    .map_err(|_| ShimArgsError::NotUtf8("command"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if command.is_empty() {
            return Err(ShimArgsError::Missing("command after --"));
        }
        Ok(ExecArgs {
            state_root: state_root.ok_or(ShimArgsError::Missing("--state-root"))?,
            id: id.ok_or(ShimArgsError::Missing("--id"))?,
            tty: tty.unwrap_or(false),
            command,
        })
    }

    /// The arguments to append to the shim command.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut out: Vec<OsString> = vec![
            "exec".into(),
            "--state-root".into(),
            self.state_root.clone().into_os_string(),
            "--id".into(),
            self.id.clone().into(),
            "--tty".into(),
            if self.tty { "1" } else { "0" }.into(),
            "--".into(),
        ];
        out.extend(self.command.iter().map(OsString::from));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_in_any_split() {
        let inputs = vec![
            ExecInput::Stdin(b"hello".to_vec()),
            ExecInput::Resize { cols: 80, rows: 24 },
            ExecInput::Stdin(Vec::new()),
            ExecInput::StdinEnd,
        ];
        let bytes: Vec<u8> = inputs.iter().flat_map(|i| i.encode()).collect();
        for step in [1, 3, 7, bytes.len()] {
            let mut r = FrameReader::default();
            let mut got = Vec::new();
            for chunk in bytes.chunks(step) {
                r.push(chunk);
                while let Some(i) = r.next_input().unwrap() {
                    got.push(i);
                }
            }
            assert_eq!(got, inputs, "split every {step} bytes");
            assert!(!r.has_partial());
        }
        let outputs = vec![
            ExecOutput::Stdout(b"out".to_vec()),
            ExecOutput::Stderr(b"err".to_vec()),
            ExecOutput::Failed("no such file".into()),
            ExecOutput::Exit(-3),
        ];
        let mut r = FrameReader::default();
        for o in &outputs {
            r.push(&o.encode());
        }
        for o in outputs {
            assert_eq!(r.next_output().unwrap(), Some(o));
        }
        assert_eq!(r.next_output().unwrap(), None);
    }

    #[test]
    fn long_data_is_split_and_bad_frames_are_refused() {
        let big = vec![7u8; MAX_FRAME * 2 + 5];
        let mut r = FrameReader::default();
        r.push(&ExecOutput::Stdout(big.clone()).encode());
        let mut joined = Vec::new();
        while let Some(ExecOutput::Stdout(part)) = r.next_output().unwrap() {
            assert!(part.len() <= MAX_FRAME);
            joined.extend(part);
        }
        assert_eq!(joined, big);
        let mut r = FrameReader::default();
        r.push(&[STDOUT, 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(r.next_output(), Err(FrameError::TooLarge(_))));
        let mut r = FrameReader::default();
        r.push(&frame(99, b""));
        assert_eq!(r.next_input(), Err(FrameError::UnknownKind(99)));
        let mut r = FrameReader::default();
        r.push(&frame(RESIZE, b"abc"));
        assert_eq!(r.next_input(), Err(FrameError::Malformed(RESIZE)));
        let mut r = FrameReader::default();
        r.push(&frame(EXIT, b"ab"));
        assert_eq!(r.next_output(), Err(FrameError::Malformed(EXIT)));
    }

    #[test]
    fn args_round_trip_and_need_a_command() {
        let a = ExecArgs {
            state_root: "/run/skiff".into(),
            id: "c1".into(),
            tty: true,
            command: vec!["sh".into(), "-c".into(), "echo --id".into()],
        };
        assert_eq!(ExecArgs::parse(&a.to_args()), Ok(a.clone()));
        let mut no_command = a.to_args();
        no_command.truncate(8);
        assert!(ExecArgs::parse(&no_command).is_err());
        assert!(ExecArgs::parse(&["run".into()]).is_err());
        assert_eq!(cannot_start_code("executable 'x' not found in $PATH"), 127);
        assert_eq!(cannot_start_code("permission denied"), 126);
    }
}
