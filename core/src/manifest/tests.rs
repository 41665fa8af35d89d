use super::*;
use crate::base::testing::tempdir;
use crate::content::chunk::ChunkRef;
use std::collections::BTreeMap;

fn rec(size: u64, content: &[u8]) -> ObjectRecord {
    ObjectRecord {
        source: SourceVersion {
            size,
            etag: Some("e".into()),
            version: None,
            last_modified_ms: 1,
        },
        blake3: Hash::of(content),
        chunks: 1,
        target_etag: None,
        attrs_digest: Hash::of(b""),
        state: ObjectState::Complete,
        recorded_ms: 0,
    }
}

fn chunk(content: &[u8]) -> Vec<ChunkRef> {
    vec![ChunkRef {
        hash: Hash::of(content),
        len: content.len() as u32,
    }]
}

#[test]
fn commit_then_read_back_and_root_changes_incrementally() -> Result<(), Error> {
    let dir = tempdir()?;
    let m = Manifest::open(dir.path())?;
    assert_eq!(m.schema_version()?, Some(SCHEMA_VERSION));
    assert_eq!(m.merkle_root()?, Hash([0; 32]));

    let s = m.commit_object("a", &rec(3, b"abc"), &chunk(b"abc"))?;
    assert_eq!(s.new_chunk_bytes, 3);
    let r1 = m.merkle_root()?;
    assert_ne!(r1, Hash([0; 32]));
    assert_eq!(m.object("a")?, Some(rec(3, b"abc")));

    // Same content under another key: no new chunk bytes, index finds "a".
    let s = m.commit_object("b", &rec(3, b"abc"), &chunk(b"abc"))?;
    assert_eq!(s.new_chunk_bytes, 0);
    let r2 = m.merkle_root()?;
    assert_ne!(r1, r2);
    let holder = m.content_holder(&Hash::of(b"abc"), 3, &Hash::of(b""))?;
    assert!(holder.is_some());
    assert_eq!(
        m.content_holder(&Hash::of(b"abc"), 3, &Hash::of(b"other"))?,
        None
    );

    // Removing "b" brings the root back to the one-object root.
    m.remove_object("b")?;
    assert_eq!(m.merkle_root()?, r1);
    assert_eq!(m.objects().count(), 1);
    Ok(())
}

#[test]
fn root_is_independent_of_insertion_order() -> Result<(), Error> {
    let d1 = tempdir()?;
    let d2 = tempdir()?;
    let (m1, m2) = (Manifest::open(d1.path())?, Manifest::open(d2.path())?);
    let keys: Vec<String> = (0..300).map(|i| format!("k/{i}")).collect();
    for k in &keys {
        m1.commit_object(k, &rec(1, k.as_bytes()), &chunk(k.as_bytes()))?;
    }
    for k in keys.iter().rev() {
        m2.commit_object(k, &rec(1, k.as_bytes()), &chunk(k.as_bytes()))?;
    }
    assert_eq!(m1.merkle_root()?, m2.merkle_root()?);
    Ok(())
}

#[test]
fn refuses_other_schema_version_and_non_directory() -> Result<(), Error> {
    let dir = tempdir()?;
    Manifest::open(dir.path())?.set_schema_version(99)?;
    match Manifest::open(dir.path()) {
        Err(Error::SchemaMismatch { found: 99, .. }) => {}
        other => panic!("expected schema mismatch, got {other:?}"),
    }
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").map_err(|source| Error::Io {
        what: "test set-up".into(),
        source,
    })?;
    assert!(matches!(
        Manifest::open(&file.join("state")),
        Err(Error::StateDir { .. })
    ));
    Ok(())
}

#[test]
fn the_object_count_is_exact_through_overwrites_removals_and_reopening() -> Result<(), Error> {
    let dir = tempdir()?;
    {
        let m = Manifest::open(dir.path())?;
        assert_eq!(m.object_count()?, 0);
        for i in 0..100u8 {
            m.commit_object(&format!("k{i}"), &rec(1, &[i]), &chunk(&[i]))?;
        }
        // Overwrites (same or other content) are not new objects.
        for i in 0..50u8 {
            m.commit_object(&format!("k{i}"), &rec(2, &[i, i]), &chunk(&[i, i]))?;
            m.commit_object(&format!("k{i}"), &rec(2, &[i, i]), &chunk(&[i, i]))?;
        }
        for i in 0..30u8 {
            m.remove_object(&format!("k{i}"))?;
        }
        // Removing what is not recorded changes nothing.
        m.remove_object("absent")?;
        m.remove_object("k0")?;
        assert_eq!(m.object_count()?, 70);
        assert_eq!(m.objects().count(), 70);
    }
    // Kept across reopening; counted once for a directory without it.
    let m = Manifest::open(dir.path())?;
    assert_eq!(m.object_count()?, 70);
    m.db.delete_cf(cf(&m.db, CF_COUNTERS)?, COUNT_OBJECTS)
        .map_err(db_err)?;
    drop(m);
    let m = Manifest::open(dir.path())?;
    assert_eq!(m.object_count()?, 70);
    Ok(())
}

#[test]
fn a_found_tree_of_changed_keys_has_the_root_of_the_changed_manifest() -> Result<(), Error> {
    let dir = tempdir()?;
    let m = Manifest::open(dir.path())?;
    for i in 0..50u8 {
        let k = format!("k{i:02}");
        m.commit_object(&k, &rec(1, &[i]), &chunk(&[i]))?;
    }
    let before = m.merkle_root()?;
    m.note_verified(&LastVerified {
        root: before.to_hex(),
        at_ms: 1,
        deep: false,
        incremental: false,
    })?;
    assert_eq!(
        m.unverified_keys(10)?,
        Some(Vec::new()),
        "cleared by the verification"
    );

    // Nothing found changed: the stored root.
    let keys = vec!["k03".to_owned(), "k07".to_owned(), "k60".to_owned()];
    let mut t = m.changed_tree(&keys);
    t.add("k03", 1, &Hash::of(&[3]))?;
    t.add("k07", 1, &Hash::of(&[7]))?;
    assert_eq!(t.root()?, before, "k60 absent, the others as recorded");

    // The manifest changes: one key rewritten, one removed, one new.
    m.commit_object("k03", &rec(2, b"new"), &chunk(b"new"))?;
    m.remove_object("k07")?;
    m.commit_object("k60", &rec(1, b"x"), &chunk(b"x"))?;
    assert_eq!(
        m.unverified_keys(3)?,
        Some(keys.clone()),
        "marked in the records' batches"
    );
    assert_eq!(m.unverified_keys(2)?, None, "more than the limit");
    let after = m.merkle_root()?;
    // Found as recorded: the new root, from only their buckets.
    let mut t = m.changed_tree(&keys);
    t.add("k03", 2, &Hash::of(b"new"))?;
    t.add("k60", 1, &Hash::of(b"x"))?;
    assert_eq!(t.root()?, after);
    assert_eq!(after, m.merkle_root_from_leaves()?);
    // Found otherwise: another root.
    let mut t = m.changed_tree(&keys);
    t.add("k03", 2, &Hash::of(b"old"))?;
    t.add("k60", 1, &Hash::of(b"x"))?;
    assert_ne!(t.root()?, after);
    Ok(())
}

#[test]
fn last_complete_pass_survives_reopen_and_never_moves_back() -> Result<(), Error> {
    let dir = tempdir()?;
    let pass = |started_ms, ended_ms, filter| super::LastCompletePass {
        started_ms,
        ended_ms,
        filter,
    };
    {
        let m = Manifest::open(dir.path())?;
        assert_eq!(m.last_complete_pass()?, None);
        m.set_last_complete_pass(&pass(2_000, 5_000, [1; 32]))?;
        // A pass that started earlier and ended later (a slow one) does
        // not hide the newer start.
        m.set_last_complete_pass(&pass(1_000, 9_000, [2; 32]))?;
        assert_eq!(m.last_complete_pass()?, Some(pass(2_000, 5_000, [1; 32])));
    }
    let m = Manifest::open(dir.path())?;
    assert_eq!(m.last_complete_pass()?, Some(pass(2_000, 5_000, [1; 32])));
    m.set_last_complete_pass(&pass(3_000, 4_000, [3; 32]))?;
    assert_eq!(m.last_complete_pass()?, Some(pass(3_000, 4_000, [3; 32])));
    Ok(())
}

#[test]
fn last_pass_records_a_start_then_its_end_and_survives_reopen() -> Result<(), Error> {
    let dir = tempdir()?;
    let started = super::LastPass {
        started_ms: 7_000,
        ended_ms: None,
        complete: false,
    };
    {
        let m = Manifest::open(dir.path())?;
        assert_eq!(m.last_pass()?, None);
        m.set_last_pass(&started)?;
        assert_eq!(m.last_pass()?, Some(started));
    }
    let m = Manifest::open(dir.path())?;
    assert_eq!(m.last_pass()?, Some(started), "a start not ended stays so");
    let ended = super::LastPass {
        ended_ms: Some(9_000),
        complete: true,
        ..started
    };
    m.set_last_pass(&ended)?;
    assert_eq!(m.last_pass()?, Some(ended));
    Ok(())
}

/// Entries of column family `name`.
fn entries(m: &Manifest, name: &str) -> Result<usize, Error> {
    Ok(m.db
        .iterator_cf(cf(&m.db, name)?, IteratorMode::Start)
        .count())
}

#[test]
fn lists_of_one_chunk_follow_from_the_record_and_still_count() -> Result<(), Error> {
    let dir = tempdir()?;
    let m = Manifest::open(dir.path())?;
    let attrs = Hash::of(b"");
    let two_chunks = [chunk(b"abc"), chunk(b"def")].concat();
    let two = ObjectRecord {
        chunks: 2,
        ..rec(6, b"abcdef")
    };
    let empty = ObjectRecord {
        chunks: 0,
        ..rec(0, b"")
    };
    m.commit_object("one", &rec(3, b"abc"), &chunk(b"abc"))?;
    m.commit_object("two", &two, &two_chunks)?;
    m.commit_object("empty", &empty, &[])?;
    // Only the object of two chunks stores a list and a head entry.
    assert_eq!(entries(&m, CF_CHUNKLISTS)?, 1);
    assert_eq!(entries(&m, CF_CONTENT_HEAD)?, 1);
    assert_eq!(m.chunk_list(&rec(3, b"abc"))?, Some(chunk(b"abc")));
    assert_eq!(m.chunk_list(&two)?, Some(two_chunks.clone()));
    assert_eq!(m.chunk_list(&empty)?, Some(Vec::new()));
    // Large-object dedup finds both kinds by (size, first chunk).
    let one = m
        .large_candidate(3, &Hash::of(b"abc"), &attrs)?
        .expect("one-chunk candidate");
    assert_eq!((one.holder.as_str(), one.chunks), ("one", chunk(b"abc")));
    let found = m
        .large_candidate(6, &Hash::of(b"abc"), &attrs)?
        .expect("two-chunk candidate");
    assert_eq!((found.holder.as_str(), found.chunks), ("two", two_chunks));
    assert!(m.large_candidate(4, &Hash::of(b"abc"), &attrs)?.is_none());
    // Replacing and removing release the derived chunk: "abc" is new
    // again for the next object that holds it.
    m.commit_object("one", &rec(3, b"xyz"), &chunk(b"xyz"))?;
    m.remove_object("two")?;
    let again = m.commit_object("three", &rec(3, b"abc"), &chunk(b"abc"))?;
    assert_eq!(again.new_chunk_bytes, 3);
    let kept = m.commit_object("four", &rec(3, b"xyz"), &chunk(b"xyz"))?;
    assert_eq!(kept.new_chunk_bytes, 0);
    Ok(())
}

#[test]
fn the_same_content_in_another_number_of_chunks_moves_the_references() -> Result<(), Error> {
    let dir = tempdir()?;
    let m = Manifest::open(dir.path())?;
    let one = rec(6, b"abcdef");
    let two = ObjectRecord {
        chunks: 2,
        ..rec(6, b"abcdef")
    };
    let halves = [chunk(b"abc"), chunk(b"def")].concat();
    // Recorded whole, then in two parts (another part size), then whole.
    assert_eq!(
        m.commit_object("k", &one, &chunk(b"abcdef"))?
            .new_chunk_bytes,
        6
    );
    assert_eq!(m.commit_object("k", &two, &halves)?.new_chunk_bytes, 6);
    assert_eq!(m.chunk_list(&two)?, Some(halves.clone()));
    assert_eq!(
        m.commit_object("k", &one, &chunk(b"abcdef"))?
            .new_chunk_bytes,
        6
    );
    // Each step released the chunks of the one before.
    assert_eq!(m.commit_object("m", &two, &halves)?.new_chunk_bytes, 6);
    assert_eq!(
        m.commit_object("n", &one, &chunk(b"abcdef"))?
            .new_chunk_bytes,
        0
    );
    Ok(())
}

/// A bucket's dirty mark is written once until the tree is recomputed:
/// later leaves in it, after a recompute or a reopen, still reach the root.
#[test]
fn leaves_in_a_bucket_already_marked_still_reach_the_root() -> Result<(), Error> {
    let b = merkle::bucket_of("k0");
    let same: Vec<String> = (0..)
        .map(|i| format!("k{i}"))
        .filter(|k| merkle::bucket_of(k) == b)
        .take(3)
        .collect();
    let d = tempdir()?;
    let m = Manifest::open(d.path())?;
    let put = |m: &Manifest, k: &str, c: &[u8]| m.commit_object(k, &rec(1, c), &chunk(c));
    // What a manifest given only the final records computes.
    let expect = |entries: &[(&str, &[u8])]| -> Result<Hash, Error> {
        let dir = tempdir()?;
        let f = Manifest::open(dir.path())?;
        for (k, c) in entries {
            put(&f, k, c)?;
        }
        f.merkle_root()
    };
    put(&m, &same[0], b"a")?;
    let r1 = m.merkle_root()?;
    assert_eq!(r1, expect(&[(&same[0], b"a")])?);
    // The first leaf after the recompute marks the bucket; the second,
    // not marked again, still counts.
    put(&m, &same[1], b"b")?;
    put(&m, &same[2], b"c")?;
    assert_eq!(
        m.merkle_root()?,
        expect(&[(&same[0], b"a"), (&same[1], b"b"), (&same[2], b"c")])?
    );
    // Two changes in the marked bucket, then a reopen before any
    // recompute: the mark written with the first is on disk.
    put(&m, &same[0], b"a2")?;
    put(&m, &same[1], b"b2")?;
    drop(m);
    let m = Manifest::open(d.path())?;
    let want = expect(&[(&same[0], b"a2"), (&same[1], b"b2"), (&same[2], b"c")])?;
    assert_eq!(m.merkle_root()?, want);
    // After the reopen the bucket is marked afresh.
    put(&m, &same[2], b"c2")?;
    assert_eq!(
        m.merkle_root()?,
        expect(&[(&same[0], b"a2"), (&same[1], b"b2"), (&same[2], b"c2")])?
    );
    Ok(())
}

/// The root from the tree's definition alone (module `merkle`): each
/// bucket's leaves in key order, 256 buckets to a level-1 node.
fn root_by_definition(objects: &BTreeMap<String, Vec<u8>>) -> Hash {
    let mut buckets: BTreeMap<u16, BTreeMap<&str, Hash>> = BTreeMap::new();
    for (k, c) in objects {
        let leaf = merkle::leaf_hash(k, 1, &Hash::of(c));
        buckets
            .entry(merkle::bucket_of(k))
            .or_default()
            .insert(k, leaf);
    }
    let bucket = |b: u16| {
        buckets
            .get(&b)
            .map_or(Hash([0; 32]), |l| merkle::node_hash(l.values()))
    };
    let level1: Vec<Hash> = (0..256u16)
        .map(|p| {
            merkle::node_hash(
                &(0..256u16)
                    .map(|i| bucket((p << 8) | i))
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    merkle::node_hash(&level1)
}

/// Commit `k` with content `c` to `m` and to the model `want`.
fn put(
    m: &Manifest,
    want: &mut BTreeMap<String, Vec<u8>>,
    k: String,
    c: Vec<u8>,
) -> Result<(), Error> {
    m.commit_object(&k, &rec(1, &c), &chunk(&c))?;
    want.insert(k, c);
    Ok(())
}

/// The first key `prefix{i}` whose bucket `pick` accepts.
fn key_in(prefix: &str, pick: impl Fn(u16) -> bool) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|k| pick(merkle::bucket_of(k)))
        .unwrap_or_default()
}

/// Rounds of writes that leave dirty buckets next to each other, apart
/// with clean buckets holding leaves between them, emptied, and at the
/// ends of the key space: after each, the recomputed root is the one the
/// definition gives for the objects written so far.
#[test]
fn every_recompute_gives_the_root_of_the_definition() -> Result<(), Error> {
    let d = tempdir()?;
    let m = Manifest::open(d.path())?;
    let mut want: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let check = |m: &Manifest, want: &BTreeMap<String, Vec<u8>>| -> Result<(), Error> {
        assert_eq!(m.merkle_root()?, root_by_definition(want));
        Ok(())
    };
    // Leaves in thousands of buckets.
    for i in 0..3000 {
        put(&m, &mut want, format!("k{i}"), vec![1, (i % 7) as u8])?;
    }
    check(&m, &want)?;
    // Every third key changed: clean buckets with leaves between dirty ones.
    for i in (0..3000).step_by(3) {
        put(&m, &mut want, format!("k{i}"), vec![2])?;
    }
    check(&m, &want)?;
    // One key in a hundred changed and as many added.
    for i in (0..3000).step_by(100) {
        put(&m, &mut want, format!("k{i}"), vec![3])?;
        put(&m, &mut want, format!("new{i}"), vec![3])?;
    }
    check(&m, &want)?;
    // The first and the last buckets alone.
    put(&m, &mut want, key_in("x", |b| b < 4), vec![4])?;
    put(&m, &mut want, key_in("y", |b| b > 65_531), vec![4])?;
    check(&m, &want)?;
    // Buckets emptied by removals hash to zero again.
    let gone: Vec<String> = want.keys().filter(|k| k.ends_with('7')).cloned().collect();
    for k in gone {
        m.remove_object(&k)?;
        want.remove(&k);
    }
    check(&m, &want)?;
    Ok(())
}
