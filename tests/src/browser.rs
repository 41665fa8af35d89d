//! A real browser for pages passeur writes: Debian's `chromium`, headless,
//! with a fresh profile and nothing that reaches the network on its own.
//! `scripts/setup.sh` installs it; a missing browser fails the test.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

/// The browser: `PASSEUR_CHROMIUM`, else what setup wrote to servers/env.
pub fn chromium() -> Result<PathBuf> {
    crate::servers::tool("PASSEUR_CHROMIUM")
}

/// Runs headless chromium on `page` with `extra` flags; its stdout.
fn run(page: &Path, extra: &[String]) -> Result<String> {
    let profile = tempfile::tempdir()?;
    let stdout = profile.path().join("stdout");
    let stderr = profile.path().join("stderr");
    let url = format!("file://{}", page.canonicalize()?.display());
    let mut cmd = Command::new(chromium()?);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--no-first-run",
        "--hide-scrollbars",
    ])
    .arg(format!(
        "--user-data-dir={}",
        profile.path().join("profile").display()
    ))
    .args(extra)
    .arg(&url)
    .stdin(Stdio::null())
    .stdout(std::fs::File::create(&stdout)?)
    .stderr(std::fs::File::create(&stderr)?);
    let mut child = cmd.spawn().context("starting chromium")?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("chromium did not finish in 120 s on {url}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    ensure!(
        status.success(),
        "chromium exited {:?}: {}",
        status.code(),
        std::fs::read_to_string(&stderr).unwrap_or_default()
    );
    Ok(std::fs::read_to_string(&stdout)?)
}

/// The page's DOM as the browser parsed it.
pub fn dump_dom(page: &Path) -> Result<String> {
    run(page, &["--dump-dom".to_owned()])
}

/// A screenshot of the page, `width` × `height` CSS pixels, decoded:
/// (width, height, RGBA bytes).
pub fn screenshot(page: &Path, png: &Path, width: u32, height: u32) -> Result<Shot> {
    run(
        page,
        &[
            format!("--window-size={width},{height}"),
            format!("--screenshot={}", png.display()),
        ],
    )?;
    let file =
        std::fs::File::open(png).with_context(|| format!("no screenshot at {}", png.display()))?;
    let mut reader = png::Decoder::new(std::io::BufReader::new(file)).read_info()?;
    let mut buf = vec![
        0;
        reader
            .output_buffer_size()
            .context("screenshot too large")?
    ];
    let info = reader.next_frame(&mut buf)?;
    buf.truncate(info.buffer_size());
    let channels = info.color_type.samples();
    ensure!(
        info.bit_depth == png::BitDepth::Eight,
        "screenshot depth {:?}",
        info.bit_depth
    );
    Ok(Shot {
        width: info.width,
        height: info.height,
        channels,
        pixels: Pixels(buf),
    })
}

/// A decoded screenshot.
#[derive(Debug)]
pub struct Shot {
    /// Pixels across.
    pub width: u32,
    /// Pixels down.
    pub height: u32,
    channels: usize,
    pixels: Pixels,
}

/// The pixels, not printed.
struct Pixels(Vec<u8>);

impl std::fmt::Debug for Pixels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} bytes", self.0.len())
    }
}

impl Shot {
    /// How many pixels have exactly this colour.
    pub fn count(&self, rgb: [u8; 3]) -> usize {
        self.pixels
            .0
            .chunks_exact(self.channels)
            .filter(|p| p[..3] == rgb)
            .count()
    }

    /// How many pixels are not white.
    pub fn inked(&self) -> usize {
        self.pixels
            .0
            .chunks_exact(self.channels)
            .filter(|p| p[..3] != [255, 255, 255])
            .count()
    }
}
