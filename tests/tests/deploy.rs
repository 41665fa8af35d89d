//! The Kubernetes example under deploy/: its manifests validate against
//! Kubernetes' own schemas (kubernetes-validate, offline, strict), its
//! passeur configuration is one `passeur config check` accepts, and the
//! StatefulSet runs as many pods as the configuration has shards.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use passeur_tests::passeur;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes")
}

fn manifests() -> Result<Vec<PathBuf>> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(deploy())?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    all.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
    all.sort();
    ensure!(
        all.len() >= 4,
        "deploy/kubernetes holds {} manifests",
        all.len()
    );
    Ok(all)
}

fn validator() -> Result<String> {
    std::env::var("PASSEUR_KUBE_VALIDATE")
        .context("PASSEUR_KUBE_VALIDATE is not set: run scripts/setup.sh and source its env file")
}

#[test]
fn the_manifests_validate_against_kubernetes_schemas() -> Result<()> {
    let kv = validator()?;
    for version in ["1.30.0", "1.37.0"] {
        let out = Command::new(&kv)
            .args(["--strict", "--kubernetes-version", version])
            .args(manifests()?)
            .output()?;
        ensure!(
            out.status.success(),
            "Kubernetes {version}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The validator itself refuses a wrong manifest (it is not a no-op).
    let dir = tempfile::tempdir()?;
    let bad = dir.path().join("bad.yaml");
    let set = std::fs::read_to_string(deploy().join("statefulset.yaml"))?;
    std::fs::write(&bad, set.replace("replicas: 4", "replicas: four"))?;
    let out = Command::new(&kv).args(["--strict"]).arg(&bad).output()?;
    ensure!(!out.status.success(), "an invalid StatefulSet passed");
    Ok(())
}

/// The `passeur.toml` block of the ConfigMap.
fn configmap_toml() -> Result<String> {
    let text = std::fs::read_to_string(deploy().join("configmap.yaml"))?;
    let (_, rest) = text
        .split_once("passeur.toml: |\n")
        .context("no passeur.toml in the ConfigMap")?;
    let mut out = String::new();
    for line in rest.lines() {
        if line.is_empty() {
            out.push('\n');
        } else if let Some(l) = line.strip_prefix("    ") {
            out.push_str(l);
            out.push('\n');
        } else {
            break;
        }
    }
    Ok(out)
}

#[test]
fn the_configmap_is_a_configuration_passeur_accepts_with_one_pod_per_shard() -> Result<()> {
    let toml = configmap_toml()?;
    let Some(n) = toml
        .lines()
        .find_map(|l| l.trim().strip_prefix("shard = \"ordinal/"))
        .and_then(|r| r.strip_suffix('"'))
    else {
        bail!("the ConfigMap's job has no shard = \"ordinal/N\"");
    };
    let set = std::fs::read_to_string(deploy().join("statefulset.yaml"))?;
    ensure!(
        set.contains(&format!("\n  replicas: {n}\n")),
        "the StatefulSet does not run {n} pods, one per shard"
    );
    for must in [
        "volumeClaimTemplates:",
        "mountPath: /var/lib/passeur",
        "path: /status",
        "secretRef:",
        "prometheus.io/scrape: \"true\"",
    ] {
        ensure!(set.contains(must), "the StatefulSet lacks {must:?}");
    }
    ensure!(
        toml.contains("state-dir = \"/var/lib/passeur\""),
        "state-dir is not the mounted volume"
    );
    // The pod's environment: the Secret's variables (credentials and the
    // Azure account name the configuration leaves to them).
    let secret = std::fs::read_to_string(deploy().join("secret.example.yaml"))?;
    let (_, data) = secret
        .split_once("stringData:\n")
        .context("no stringData")?;
    let env: Vec<(String, String)> = data
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.trim().split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect();
    ensure!(
        env.iter().any(|(k, _)| k == "AZURE_STORAGE_ACCOUNT_NAME"),
        "the Secret holds {env:?}"
    );
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // This host's name ends in no ordinal: check the file as pod 2 sees it.
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("passeur.toml");
    std::fs::write(&file, toml.replace("\"ordinal/", "\"2/"))?;
    let out = passeur(&["config", "check", &file.to_string_lossy()], &env)?;
    ensure!(
        out.code == 0,
        "config check: exit {}\n{}{}",
        out.code,
        out.stdout,
        out.stderr
    );
    // And as a host without an ordinal sees it: refused, by name.
    std::fs::write(&file, &toml)?;
    let out = passeur(&["config", "check", &file.to_string_lossy()], &env)?;
    let host = passeur_core::base::shard::hostname().unwrap_or_default();
    let has_ordinal = host
        .rsplit_once('-')
        .is_some_and(|(_, o)| o.parse::<u16>().is_ok());
    if !has_ordinal {
        ensure!(
            out.code == 78 && out.stderr.contains("-<ordinal>"),
            "ordinal on host {host:?}: exit {}\n{}",
            out.code,
            out.stderr
        );
    }
    Ok(())
}

#[test]
fn the_image_holds_the_binary_and_runs_as_no_one() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let file = std::fs::read_to_string(root.join("Dockerfile"))?;
    let stages = file.lines().filter(|l| l.starts_with("FROM ")).count();
    ensure!(stages == 2, "{stages} stages: build and run expected");
    ensure!(
        file.contains("cargo build --release --locked --bin passeur"),
        "the image is not built from the lock file"
    );
    let run_stage = file
        .rsplit_once("\nFROM ")
        .map(|(_, r)| r)
        .unwrap_or_default();
    let copies: Vec<&str> = run_stage
        .lines()
        .filter(|l| l.starts_with("COPY"))
        .collect();
    ensure!(
        copies == ["COPY --from=build /out/passeur /usr/local/bin/passeur"],
        "the run stage copies {copies:?}"
    );
    ensure!(
        run_stage.contains("USER 65532:65532"),
        "the image runs as root"
    );
    let ignore = std::fs::read_to_string(root.join(".dockerignore"))?;
    ensure!(
        ignore.lines().any(|l| l == "target/"),
        "target/ goes into the build context"
    );
    Ok(())
}

/// The image's run stage is distroless `cc` (glibc, libgcc, libstdc++ of
/// Debian 12, nothing else): the binary must need no other shared library
/// (a crate that links OpenSSL or zlib dynamically would make an image
/// that cannot start), and the build stage must be Debian 12 too, so that
/// the glibc it links against is the one the run stage has.
#[test]
fn the_binary_needs_only_the_libraries_the_run_stage_ships() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let file = std::fs::read_to_string(root.join("Dockerfile"))?;
    let from: Vec<&str> = file.lines().filter(|l| l.starts_with("FROM ")).collect();
    ensure!(
        from.len() == 2
            && from[0].contains("-bookworm")
            && from[1].starts_with("FROM gcr.io/distroless/cc-debian12"),
        "stages {from:?}: a Debian 12 (bookworm) build and a distroless cc-debian12 run expected"
    );
    let bin = passeur_tests::passeur_bin()?;
    let out = Command::new("ldd").arg(&bin).output()?;
    ensure!(out.status.success(), "ldd {}: {:?}", bin.display(), out);
    let shipped = [
        "linux-vdso.so.1",
        "libstdc++.so.6",
        "libgcc_s.so.1",
        "libm.so.6",
        "libc.so.6",
        "libpthread.so.0",
        "libdl.so.2",
        "librt.so.1",
        "ld-linux-x86-64.so.2",
        "ld-linux-aarch64.so.1",
    ];
    let needed: Vec<String> = String::from_utf8(out.stdout)?
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|l| l.rsplit('/').next().unwrap_or(l).to_owned())
        .collect();
    ensure!(!needed.is_empty(), "ldd listed nothing");
    let other: Vec<&String> = needed
        .iter()
        .filter(|l| !shipped.contains(&l.as_str()))
        .collect();
    ensure!(
        other.is_empty(),
        "the binary needs {other:?}, which distroless cc-debian12 does not ship"
    );
    Ok(())
}
