//! The service loop driven in-process: its requests (stop, quit, reload)
//! come from a channel, not from signals, and its passes are observed
//! through its status endpoint. The target is checked by reading it back.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use futures::channel::mpsc::{UnboundedSender, unbounded};
use passeur::signals::Request;
use passeur_config::daemon::DaemonConfig;

fn local_job(name: &str, src: &Path, dst: &Path) -> String {
    format!(
        "[[job]]\nname = \"{name}\"\ninterval = \"1s\"\n[job.source]\nurl = \"{}\"\n[job.target]\nurl = \"{}\"\n",
        src.display(),
        dst.display()
    )
}

/// The service's `/status`: one entry per job.
async fn status(addr: &str) -> Result<serde_json::Value> {
    let addr = addr.to_owned();
    tokio::task::spawn_blocking(move || -> Result<serde_json::Value> {
        let mut s = std::net::TcpStream::connect(&addr)?;
        write!(
            s,
            "GET /status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        let body = out.split_once("\r\n\r\n").context("no body")?.1;
        Ok(serde_json::from_str(body)?)
    })
    .await?
}

/// Passes job `name` has finished, as the status endpoint reports them
/// (0 while it does not answer yet).
async fn passes(addr: &str, name: &str) -> u64 {
    let Ok(jobs) = status(addr).await else {
        return 0;
    };
    jobs.as_array()
        .into_iter()
        .flatten()
        .find(|j| j["name"] == name)
        .and_then(|j| j["totals"]["passes"].as_u64())
        .unwrap_or(0)
}

async fn wait_passes(addr: &str, name: &str, n: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while passes(addr, name).await < n {
        ensure!(Instant::now() < deadline, "job {name}: {n} passes not seen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Every file of `src` is at `dst` with the same BLAKE3, read back.
fn same_tree(src: &Path, dst: &Path) -> Result<()> {
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let want = blake3::hash(&std::fs::read(e.path())?);
        let got = std::fs::read(dst.join(e.file_name()))
            .with_context(|| format!("{} not at the target", e.path().display()))?;
        ensure!(blake3::hash(&got) == want, "{} differs", e.path().display());
    }
    Ok(())
}

struct Service {
    dir: tempfile::TempDir,
    cfg: std::path::PathBuf,
    head: String,
    addr: String,
    requests: UnboundedSender<Request>,
    running: tokio::task::JoinHandle<u8>,
}

impl Service {
    /// Start the service in-process on `dir` (its sources already there)
    /// with `jobs`, a configuration's `[[job]]` tables.
    fn start(dir: tempfile::TempDir, jobs: &str) -> Result<Self> {
        let addr = format!("127.0.0.1:{}", passeur_tests::servers::free_port()?);
        let head = format!(
            "state-dir = \"{}\"\nmetrics-address = \"{addr}\"\n",
            dir.path().join("state").display()
        );
        let cfg = dir.path().join("p.toml");
        std::fs::write(&cfg, format!("{head}{jobs}"))?;
        let loaded = DaemonConfig::load(&cfg)?;
        let (requests, rx) = unbounded();
        let running = tokio::spawn(passeur::run::run(cfg.clone(), loaded, rx));
        Ok(Self {
            dir,
            cfg,
            head,
            addr,
            requests,
            running,
        })
    }

    fn path(&self, p: &str) -> std::path::PathBuf {
        self.dir.path().join(p)
    }

    fn send(&self, r: Request) -> Result<()> {
        self.requests.unbounded_send(r)?;
        Ok(())
    }

    async fn exit_code(self) -> Result<u8> {
        Ok(tokio::time::timeout(Duration::from_secs(60), self.running).await??)
    }
}

fn tree(root: &Path, name: &str, files: &[(&str, &[u8])]) -> Result<std::path::PathBuf> {
    let d = root.join(name);
    std::fs::create_dir_all(&d)?;
    for (k, v) in files {
        std::fs::write(d.join(k), v)?;
    }
    Ok(d)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_request_adds_a_job_and_a_broken_one_keeps_the_running_config() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().to_owned();
    tree(&root, "src1", &[("one.txt", b"1"), ("empty", b"")])?;
    let big = vec![7u8; 3 << 20];
    tree(&root, "src2", &[("two.txt", b"2"), ("big.bin", &big)])?;
    let job1 = local_job("one", &root.join("src1"), &root.join("dst1"));
    let job2 = local_job("two", &root.join("src2"), &root.join("dst2"));
    let svc = Service::start(dir, &job1)?;
    wait_passes(&svc.addr, "one", 1).await?;
    std::fs::write(&svc.cfg, format!("{}{job1}{job2}", svc.head))?;
    svc.send(Request::Reload)?;
    wait_passes(&svc.addr, "two", 1).await?;
    same_tree(&svc.path("src2"), &svc.path("dst2"))?;
    // A broken file: refused, both jobs go on passing.
    std::fs::write(&svc.cfg, format!("{}{job1}bogus-key = 1\n", svc.head))?;
    svc.send(Request::Reload)?;
    std::fs::write(svc.path("src2").join("later.txt"), "3")?;
    let now = passes(&svc.addr, "two").await;
    wait_passes(&svc.addr, "two", now + 2).await?;
    same_tree(&svc.path("src1"), &svc.path("dst1"))?;
    same_tree(&svc.path("src2"), &svc.path("dst2"))?;
    svc.send(Request::Stop)?;
    let code = svc.exit_code().await?;
    ensure!(code == 0, "stop: exit {code}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_end_of_the_request_stream_stops_the_service() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().to_owned();
    tree(&root, "src", &[("a", b"a"), ("empty", b"")])?;
    let svc = Service::start(dir, &local_job("j", &root.join("src"), &root.join("dst")))?;
    wait_passes(&svc.addr, "j", 1).await?;
    let Service {
        dir: _dir,
        requests,
        running,
        ..
    } = svc;
    drop(requests);
    let code = tokio::time::timeout(Duration::from_secs(60), running).await??;
    ensure!(code == 0, "exit {code}");
    same_tree(&root.join("src"), &root.join("dst"))?;
    Ok(())
}
