//! One request on an agent's API socket: a JSON line each way, without starting a CLI process.

use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Sends `request` to the agent at `socket` and returns the reply's value (an error for an
/// `error` reply, or no reply within `timeout`).
pub fn request(socket: &Path, request: &Value, timeout: Duration) -> Result<Value> {
    let mut stream =
        UnixStream::connect(socket).with_context(|| format!("connect {}", socket.display()))?;
    stream.set_read_timeout(Some(timeout))?;
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply)?;
    let reply: Value = serde_json::from_str(&reply)
        .with_context(|| format!("api reply on {}: {reply:?}", socket.display()))?;
    if reply["type"] != "ok" {
        bail!("api error on {}: {}", socket.display(), reply["message"]);
    }
    Ok(reply["value"].clone())
}
