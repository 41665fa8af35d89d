//! Benchmark: bytes read from the source to finish one large object after a
//! SIGKILL at about half way, passeur vs `rclone copy`, on the same servers
//! (s3s-fs → s3s-fs) and the same data, counted by the metering proxy in
//! front of the source. Goal (issue 3): passeur ≤ 1.05 × the object size.
//!
//! `bench/resume.sh` builds and runs it. `BENCH_SIZE_MIB` (default 1024)
//! sets the object size.

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use object_store::{ObjectStoreExt, WriteMultipart};
use passeur_bench::rclone_remote;
use passeur_tests::job::StoreJob;
use passeur_tests::meter::Meter;
use passeur_tests::servers::{Kind, Server};

const KEY: &str = "big.bin";

/// Upload `size` pseudo-random bytes (BLAKE3 XOF of a seed) through the S3
/// API, so that the server keeps the object's ETag (s3s-fs computes the MD5
/// of the whole file on every GET of a file it did not write itself);
/// returns their BLAKE3.
fn upload_object(source: &Server, size: u64) -> Result<blake3::Hash> {
    let rt = tokio::runtime::Runtime::new()?;
    let store = source.client("src")?;
    rt.block_on(async {
        let mut up = WriteMultipart::new_with_chunk_size(
            store
                .put_multipart(&object_store::path::Path::from(KEY))
                .await?,
            8 << 20,
        );
        let mut xof = blake3::Hasher::new()
            .update(b"passeur bench")
            .finalize_xof();
        let mut hash = blake3::Hasher::new();
        let mut buf = vec![0u8; 8 << 20];
        let mut left = size;
        while left > 0 {
            let n = usize::try_from(left.min(buf.len() as u64))?;
            xof.fill(&mut buf[..n]);
            hash.update(&buf[..n]);
            up.wait_for_capacity(4).await?;
            up.write(&buf[..n]);
            left -= n as u64;
        }
        up.finish().await?;
        Ok(hash.finalize())
    })
}

fn file_hash(path: &std::path::Path) -> Result<blake3::Hash> {
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(path).with_context(|| path.display().to_string())?)?;
    Ok(h.finalize())
}

fn rclone(source: &str, target: &str) -> Command {
    let mut c = Command::new("rclone");
    c.args([
        "copy",
        &format!("src:src/{KEY}"),
        "dst:dst/",
        "--s3-chunk-size",
        "8M",
        "--s3-upload-concurrency",
        "4",
        "--retries",
        "1",
    ]);
    rclone_remote(&mut c, "src", source);
    rclone_remote(&mut c, "dst", target);
    c
}

/// Read by the first run when it was killed, and in total.
struct Reads {
    at_kill: u64,
    total: u64,
    seconds: f64,
}

/// Run `cmd` until the source has sent half the object, SIGKILL it, run
/// it again to the end.
fn kill_at_half(
    meter: &Meter,
    size: u64,
    mut cmd: impl FnMut() -> Result<Command>,
) -> Result<Reads> {
    let started = Instant::now();
    let mut child: Child = cmd()?.stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
    while meter.object_bytes() < size / 2 {
        if let Some(s) = child.try_wait()? {
            bail!("first run ended before half the object was read: {s}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill()?;
    child.wait()?;
    std::thread::sleep(Duration::from_millis(300));
    let at_kill = meter.object_bytes();
    let out = cmd()?.output()?;
    ensure!(
        out.status.success(),
        "restart failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(Reads {
        at_kill,
        total: meter.object_bytes(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn main() -> Result<()> {
    let mib: u64 = std::env::var("BENCH_SIZE_MIB")
        .ok()
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(1024);
    let size = mib << 20;
    let source = Server::start(Kind::S3sFs)?;
    source.create_bucket("src")?;
    let want = upload_object(&source, size)?;
    let mut rows = Vec::new();
    for tool in ["passeur", "rclone"] {
        let target = Server::start(Kind::S3sFs)?;
        target.create_bucket("dst")?;
        let meter = Meter::start(&source.endpoint)?;
        let reads = if tool == "passeur" {
            let job = StoreJob::new(&source, &meter.endpoint, &target, "", 8)?;
            kill_at_half(&meter, size, || job.command())?
        } else {
            kill_at_half(&meter, size, || {
                Ok(rclone(&meter.endpoint, &target.endpoint))
            })?
        };
        let got = file_hash(&target.data.path().join("dst").join(KEY))?;
        ensure!(got == want, "{tool}: target differs from the source");
        rows.push((tool, reads));
    }
    println!("object: {size} bytes ({mib} MiB), SIGKILL once half was read, then run again");
    println!(
        "{:<8} {:>14} {:>16} {:>14} {:>10} {:>8}",
        "tool", "read at kill", "read by restart", "total read", "× object", "seconds"
    );
    for (tool, r) in &rows {
        println!(
            "{tool:<8} {:>14} {:>16} {:>14} {:>10.3} {:>8.1}",
            r.at_kill,
            r.total - r.at_kill,
            r.total,
            r.total as f64 / size as f64,
            r.seconds
        );
    }
    let json: Vec<_> = rows
        .iter()
        .map(|(tool, r)| {
            serde_json::json!({
                "tool": tool, "object_bytes": size, "read_at_kill": r.at_kill,
                "read_total": r.total, "ratio": r.total as f64 / size as f64, "seconds": r.seconds,
            })
        })
        .collect();
    println!("{}", serde_json::Value::Array(json));
    let passeur = rows[0].1.total as f64 / size as f64;
    if passeur > 1.05 {
        bail!("goal missed: passeur read {passeur:.3} × the object (goal ≤ 1.05)");
    }
    println!("goal met: passeur read {passeur:.3} × the object (goal ≤ 1.05)");
    Ok(())
}
