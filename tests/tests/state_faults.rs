//! The state directory breaks: its disk fills up in the middle of a pass,
//! or its RocksDB files are damaged. passeur stops with one clear line and
//! a documented non-zero exit, never re-initialises the state it cannot
//! read, and once space is freed the next pass completes without loss
//! (the target read back and compared byte for byte).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use std::sync::Arc;

use anyhow::{Context, Result, bail, ensure};
use passeur_core::base::stats::Stats;
use passeur_core::manifest::Manifest;
use passeur_core::sync::run_pass;
use passeur_tests::dataset::{self, Obj};
use passeur_tests::faulty::{Failure, Fault, Op};
use passeur_tests::rig::{PART, Rig};
use passeur_tests::{Run, passeur_command, sync};

fn objects(n: usize) -> Vec<Obj> {
    (0..n)
        .map(|i| {
            let key = format!("d{:02}/obj-{i:05}.bin", i % 50);
            let data = dataset::body(&key, 64 + (i as u64 * 37) % 1500, 0);
            Obj {
                key,
                data: data.into(),
                content_type: None,
                meta: vec![],
            }
        })
        .collect()
}

/// Every data file of the state directory with its BLAKE3 (RocksDB's own
/// info log and lock file left out: every open writes them).
fn snapshot(dir: &Path) -> Result<BTreeMap<PathBuf, String>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if p.is_file() && !name.starts_with("LOG") && name != "LOCK" {
            out.insert(
                p.clone(),
                blake3::hash(&std::fs::read(&p)?).to_hex().to_string(),
            );
        }
    }
    Ok(out)
}

fn same_as_source(dst: &Path, objs: &[Obj]) -> Result<()> {
    for o in objs {
        let got = std::fs::read(dst.join(&o.key)).with_context(|| format!("{} missing", o.key))?;
        ensure!(
            blake3::hash(&got) == blake3::hash(&o.data),
            "{} differs",
            o.key
        );
    }
    Ok(())
}

fn one_line(run: &Run) -> Result<()> {
    let lines: Vec<&str> = run.stderr.lines().filter(|l| l.contains("error")).collect();
    ensure!(
        lines.len() == 1 && !run.stderr.contains("panicked"),
        "want one error line, got:\n{}",
        run.stderr
    );
    Ok(())
}

/// Damage done to a state directory.
type Damage = fn(&Path) -> Result<()>;

/// Damage in three places: CURRENT (which MANIFEST to read), the MANIFEST
/// itself, and records in the middle of the write-ahead log. Each is refused with one line, exit 73 (the
/// state directory cannot be read), and the state directory is left exactly as it was found.
#[test]
fn a_damaged_state_directory_is_refused_and_left_as_it_is() -> Result<()> {
    let work = tempfile::tempdir()?;
    let (src, dst, state) = (
        work.path().join("src"),
        work.path().join("dst"),
        work.path().join("state"),
    );
    let objs = objects(300);
    dataset::write_dir(&src, &objs)?;
    let s = src.to_string_lossy().into_owned();
    let d = dst.to_string_lossy().into_owned();
    let first = sync(&s, &d, &state, None)?;
    ensure!(first.code == 0, "{}", first.stderr);
    // A pass ends by moving its records into table files; one killed in
    // its middle leaves them in the write-ahead log, as a crash does.
    let changed: Vec<Obj> = objs
        .iter()
        .map(|o| Obj {
            data: dataset::body(&o.key, o.data.len() as u64 + 1, 1).into(),
            ..o.clone()
        })
        .collect();
    dataset::write_dir(&src, &changed)?;
    kill_mid_pass(&s, &d, &state, &work.path().join("slow.toml"))?;
    let pristine = tempfile::tempdir()?;
    let copy = |from: &Path, to: &Path| -> Result<()> {
        let st = Command::new("cp")
            .args(["-a", &format!("{}/.", from.display())])
            .arg(to)
            .status()?;
        ensure!(st.success(), "cp failed");
        Ok(())
    };
    copy(&state, pristine.path())?;
    let damages: [(&str, Damage); 3] = [
        ("CURRENT", |dir| {
            std::fs::write(dir.join("CURRENT"), "MANIFEST-999999\n")?;
            Ok(())
        }),
        ("MANIFEST", |dir| {
            let m = std::fs::read_dir(dir)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("MANIFEST-"))
                })
                .context("no MANIFEST")?;
            let mut bytes = std::fs::read(&m)?;
            for b in bytes.iter_mut().skip(8).step_by(7) {
                *b ^= 0x5a;
            }
            std::fs::write(&m, bytes)?;
            Ok(())
        }),
        ("write-ahead log", |dir| {
            // Records in the middle of the log damaged (not a torn tail,
            // which a crash leaves and recovery may drop: RocksDB takes
            // damage in the log's last 32 KiB block for one, so the log
            // spans more than two blocks and the damage sits in the first).
            let log = std::fs::read_dir(dir)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "log"))
                .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
                .context("no write-ahead log")?;
            let mut bytes = std::fs::read(&log)?;
            let n = bytes.len();
            ensure!(n > 2 * 32 * 1024, "log of {n} bytes");
            for b in &mut bytes[n / 3..n / 3 + 64] {
                *b ^= 0xff;
            }
            std::fs::write(&log, bytes)?;
            Ok(())
        }),
    ];
    for (what, damage) in damages {
        std::fs::remove_dir_all(&state)?;
        std::fs::create_dir_all(&state)?;
        copy(pristine.path(), &state)?;
        damage(&state)?;
        let before = snapshot(&state)?;
        let run = sync(&s, &d, &state, None)?;
        eprintln!("{what}: exit {}: {}", run.code, run.stderr.trim());
        ensure!(
            run.code == 73,
            "{what}: exit {}, want 73\n{}",
            run.code,
            run.stderr
        );
        one_line(&run)?;
        ensure!(
            snapshot(&state)? == before,
            "{what}: the state directory was changed by a run that refused it"
        );
    }
    Ok(())
}

/// Start a pass paced to 16 KiB/s and SIGKILL it once its write-ahead log
/// holds more than 72 KiB of records.
fn kill_mid_pass(src: &str, dst: &str, state: &Path, cfg: &Path) -> Result<()> {
    std::fs::write(cfg, "[transfer]\nbandwidth-limit = \"16KiB\"\n")?;
    let mut child = passeur_command(&["sync", "--source", src, "--target", dst])?
        .arg("--state")
        .arg(state)
        .arg("--config")
        .arg(cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let logged = || -> u64 {
        std::fs::read_dir(state)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .filter_map(|p| std::fs::metadata(p).ok().map(|m| m.len()))
            .max()
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while logged() <= 72 * 1024 {
        if std::time::Instant::now() > deadline || child.try_wait()?.is_some() {
            let _ = child.kill();
            bail!("the paced pass ended or stalled before logging 72 KiB");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill()?;
    child.wait()?;
    Ok(())
}

/// A small filesystem mounted for the state directory, unmounted on drop.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()?;
        ensure!(
            out.status.success(),
            "cannot mount a {size} tmpfs for the state directory (this test needs root): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// Bytes still free.
    fn free(&self) -> Result<u64> {
        let out = Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(&self.dir)
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text.lines().nth(1).context("df")?.trim().parse()?)
    }

    /// Fill what is left (a filler file, written until the disk is full).
    fn fill(&self) -> Result<PathBuf> {
        let filler = self.dir.join("filler");
        let free = self.free()?;
        std::fs::write(&filler, vec![0u8; usize::try_from(free)?]).or_else(|e| {
            // A filler that does not fit leaves the disk full: the point.
            if e.raw_os_error() == Some(28) {
                Ok(())
            } else {
                Err(e)
            }
        })?;
        Ok(filler)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

/// The state directory's disk fills up in the middle of a pass: the pass
/// stops with one line and exit 73; once space is freed, the next pass
/// completes, and the target holds every object, byte for byte.
#[test]
fn a_full_state_disk_stops_the_pass_and_the_next_one_completes() -> Result<()> {
    let work = tempfile::tempdir()?;
    let disk = SmallDisk::mount(&work.path().join("disk"), "32m")?;
    let state = disk.dir.join("state");
    let (src, dst) = (work.path().join("src"), work.path().join("dst"));
    let first_objs = objects(20);
    dataset::write_dir(&src, &first_objs)?;
    let s = src.to_string_lossy().into_owned();
    let d = dst.to_string_lossy().into_owned();
    let first = sync(&s, &d, &state, None)?;
    ensure!(
        first.code == 0,
        "first pass on the small disk: {}",
        first.stderr
    );
    // Leave about 2 MiB free (enough to open), then give the pass 20,000
    // objects to record.
    let filler = disk.dir.join("filler");
    let keep = 2 * 1024 * 1024;
    let fill = disk.free()?.saturating_sub(keep);
    std::fs::write(&filler, vec![0u8; usize::try_from(fill)?]).or_else(|e| {
        // A filler that does not fit leaves the disk full: fine too.
        if e.raw_os_error() == Some(28) {
            Ok(())
        } else {
            Err(e)
        }
    })?;
    let objs = objects(20_000);
    dataset::write_dir(&src, &objs)?;
    let full = sync(&s, &d, &state, None)?;
    eprintln!("disk full: exit {}: {}", full.code, full.stderr.trim());
    ensure!(
        full.code == 73,
        "a pass on a full state disk: exit {}, want 73\n{}",
        full.code,
        full.stderr
    );
    one_line(&full)?;
    ensure!(
        full.stderr.to_lowercase().contains("space"),
        "the line does not say the disk is full: {}",
        full.stderr
    );
    std::fs::remove_file(&filler)?;
    let after = sync(&s, &d, &state, None)?;
    ensure!(
        after.code == 0,
        "after freeing space: exit {}\n{}",
        after.code,
        after.stderr
    );
    same_as_source(&dst, &objs)?;
    Ok(())
}

/// A refused abort of a resumable upload at the start of a pass is
/// forgiven (the upload is forgotten, the pass goes on: `store_faults.rs`),
/// but not a state directory that cannot forget it: with its disk full,
/// the pass stops with the state directory's error (exit 73), before it
/// lists anything. Once space is freed, the next pass completes, and the
/// target read back equals the source.
#[tokio::test]
async fn a_refused_abort_the_full_state_disk_cannot_forget_stops_the_pass() -> Result<()> {
    let work = tempfile::tempdir()?;
    let disk = SmallDisk::mount(&work.path().join("disk"), "64m")?;
    let rig = Rig {
        state: tempfile::tempdir_in(&disk.dir)?,
        ..Rig::new(true)?
    };
    let size = 3 * PART + 777;
    rig.put("big", dataset::body("big", size, 1)).await?;
    rig.dst_faults
        .rule(Op::PutPart, 2, None, Fault::Fail(Failure::Transient));
    ensure!(!rig.pass(&Rig::options()).await?.complete());
    rig.dst_faults.heal();
    ensure!(
        rig.manifest()?.uploads()?.len() == 1,
        "no upload left recorded: the test shows nothing"
    );
    rig.put("big", dataset::body("big", size, 2)).await?;
    rig.dst_faults
        .rule(Op::Abort, 1, None, Fault::Fail(Failure::Denied));
    let manifest = Arc::new(Manifest::open(rig.state.path())?);
    let filler = disk.fill()?;
    let (source, target) = rig.stores();
    let listed = rig.src_faults.calls(Op::List);
    let stopped = run_pass(
        source,
        target,
        manifest,
        &Rig::options(),
        Arc::new(Stats::default()),
        |_| {},
        std::future::pending(),
    )
    .await;
    std::fs::remove_file(&filler)?;
    match stopped {
        Ok(pass) => bail!("the pass went on with its state disk full: {pass:?}"),
        Err(e) => {
            eprintln!("the pass stopped: {e}");
            ensure!(e.is_state_io(), "not a state directory error: {e}")
        }
    }
    ensure!(
        rig.dst_faults.calls(Op::Abort) >= 1,
        "the abort was not tried: the test shows nothing"
    );
    ensure!(
        rig.src_faults.calls(Op::List) == listed,
        "the pass went on (it listed the source) after the state directory failed to forget the upload"
    );
    let after = rig.pass(&Rig::options()).await?;
    ensure!(
        after.complete(),
        "after freeing space: {:?}",
        after.failures
    );
    rig.assert_replica().await
}
