//! `skiff exec POD [-c CONTAINER] [-i] [-t] -- CMD ARGS...`: a process in a container of any
//! node, like `kubectl exec`. The answers (`Stdout`, `Stderr`, `Exit`) are read on this thread;
//! with `-i`, a second thread sends this terminal's input; with `-t`, the terminal is raw for
//! the session and its size is sent when it changes. The exit code is the process's.

use super::ExecArgs;
use crate::api::client::{Client, ClientError};
use crate::api::{ExecInput, Request, Response};
use base64::Engine;
use std::io::{IsTerminal, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why `exec` did not run the command.
pub enum ExecError {
    User(String),
    Client(ClientError),
}

impl From<ClientError> for ExecError {
    fn from(e: ClientError) -> Self {
        ExecError::Client(e)
    }
}

/// How often the terminal's size is checked (no signal handler in the CLI).
const RESIZE_POLL: Duration = Duration::from_millis(250);

/// Runs the command; `Ok` is the process's exit code.
pub fn exec(socket: &std::path::Path, args: ExecArgs) -> Result<i32, ExecError> {
    if args.command.is_empty() {
        return Err(ExecError::User(
            "exec needs a command: skiff exec POD -- CMD [ARGS...]".into(),
        ));
    }
    let stdin_is_tty = std::io::stdin().is_terminal();
    let tty = args.tty && args.stdin && stdin_is_tty;
    if args.tty && !tty {
        crate::cli::output::warn("Unable to use a TTY - input is not a terminal or -i is not set");
    }
    let mut client = Client::send(
        socket,
        &Request::Exec {
            pod: args.pod,
            namespace: args.namespace,
            container: args.container,
            command: args.command,
            tty,
        },
    )?;
    match client.next_response()? {
        Some(Response::Ok { .. }) => {}
        Some(Response::Error { message }) => return Err(ExecError::User(message)),
        Some(other) => return Err(ExecError::User(format!("unexpected answer {other:?}"))),
        None => {
            return Err(ExecError::User(
                "the agent closed the connection without an answer".into(),
            ));
        }
    }
    let writer = Arc::new(Mutex::new(client.writer()?));
    let _raw = if tty { RawMode::enter() } else { None };
    if args.stdin {
        spawn_input(writer.clone(), tty);
        if tty {
            spawn_resizes(writer.clone());
        }
    } else {
        send(&writer, &ExecInput::StdinEnd);
    }
    let engine = base64::engine::general_purpose::STANDARD;
    loop {
        match client.next_response()? {
            Some(Response::Stdout { data }) => {
                let bytes = engine.decode(data).unwrap_or_default();
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(&bytes);
                let _ = out.flush();
            }
            Some(Response::Stderr { data }) => {
                let bytes = engine.decode(data).unwrap_or_default();
                let _ = std::io::stderr().write_all(&bytes);
            }
            Some(Response::Exit { code, message }) => {
                drop(_raw);
                if let Some(message) = message {
                    crate::cli::output::error(&message);
                }
                return Ok(code);
            }
            Some(Response::Error { message }) => return Err(ExecError::User(message)),
            Some(_) => {}
            None => {
                return Err(ExecError::User(
                    "the agent closed the session before the process exited".into(),
                ));
            }
        }
    }
}

/// Sends one input line; a failure means the session is over (the answers say how).
fn send(writer: &Mutex<UnixStream>, input: &ExecInput) -> bool {
    let Ok(mut line) = serde_json::to_vec(input) else {
        return false;
    };
    line.push(b'\n');
    let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
    w.write_all(&line).is_ok()
}

/// Sends this process's stdin, then (without a terminal) the end of it.
fn spawn_input(writer: Arc<Mutex<UnixStream>>, tty: bool) {
    std::thread::spawn(move || {
        let engine = base64::engine::general_purpose::STANDARD;
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let data = engine.encode(&buf[..n]);
                    if !send(&writer, &ExecInput::Stdin { data }) {
                        return;
                    }
                }
            }
        }
        if !tty {
            send(&writer, &ExecInput::StdinEnd);
        }
    });
}

/// Sends the terminal's size now and whenever it changes.
fn spawn_resizes(writer: Arc<Mutex<UnixStream>>) {
    std::thread::spawn(move || {
        let mut last = None;
        loop {
            if let Ok(size) = rustix::termios::tcgetwinsize(std::io::stdin()) {
                let now = (size.ws_col, size.ws_row);
                if last != Some(now) {
                    last = Some(now);
                    let resize = ExecInput::Resize {
                        cols: now.0,
                        rows: now.1,
                    };
                    if !send(&writer, &resize) {
                        return;
                    }
                }
            }
            std::thread::sleep(RESIZE_POLL);
        }
    });
}

/// The terminal in raw mode until dropped.
struct RawMode {
    saved: nix::sys::termios::Termios,
}

impl RawMode {
    fn enter() -> Option<Self> {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            std::io::stdin(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.saved,
        );
    }
}
