use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use futures::StreamExt;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;

use super::*;

/// Oks sorted by key, and the number of error items.
type Listing = (Vec<ObjectMeta>, usize);

async fn collect(s: BoxStream<'static, object_store::Result<ObjectMeta>>) -> Listing {
    let items: Vec<_> = s.collect().await;
    let errors = items.iter().filter(|r| r.is_err()).count();
    let mut oks: Vec<ObjectMeta> = items.into_iter().filter_map(Result::ok).collect();
    oks.sort_by(|a, b| a.location.cmp(&b.location));
    (oks, errors)
}

async fn both(dir: &FsPath) -> (Listing, Listing) {
    let theirs = LocalFileSystem::new_with_prefix(dir).unwrap_or_else(|e| panic!("{e}"));
    let theirs = collect(theirs.list(None)).await;
    let ours = DirLister::new(dir).unwrap_or_else(|e| panic!("{e}"));
    (collect(ours.list(Staging::Skip)).await, theirs)
}

fn write(dir: &FsPath, rel: &OsStr, bytes: &[u8]) {
    let p = dir.join(rel);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
    }
    std::fs::write(&p, bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
}

#[tokio::test]
async fn lists_what_object_store_lists_on_an_odd_tree() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let root = tmp.path().join("src");
    let names: &[&str] = &[
        "plain.txt",
        "empty",
        "a/b/c/deep.bin",
        "sp ace/x y",
        "per%cent",
        "p%2Fq",
        "%41",
        "ünï/cödé",
        "日本/語",
        "x#1",
        "x#a",
        "x#",
        "#12",
        "a#b#12",
        "dir#7/inside",
        "back\\slash",
        "q?uery&=",
        "star*[x]",
        "+plus~tilde",
        "'quote\"",
        ".hidden",
        "..twodots",
        "trailing.",
    ];
    for (i, n) in names.iter().enumerate() {
        write(&root, OsStr::new(n), &vec![b'x'; i * 37]);
    }
    std::fs::create_dir_all(root.join("empty-dir/also-empty")).unwrap_or_else(|e| panic!("{e}"));
    // Links: to a file, to a directory (walked through), broken; a fifo.
    let out = tmp.path().join("outside");
    write(&out, OsStr::new("f"), b"outside file");
    write(&out, OsStr::new("sub/g"), b"outside dir file");
    let link = |target: &FsPath, name: &str| {
        std::os::unix::fs::symlink(target, root.join(name)).unwrap_or_else(|e| panic!("{e}"));
    };
    link(&out.join("f"), "to-file");
    link(&out.join("sub"), "to-dir");
    link(&tmp.path().join("nowhere"), "broken");
    let made = std::process::Command::new("mkfifo")
        .arg(root.join("fifo"))
        .status()
        .unwrap_or_else(|e| panic!("mkfifo: {e}"));
    assert!(made.success());

    let (ours, theirs) = both(&root).await;
    assert_eq!(theirs.1, 0, "object_store's own errors: {theirs:?}");
    assert_eq!(ours, theirs);
    let keys: Vec<&str> = ours.0.iter().map(|m| m.location.as_ref()).collect();
    for k in [
        "to-file",
        "to-dir/g",
        "a/b/c/deep.bin",
        "x#a",
        "a#b#12",
        "dir#7/inside",
        "p%2Fq",
        "ünï/cödé",
    ] {
        assert!(keys.contains(&k), "{k} not listed: {keys:?}");
    }
    for k in ["x#1", "fifo", "broken", "empty-dir"] {
        assert!(
            !keys.iter().any(|l| l.starts_with(k)),
            "{k} listed: {keys:?}"
        );
    }
    // A source's listing: the same, and the names object_store takes for
    // its staging files (its read refuses them: failed by name).
    let lister = DirLister::new(&root).unwrap_or_else(|e| panic!("{e}"));
    let (all, errors) = collect(lister.list(Staging::List)).await;
    assert_eq!(errors, 0);
    let staging = ["#12", "x#1"];
    let (named, rest): (Vec<ObjectMeta>, Vec<ObjectMeta>) = all
        .into_iter()
        .partition(|m| staging.contains(&m.location.as_ref()));
    assert_eq!(rest, theirs.0);
    let mut named: Vec<&str> = named.iter().map(|m| m.location.as_ref()).collect();
    named.sort_unstable();
    assert_eq!(named, staging);
}

/// object_store's listing ends at a name it cannot carry (the files the
/// walk finds after it are never listed); here each such file is a fault
/// naming it, and every other file is listed.
#[tokio::test]
async fn names_a_key_cannot_carry_are_named_and_hide_nothing() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let root = tmp.path().join("src");
    for i in 0..300 {
        write(&root, OsStr::new(&format!("d{}/f{i}", i % 3)), b"x");
    }
    let (clean, _) = both(&root).await;
    write(&root, OsStr::new("d1/new\nline"), b"n");
    write(&root, OsStr::from_bytes(b"not-utf8-\xff"), b"u");
    let ours = DirLister::new(&root).unwrap_or_else(|e| panic!("{e}"));
    let items: Vec<_> = ours.list(Staging::List).collect().await;
    let mut faults: Vec<String> = items
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(|e| match unnamable(e) {
            Some((key, _)) => key.to_owned(),
            None => panic!("not an error naming the file: {e}"),
        })
        .collect();
    faults.sort();
    assert_eq!(faults, ["d1/new\nline", "not-utf8-\u{fffd}"]);
    let mut oks: Vec<ObjectMeta> = items.into_iter().filter_map(Result::ok).collect();
    oks.sort_by(|a, b| a.location.cmp(&b.location));
    assert_eq!(oks, clean.0);
}

#[tokio::test]
async fn a_link_loop_is_an_error_and_the_walk_goes_on() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let root = tmp.path().join("src");
    write(&root, OsStr::new("d/f"), b"f");
    write(&root, OsStr::new("z"), b"z");
    std::os::unix::fs::symlink(&root, root.join("d/loop")).unwrap_or_else(|e| panic!("{e}"));
    let ours = DirLister::new(&root).unwrap_or_else(|e| panic!("{e}"));
    let (oks, errors) = collect(ours.list(Staging::List)).await;
    assert_eq!(errors, 1);
    let keys: Vec<&str> = oks.iter().map(|m| m.location.as_ref()).collect();
    assert_eq!(keys, ["d/f", "z"]);
}

#[tokio::test]
async fn every_file_of_many_batches_once() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let root = tmp.path().join("src");
    let n = BATCH * (AHEAD + 3) + 17;
    for i in 0..n {
        write(&root, OsStr::new(&format!("d{}/f{i}", i % 7)), b"");
    }
    let (ours, theirs) = both(&root).await;
    assert_eq!(ours.1, 0);
    assert_eq!(ours.0.len(), n);
    assert_eq!(ours, theirs);
}

#[tokio::test]
async fn a_dropped_listing_stops_its_walk() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let root = tmp.path().join("src");
    let total = BATCH * (AHEAD + 6);
    for i in 0..total {
        write(&root, OsStr::new(&format!("f{i}")), b"");
    }
    let lister = DirLister::new(&root).unwrap_or_else(|e| panic!("{e}"));
    let (mut rx, walker) = lister.spawn_walk(Staging::List);
    assert!(rx.recv().await.is_some_and(|b| b.len() == BATCH));
    // Let the walk fill the channel and block on it, then drop the listing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(rx);
    let visited = tokio::time::timeout(Duration::from_secs(30), walker)
        .await
        .unwrap_or_else(|_| panic!("the walk outlived its listing"))
        .unwrap_or_else(|e| panic!("{e}"));
    // One batch taken, AHEAD in the channel, one being sent.
    assert!(
        visited <= BATCH * (AHEAD + 2) + 1,
        "walked {visited} of {total} entries after the listing was dropped"
    );
}

/// A modification time chrono cannot hold is an error naming the file (the
/// conversion object_store uses panics), and the walk goes on.
#[tokio::test]
async fn a_time_out_of_range_is_an_error_and_the_walk_goes_on() {
    // tmpfs keeps any 64-bit time (ext4 clamps to the year 2446).
    let shm = FsPath::new("/dev/shm");
    let tmp = match shm.is_dir() {
        true => tempfile::tempdir_in(shm),
        false => tempfile::tempdir(),
    }
    .unwrap_or_else(|e| panic!("{e}"));
    let root = tmp.path().join("src");
    write(&root, OsStr::new("a"), b"a");
    write(&root, OsStr::new("far"), b"far");
    write(&root, OsStr::new("z"), b"z");
    let far = std::time::UNIX_EPOCH + Duration::from_secs(9_000_000_000_000);
    let set = std::fs::File::options()
        .write(true)
        .open(root.join("far"))
        .and_then(|f| f.set_modified(far));
    let kept = set.and_then(|()| std::fs::metadata(root.join("far"))?.modified());
    match kept {
        Ok(t) if utc(t).is_none() => {}
        // This filesystem keeps no such time: nothing to show here.
        other => {
            eprintln!("skipped: the filesystem kept {other:?}");
            return;
        }
    }
    let lister = DirLister::new(&root).unwrap_or_else(|e| panic!("{e}"));
    let items: Vec<_> = lister.list(Staging::List).collect().await;
    let errors: Vec<String> = items
        .iter()
        .filter_map(|r| r.as_ref().err().map(ToString::to_string))
        .collect();
    let mut keys: Vec<String> = items
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|m| m.location.to_string()))
        .collect();
    keys.sort();
    assert_eq!(keys, ["a", "z"]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("far"), "{errors:?}");
}

#[test]
fn times_convert_as_chrono_converts_them() {
    for t in [
        std::time::UNIX_EPOCH,
        std::time::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789),
        std::time::UNIX_EPOCH - Duration::new(86_400, 1),
        std::time::UNIX_EPOCH - Duration::from_secs(86_400),
    ] {
        assert_eq!(utc(t), Some(DateTime::<Utc>::from(t)), "{t:?}");
    }
}
