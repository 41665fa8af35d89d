//! `passeur run` and `passeur config`: malformed configurations, sd_notify
//! (READY, WATCHDOG, STOPPING), SIGHUP reload with a good and a broken
//! file, and SIGTERM during multipart uploads (exit 0; the next run
//! continues the uploads without uploading a finished part again).

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use passeur_tests::servers::{Kind, Server};
use passeur_tests::{Run, http_get, passeur, passeur_command, wait_until};

fn signal(child: &Child, sig: &str) -> Result<()> {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()?
        .success();
    ensure!(ok, "kill -{sig} failed");
    Ok(())
}

fn local_job(name: &str, src: &Path, dst: &Path, interval: &str) -> String {
    format!(
        "[[job]]\nname = \"{name}\"\ninterval = \"{interval}\"\n[job.source]\nurl = \"{}\"\n[job.target]\nurl = \"{}\"\n",
        src.display(),
        dst.display()
    )
}

#[test]
fn malformed_configs_exit_78_with_one_line_each() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src)?;
    let job = |extra: &str| {
        format!(
            "[[job]]\nname = \"j\"\n{extra}[job.source]\nurl = \"{}\"\n[job.target]\nurl = \"s3://bucket\"\n",
            src.display()
        )
    };
    let head = "state-dir = \"/var/lib/passeur\"\n";
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "unknown top-level key",
            format!("stat-dir = \"/x\"\n{}", job("")),
            "unknown field `stat-dir`",
        ),
        (
            "unknown store key",
            format!("{head}{}endpont = \"x\"\n", job("")),
            "unknown field `endpont`",
        ),
        (
            "bad size unit",
            format!(
                "{head}{}",
                job("[job.transfer]\nmemory-budget = \"1 GigaBanana\"\n")
            ),
            "invalid size",
        ),
        (
            "bad duration",
            format!("{head}{}", job("interval = \"soon\"\n")),
            "invalid duration",
        ),
        (
            "unknown scheme",
            format!(
                "{head}[[job]]\nname = \"j\"\n[job.source]\nurl = \"ftp://x\"\n[job.target]\nurl = \"s3://b\"\n"
            ),
            "unknown scheme \"ftp\"",
        ),
        (
            "duplicate job",
            format!("{head}{}{}", job(""), job("")),
            "duplicate job name",
        ),
        (
            "missing target",
            format!("{head}[[job]]\nname = \"j\"\n[job.source]\nurl = \"s3://a\"\n"),
            "missing field `target`",
        ),
        (
            "missing target url",
            format!(
                "{head}[[job]]\nname = \"j\"\n[job.source]\nurl = \"s3://a\"\n[job.target]\nregion = \"x\"\n"
            ),
            "target.url: missing",
        ),
        ("missing state-dir", job(""), "missing field `state-dir`"),
        ("no jobs", head.to_owned(), "no [[job]]"),
        (
            "bad chunking",
            format!(
                "{head}{}",
                job("[job.chunking]\nmin = \"512KiB\"\navg = \"256KiB\"\nmax = \"1MiB\"\n")
            ),
            "min <= avg <= max",
        ),
        ("syntax error", format!("{head}[[job]\n"), "line 2"),
        (
            "same source and target",
            format!(
                "{head}[[job]]\nname = \"j\"\n[job.source]\nurl = \"s3://a\"\n[job.target]\nurl = \"s3://a\"\n"
            ),
            "same URL",
        ),
        (
            "bad job name",
            format!(
                "{head}{}",
                job("").replace("name = \"j\"", "name = \"a/b\"")
            ),
            "name: use letters",
        ),
        (
            "zero bandwidth cap",
            format!(
                "{head}{}",
                job("[job.transfer]\nbandwidth-limit = \"0B\"\n")
            ),
            "transfer.bandwidth-limit: must be above 0",
        ),
        (
            "zero request-rate cap",
            format!(
                "{head}{}",
                job("").replace(
                    "[job.target]\n",
                    "[job.target]\nmax-requests-per-second = 0\n"
                )
            ),
            "expected a nonzero u32",
        ),
        (
            "unknown upload checksum",
            format!(
                "{head}{}",
                job("").replace(
                    "[job.target]\n",
                    "[job.target]\nupload-checksum = \"md5\"\n"
                )
            ),
            "upload-checksum: unknown value \"md5\"",
        ),
        (
            "interval too short",
            format!("{head}{}", job("interval = \"10ms\"\n")),
            "interval: at least 1s",
        ),
    ];
    for (what, text, want) in &cases {
        let file = dir.path().join("p.toml");
        std::fs::write(&file, text)?;
        for cmd in [vec!["config", "check"], vec!["run", "--config"]] {
            let mut args = cmd.clone();
            let f = file.to_string_lossy().into_owned();
            args.push(&f);
            let run = passeur(&args, &[])?;
            ensure!(
                run.code == 78,
                "{what} ({cmd:?}): exit {}: {}",
                run.code,
                run.stderr
            );
            let lines: Vec<&str> = run.stderr.lines().collect();
            ensure!(
                lines.len() == 1
                    && lines[0].starts_with("passeur: error: ")
                    && lines[0].contains(&f),
                "{what} ({cmd:?}): want one line naming the file, got:\n{}",
                run.stderr
            );
            ensure!(
                lines[0].contains(want),
                "{what} ({cmd:?}): {want:?} not in {:?}",
                lines[0]
            );
            ensure!(!run.stderr.contains("panicked"), "{what}: panic");
        }
    }
    // The example is valid.
    let init = passeur(&["config", "init"], &[])?;
    ensure!(init.code == 0, "config init: {}", init.stderr);
    let file = dir.path().join("example.toml");
    std::fs::write(&file, &init.stdout)?;
    let check = passeur(&["config", "check", &file.to_string_lossy()], &[])?;
    ensure!(check.code == 0, "example rejected: {}", check.stderr);
    Ok(())
}

#[test]
fn notify_socket_gets_ready_watchdog_and_stopping() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    std::fs::create_dir_all(&src)?;
    std::fs::write(src.join("a.txt"), "a")?;
    let cfg = dir.path().join("p.toml");
    std::fs::write(
        &cfg,
        format!(
            "state-dir = \"{}\"\n{}",
            dir.path().join("state").display(),
            local_job("j", &src, &dst, "1h")
        ),
    )?;
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path)?;
    sock.set_read_timeout(Some(Duration::from_secs(20)))?;
    // systemd sets WATCHDOG_PID to the service's PID: exec keeps the
    // shell's, so it can be set before passeur starts.
    let bin = passeur_tests::passeur_bin()?;
    let mut child = std::process::Command::new("sh")
        .args(["-c", "WATCHDOG_PID=$$ exec \"$0\" \"$@\""])
        .arg(&bin)
        .args(["run", "--config", &cfg.to_string_lossy()])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let result = notifications(&sock, &child, &dst);
    if result.is_err() {
        let _ = child.kill();
    }
    let stopping = result?;
    let status = child.wait()?;
    ensure!(stopping, "no STOPPING=1");
    ensure!(status.code() == Some(0), "exit {status}");
    Ok(())
}

/// READY, then watchdog pings for 2 s, then SIGTERM and STOPPING.
fn notifications(sock: &UnixDatagram, child: &Child, dst: &Path) -> Result<bool> {
    let mut buf = [0u8; 4096];
    let mut recv = || -> Result<String> {
        let n = sock.recv(&mut buf).context("no notification within 20 s")?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    let first = recv()?;
    ensure!(first.contains("READY=1"), "first message: {first:?}");
    ensure!(dst.is_dir(), "READY=1 came before the target was opened");
    // Watchdog every WATCHDOG_USEC / 2 = 200 ms: count pings over 2 s.
    let start = Instant::now();
    let mut pings = 0;
    while start.elapsed() < Duration::from_secs(2) {
        if recv()?.contains("WATCHDOG=1") {
            pings += 1;
        }
    }
    ensure!(
        (4..=20).contains(&pings),
        "{pings} watchdog pings in 2 s at a 200 ms interval"
    );
    signal(child, "TERM")?;
    let mut stopping = false;
    while let Ok(m) = recv() {
        if m.contains("STOPPING=1") {
            stopping = true;
            break;
        }
    }
    Ok(stopping)
}

#[test]
fn sighup_reloads_a_good_config_and_keeps_the_old_on_a_broken_one() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let p = |n: &str| dir.path().join(n);
    for d in ["src1", "src2"] {
        std::fs::create_dir_all(p(d))?;
    }
    std::fs::write(p("src1").join("one.txt"), "1")?;
    std::fs::write(p("src2").join("two.txt"), "2")?;
    let cfg = p("p.toml");
    let head = format!(
        "state-dir = \"{}\"\nlog-format = \"json\"\n",
        p("state").display()
    );
    let job1 = local_job("one", &p("src1"), &p("dst1"), "1s");
    std::fs::write(&cfg, format!("{head}{job1}"))?;
    let mut child = passeur_command(&["run", "--config", &cfg.to_string_lossy()])?
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().context("stderr")?;
    let (reloads_tx, reloads) = std::sync::mpsc::channel();
    let log = std::thread::spawn(move || {
        let mut all = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["fields"]["event"] == "reload"
            {
                let _ = reloads_tx.send(v["fields"]["outcome"].as_str().unwrap_or("").to_owned());
            }
            all.push(line);
        }
        all.join("\n")
    });
    let result = (|| -> Result<()> {
        wait_until("job one", Duration::from_secs(30), || {
            Ok(p("dst1/one.txt").exists())
        })?;
        // A second job, by reload.
        let job2 = local_job("two", &p("src2"), &p("dst2"), "1s");
        std::fs::write(&cfg, format!("{head}{job1}{job2}"))?;
        signal(&child, "HUP")?;
        let first = reloads.recv_timeout(Duration::from_secs(30))?;
        ensure!(first == "applied", "first reload: {first}");
        wait_until("job two after reload", Duration::from_secs(30), || {
            Ok(p("dst2/two.txt").exists())
        })?;
        // A broken file: refused, the running configuration carries on.
        std::fs::write(&cfg, format!("{head}{job1}bogus-key = 1\n"))?;
        signal(&child, "HUP")?;
        let second = reloads.recv_timeout(Duration::from_secs(30))?;
        ensure!(second == "refused", "broken reload: {second}");
        std::fs::write(p("src2").join("later.txt"), "3")?;
        wait_until("job two still running", Duration::from_secs(30), || {
            Ok(p("dst2/later.txt").exists())
        })?;
        ensure!(
            child.try_wait()?.is_none(),
            "passeur exited after a broken reload"
        );
        Ok(())
    })();
    signal(&child, "TERM")?;
    let status = child.wait()?;
    let log = log
        .join()
        .map_err(|_| anyhow::anyhow!("log reader panicked"))?;
    result.with_context(|| format!("log:\n{log}"))?;
    ensure!(status.code() == Some(0), "exit {status}:\n{log}");
    ensure!(
        log.contains("configuration reloaded"),
        "no reload logged:\n{log}"
    );
    ensure!(
        log.contains("bogus-key") && log.contains("reload refused"),
        "broken reload not reported:\n{log}"
    );
    Ok(())
}

#[test]
fn sigterm_mid_upload_exits_0_and_the_restart_resumes() -> Result<()> {
    const PART: usize = 5 * 1024 * 1024;
    let s3s = Server::start(Kind::S3sFs)?;
    let moto = Server::start(Kind::Moto)?;
    moto.create_bucket("dst")?;
    let data: Vec<u8> = (0..9 * PART + 3).map(|i| (i * 31 % 251) as u8).collect();
    let src_dir = s3s.data.path().join("src");
    std::fs::create_dir_all(&src_dir)?;
    std::fs::write(src_dir.join("big.bin"), &data)?;
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("p.toml");
    std::fs::write(
        &cfg,
        format!(
            "state-dir = \"{}\"\nlog-format = \"json\"\n[[job]]\nname = \"big\"\ninterval = \"1h\"\n[job.source]\nurl = \"s3://src\"\n{}[job.target]\nurl = \"s3://dst\"\n{}part-size = \"5MiB\"\n[job.transfer]\nparts-in-flight = 1\n",
            dir.path().join("state").display(),
            s3s.config(),
            moto.config()
        ),
    )?;
    let mut child = passeur_command(&["run", "--config", &cfg.to_string_lossy()])?
        .env("PASSEUR_LOG", "passeur_core=info,passeur=debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(child.stderr.take().context("stderr")?).lines();
    let mut parts = 0;
    while parts < 3 {
        let Some(line) = lines.next() else {
            bail!("passeur ended before 3 parts")
        };
        if event(&line?)? == "part" {
            parts += 1;
        }
    }
    signal(&child, "TERM")?;
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait()?;
    ensure!(
        status.code() == Some(0),
        "exit {status}: {}",
        rest.join("\n")
    );
    let paused = rest.iter().any(|l| {
        serde_json::from_str::<serde_json::Value>(l)
            .is_ok_and(|v| v["fields"]["event"] == "pass" && v["fields"]["paused"] == 1)
    });
    ensure!(
        paused,
        "no pass with one paused upload:\n{}",
        rest.join("\n")
    );
    // The same state directory, one pass with `sync`: the upload continues.
    let state = dir.path().join("state/big");
    let sync_cfg = dir.path().join("s.toml");
    std::fs::write(
        &sync_cfg,
        format!(
            "[source]\n{}[target]\n{}part-size = \"5MiB\"\n",
            s3s.config(),
            moto.config()
        ),
    )?;
    let run = Run::from_output(
        passeur_command(&[
            "sync",
            "--source",
            "s3://src",
            "--target",
            "s3://dst",
            "--state",
            &state.to_string_lossy(),
            "--config",
            &sync_cfg.to_string_lossy(),
            "--output",
            "json",
        ])?
        .output()?,
    );
    ensure!(run.code == 0, "{}\n{}", run.stdout, run.stderr);
    ensure!(run.stat("uploads_resumed")? == 1, "{}", run.stdout);
    let resumed = run.stat("bytes_resumed")?;
    ensure!(
        resumed >= 3 * PART as u64 && run.stat("bytes_written")? == data.len() as u64 - resumed,
        "a finished part was uploaded again: {}",
        run.stdout
    );
    let got = tokio::runtime::Runtime::new()?.block_on(async {
        use object_store::ObjectStoreExt;
        let store = moto.client("dst")?;
        anyhow::Ok(store.get(&"big.bin".into()).await?.bytes().await?)
    })?;
    ensure!(got.as_ref() == data.as_slice(), "target bytes differ");
    ensure!(moto.open_uploads("dst")?.is_empty(), "uploads left open");
    Ok(())
}

#[test]
fn completions_and_man_page_come_from_the_cli() -> Result<()> {
    let man = passeur(&["generate", "man"], &[])?;
    ensure!(
        man.code == 0 && man.stdout.contains(".TH passeur"),
        "{}",
        man.stderr
    );
    for shell in ["bash", "zsh", "fish"] {
        let c = passeur(&["generate", "completions", shell], &[])?;
        ensure!(
            c.code == 0 && c.stdout.contains("sync") && c.stdout.contains("config"),
            "{shell}: {}",
            c.stderr
        );
    }
    Ok(())
}

/// The `event` field of a JSON log line ("" for other lines).
fn event(line: &str) -> Result<String> {
    Ok(serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v["fields"]["event"].as_str().map(str::to_owned))
        .unwrap_or_default())
}

#[test]
fn status_and_metrics_report_the_passes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    std::fs::create_dir_all(&src)?;
    for i in 0..5 {
        std::fs::write(src.join(format!("f{i}")), vec![b'x'; 1000 + i])?;
    }
    let port = passeur_tests::servers::free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let cfg = dir.path().join("p.toml");
    std::fs::write(
        &cfg,
        format!(
            "state-dir = \"{}\"\nmetrics-address = \"{addr}\"\n{}",
            dir.path().join("state").display(),
            local_job("j", &src, &dst, "1h")
        ),
    )?;
    let cfg_s = cfg.to_string_lossy().into_owned();
    let mut child = passeur_command(&["run", "--config", &cfg_s])?
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let result = (|| -> Result<()> {
        let mut status = serde_json::Value::Null;
        wait_until("a finished pass in status", Duration::from_secs(30), || {
            let run = passeur(&["status", "--config", &cfg_s, "--json"], &[])?;
            if run.code != 0 {
                return Ok(false);
            }
            status = serde_json::from_str(&run.stdout)?;
            Ok(status[0]["last_pass"].is_object())
        })?;
        let job = &status[0];
        ensure!(job["name"] == "j" && job["state"] == "idle", "{job}");
        ensure!(job["last_pass"]["complete"] == true, "{job}");
        ensure!(job["last_pass"]["stats"]["copied"] == 5, "{job}");
        ensure!(job["lag_s"].as_f64().is_some_and(|l| l >= 0.0), "{job}");
        ensure!(job["totals"]["bytes_written"] == 5010, "{job}");
        let human = passeur(&["status", "--config", &cfg_s], &[])?;
        ensure!(
            human.code == 0
                && human.stdout.contains("job j: idle")
                && human.stdout.contains("5 copied"),
            "{}",
            human.stdout
        );
        let metrics = http_get(&addr, "/metrics")?;
        for want in [
            "passeur_passes_total{job=\"j\"} 1",
            "passeur_objects_copied_total{job=\"j\"} 5",
            "passeur_bytes_written_total{job=\"j\"} 5010",
            "passeur_pass_running{job=\"j\"} 0",
            "# TYPE passeur_replication_lag_seconds gauge",
        ] {
            ensure!(metrics.contains(want), "{want:?} missing:\n{metrics}");
        }
        ensure!(http_get(&addr, "/nope")?.contains("404"), "unknown path");
        Ok(())
    })();
    signal(&child, "TERM")?;
    let exit = child.wait()?;
    result?;
    ensure!(exit.code() == Some(0), "exit {exit}");
    let gone = passeur(&["status", "--config", &cfg_s], &[])?;
    ensure!(
        gone.code == 69
            && gone.stderr.lines().count() == 1
            && gone.stderr.contains("nothing answers"),
        "{}",
        gone.stderr
    );
    Ok(())
}
