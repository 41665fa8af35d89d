//! A passeur process with a time limit: a soak must not wait forever on a
//! pass that hangs. The process and the two threads that read its output
//! are owned here: it is killed and reaped if it outlives the limit, and
//! the threads are joined before the run is returned.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use passeur_tests::Run;

/// Read all of `r` on a thread of its own.
fn reader(mut r: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v
    })
}

/// Wait for `child`; past `deadline`, kill it. Whether it was killed.
fn wait(child: &mut Child, deadline: Instant) -> Result<(std::process::ExitStatus, bool)> {
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok((s, false));
        }
        if Instant::now() >= deadline {
            child.kill()?;
            return Ok((child.wait()?, true));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Run `cmd` to its end, or kill it after `limit`: its run, and whether it
/// was killed for hanging.
pub fn run_limited(mut cmd: Command, limit: Duration) -> Result<(Run, bool)> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("start passeur")?;
    let out = child.stdout.take().map(reader);
    let err = child.stderr.take().map(reader);
    let waited = wait(&mut child, Instant::now() + limit);
    if waited.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let text = |t: Option<JoinHandle<Vec<u8>>>| -> Result<String> {
        let bytes = t
            .context("no pipe")?
            .join()
            .map_err(|_| anyhow!("output reader panicked"))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    let (stdout, stderr) = (text(out), text(err));
    let (status, hung) = waited?;
    Ok((
        Run {
            code: status.code().unwrap_or(-1),
            stdout: stdout?,
            stderr: stderr?,
        },
        hung,
    ))
}
