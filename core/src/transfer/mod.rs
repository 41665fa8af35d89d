//! One object's trip: read the source once as a stream, cut it into
//! content-defined chunks, hash it, write it to the target (one PUT, or a
//! multipart upload whose parts follow the target's limits), or materialise
//! it by server-side copy when the target already holds the same content.
//! The manifest is written only after the target confirmed the object, so a
//! record always describes bytes that are really there.

mod adopt;
pub mod attrs;
mod ctx;
mod dedup;
pub mod gate;
mod parts;
pub mod plan;
pub(crate) mod read;
mod record;
pub(crate) mod resume;
mod starts;

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use object_store::path::Path;
use object_store::{Attributes, GetResult, ObjectMeta, PutOptions, PutPayload};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

use crate::base::error::{Error, FailureKind, store_err};
use crate::base::now_ms;
use crate::content::digest::Digester;
use crate::content::hash::Hash;
use crate::content::published::Published;
use crate::manifest::{ObjectState, SourceVersion, UploadHead, normalize_etag};
use crate::stores::StoreKind;
use crate::stores::rawlist::Md5Put;
use crate::stores::throttle::watch_answers;
pub(crate) use ctx::{ByteStream, Stop};
pub use ctx::{Ctx, Outcome, PartRecorded, listed_version};
use dedup::Large;
use plan::{Parts, Plan};
use record::{Commit, Replicated};
/// Times one object starts over because its source changed under it.
const MAX_RESTARTS: usize = 3;

tokio::task_local! {
    /// Told once the copy running in this task has its bytes at the target
    /// and waits only for them to be durable ([`Ctx::replicate`]).
    static WRITTEN: Cell<Option<tokio::sync::oneshot::Sender<()>>>;
}

/// The running copy's bytes are at the target; only their durability is
/// awaited now (a shared `syncfs`): tell whoever asked, once.
fn tell_written() {
    let _ = WRITTEN.try_with(|w| w.take().map(|tx| tx.send(())));
}

impl Ctx {
    /// Replicate one listed object. A failure after answers that asked to
    /// slow down is named throttled.
    ///
    /// The common case, an object unchanged since it was recorded, is
    /// settled inline, without a task or the transfer's large future.
    /// Any other object is copied as a task of its own, so the objects in
    /// flight share the runtime's worker threads: polled inside a pass's
    /// stream, every object's CPU work (manifest lookups and commits,
    /// hashing, request signing) ran on the one thread driving the pass,
    /// whatever the number of cores (74 % of a small-object pass's samples;
    /// spawning unchanged objects too cost about a tenth of a no-op pass).
    /// Dropping the returned future (a pass cut short) aborts the task at
    /// its next await, as dropping the copy's own future would.
    ///
    /// `written`, if given, is told when the object's bytes are at a local
    /// target and only their durability is awaited (objects written
    /// meanwhile share one `syncfs`): the caller may start another object
    /// while this one waits. The returned future still ends only once the
    /// object is durable and recorded.
    pub async fn replicate(
        self: &Arc<Self>,
        meta: &ObjectMeta,
        dry_run: bool,
        written: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<Outcome, Error> {
        if let Some(o) = self.settled(meta, dry_run)? {
            return Ok(o);
        }
        let (ctx, m) = (Arc::clone(self), meta.clone());
        // The task keeps the pass's span, so its logs still name the pass.
        let copy = WRITTEN
            .scope(Cell::new(written), async move { ctx.copy(&m).await })
            .in_current_span();
        let task = AbortOnDropHandle::new(tokio::spawn(copy));
        match task.await {
            Ok(r) => r,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Cancelled: only by the runtime shutting down.
            Err(_) => Err(Error::ShuttingDown),
        }
    }

    /// What the manifest alone says of `meta`, without a request: already
    /// replicated at this version, or (a dry run) would be copied; `None`
    /// when it must be copied ([`Ctx::copy`]).
    fn settled(&self, meta: &ObjectMeta, dry_run: bool) -> Result<Option<Outcome>, Error> {
        if self.is_replicated(meta.location.as_ref(), &listed_version(meta))? {
            return Ok(Some(Outcome::Unchanged));
        }
        Ok(dry_run.then_some(Outcome::WouldCopy))
    }

    /// Replicate an object [`Ctx::settled`] did not settle.
    async fn copy(&self, meta: &ObjectMeta) -> Result<Outcome, Error> {
        let listed = listed_version(meta);
        match Box::pin(watch_answers(self.replicate_watched(meta, listed))).await {
            (Err(e), true) if e.kind() == FailureKind::Transient => {
                Err(Error::Throttled(Box::new(e)))
            }
            (r, _) => r,
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(key = %meta.location))]
    async fn replicate_watched(
        &self,
        meta: &ObjectMeta,
        listed: SourceVersion,
    ) -> Result<Outcome, Error> {
        let key = meta.location.as_ref();
        let _writing = self.gate.begin_write(key).await;
        // Another task may have finished this key while we waited.
        if self.is_replicated(key, &listed)? {
            return Ok(Outcome::Unchanged);
        }
        let mut last = String::new();
        for _ in 0..MAX_RESTARTS {
            match self.replicate_once(meta, &listed).await {
                Ok(o) => return Ok(o),
                Err(Stop::Fail(e)) => {
                    // Parts that failed a check must not be continued.
                    if e.is_integrity() {
                        self.drop_recorded_upload(key).await?;
                    }
                    return Err(e);
                }
                Err(Stop::Paused) => return Ok(Outcome::Paused),
                Err(Stop::Restart(why)) => {
                    self.stats.uploads_restarted.fetch_add(1, Relaxed);
                    tracing::info!(key, reason = %why, "starting the object over");
                    self.drop_recorded_upload(key).await?;
                    last = why;
                }
            }
        }
        Err(Error::SourceChanged(format!(
            "started over {MAX_RESTARTS} times, last because: {last}; retried next pass"
        )))
    }

    /// Abort and forget `key`'s recorded upload, if it has one.
    async fn drop_recorded_upload(&self, key: &str) -> Result<(), Error> {
        if let (Some(mp), Some(head)) = (&self.target.multipart, self.manifest.upload(key)?) {
            self.abandon(mp, key, &head).await?;
        }
        Ok(())
    }

    fn is_replicated(&self, key: &str, listed: &SourceVersion) -> Result<bool, Error> {
        Ok(self
            .manifest
            .object(key)?
            .is_some_and(|r| r.state == ObjectState::Complete && r.source.same_as(listed)))
    }

    async fn replicate_once(
        &self,
        meta: &ObjectMeta,
        listed: &SourceVersion,
    ) -> Result<Outcome, Stop> {
        let key = meta.location.as_ref();
        if let Some(mp) = &self.target.multipart
            && let Some(head) = self.manifest.upload(key)?
        {
            if !head.source.same_as(listed) {
                return Err(Stop::Restart(
                    "source changed since the upload started".into(),
                ));
            }
            let (in_flight, need) = self.parts_budget(head.part_size);
            let _permit = self.budget(need).await?;
            // Boxed: a rare path, kept out of every object's future.
            return Box::pin(self.upload_resume(mp, &meta.location, &head, in_flight)).await;
        }
        let Some(open) = self.open(meta).await? else {
            return Ok(Outcome::Vanished);
        };
        let version = read_version(listed, &open.got);
        let attributes = self.target_attributes(key, &open.got, &version);
        let attrs_digest = attrs::digest(&attributes, attrs::own_mtime(&open.got.attributes));
        let if_match = open.got.meta.e_tag.clone();
        let published = self.published(if_match.as_deref());
        let plan = open.plan;
        let mut stream = self.rest_of(&meta.location, plan, open.got);
        if self
            .adoptable(&meta.location, version.size, &attrs_digest)
            .await?
        {
            let parts = match plan {
                Plan::Single => None,
                Plan::Multipart(l) => Some(l.part_size),
            };
            let size = version.size;
            if let Some((digest, target_etag)) = self
                .same_at_target(
                    &meta.location,
                    (size, parts),
                    stream,
                    published,
                    &attrs_digest,
                )
                .await?
            {
                let r = Replicated {
                    source: version,
                    digest,
                    target_etag,
                    attrs_digest,
                };
                return Ok(self
                    .record(&meta.location, r, Commit::Object, Outcome::Adopted)
                    .await?);
            }
            stream = self.reopen(&meta.location, &version).await?;
        }
        let object = Object {
            loc: &meta.location,
            version,
            attributes,
            attrs_digest,
            in_flight: open.in_flight,
            published,
        };
        match plan {
            Plan::Single => Ok(self.copy_single(object, stream).await?),
            // Boxed: objects of a part or more are few and large; the
            // future of every small object stays small.
            Plan::Multipart(layout) => {
                Box::pin(self.copy_multipart(object, layout, if_match, stream)).await
            }
        }
    }

    /// Reserve memory for `meta` and open its first GET (memory first: a
    /// response body must not wait unread for a permit, servers time out
    /// idle connections). `None`: the object is gone.
    async fn open(&self, meta: &ObjectMeta) -> Result<Option<Opened>, Stop> {
        let (mut plan, mut in_flight, mut permit) = self.reserve(meta.size).await?;
        let Some(mut got) = self.open_source(&meta.location, plan, meta.size).await? else {
            return Ok(None);
        };
        let size = got.meta.size;
        if size != meta.size {
            // Changed since the listing: plan for the size there is now.
            drop(permit);
            (plan, in_flight, permit) = self.reserve(size).await?;
            got = match self.open_source(&meta.location, plan, size).await? {
                Some(g) if g.meta.size == size => g,
                Some(_) => return Err(Stop::Restart("source changing while being read".into())),
                None => return Ok(None),
            };
        }
        Ok(Some(Opened {
            plan,
            in_flight,
            _permit: permit,
            got,
        }))
    }

    /// The attributes the target gets for `key` (none where it keeps none).
    fn target_attributes(&self, key: &str, got: &GetResult, version: &SourceVersion) -> Attributes {
        if !self.target.supports_attributes() {
            return Attributes::new();
        }
        attrs::for_target(
            &got.attributes,
            key,
            version.last_modified_ms,
            self.source.kind == StoreKind::Local,
        )
    }

    /// A single PUT, or a server-side copy of identical content.
    #[tracing::instrument(level = "debug", skip_all, fields(size = o.version.size))]
    async fn copy_single(&self, o: Object<'_>, mut stream: ByteStream) -> Result<Outcome, Error> {
        let size = o.version.size;
        // The answer's pieces as they came, sent as one payload: no copy
        // into a buffer of the object's size (fresh pages the kernel
        // faults in and zeroes, as much CPU as the copy itself).
        let mut pieces = Vec::new();
        let mut dig = Digester::new(self.chunking, None, o.published);
        while let Some(b) = self.read_next(&mut stream, &mut dig, size).await? {
            pieces.push(b);
        }
        let digest = dig.finish(size)?;
        let body: PutPayload = pieces.into_iter().collect();
        let held = match self
            .manifest
            .content_holder(&digest.blake3, size, &o.attrs_digest)?
        {
            Some(holder) => {
                self.copy_held(&holder, o.loc, &digest.blake3, size, &o.attrs_digest)
                    .await?
            }
            None => None,
        };
        let (target_etag, outcome) = match held {
            Some(etag) => (Some(etag), Outcome::Deduplicated),
            None => {
                let opts = PutOptions {
                    attributes: o.attributes,
                    ..PutOptions::default()
                };
                let put = match (o.published, self.target.md5_puts()) {
                    (Some(p), Some(raw)) => {
                        let sent = raw.put_md5(o.loc.as_ref(), body, p.md5, &opts.attributes);
                        match sent.await.map_err(|e| store_err("write target", e))? {
                            Md5Put::Stored(r) => r,
                            Md5Put::Refused(answer) => {
                                return Err(Error::DigestRefused {
                                    what: p.what,
                                    answer,
                                });
                            }
                        }
                    }
                    _ => self
                        .target
                        .put(o.loc, body, opts)
                        .await
                        .map_err(|e| store_err("write target", e))?,
                };
                self.stats.bytes_written.fetch_add(size, Relaxed);
                (put.e_tag, Outcome::Copied)
            }
        };
        let r = Replicated {
            source: o.version,
            digest,
            target_etag,
            attrs_digest: o.attrs_digest,
        };
        self.record(o.loc, r, Commit::Object, outcome).await
    }

    /// A large object: a server-side copy of identical content when the
    /// target holds it, else a multipart upload (recorded part by part
    /// where the target has the low-level multipart API).
    #[tracing::instrument(level = "debug", skip_all, fields(size = layout.size, parts = layout.count()))]
    async fn copy_multipart(
        &self,
        o: Object<'_>,
        layout: Parts,
        if_match: Option<String>,
        stream: ByteStream,
    ) -> Result<Outcome, Stop> {
        let size = layout.size;
        let stream = match self
            .dedup_large(
                o.loc,
                size,
                layout.part_size,
                stream,
                &o.attrs_digest,
                o.published,
            )
            .await?
        {
            Large::Copied(digest, etag) => {
                let r = Replicated {
                    source: o.version,
                    digest,
                    target_etag: Some(etag),
                    attrs_digest: o.attrs_digest,
                };
                return Ok(self
                    .record(o.loc, r, Commit::Object, Outcome::Deduplicated)
                    .await?);
            }
            Large::Upload(s) => s,
            Large::Reread => self.reopen(o.loc, &o.version).await?,
        };
        if let Some(mp) = &self.target.multipart {
            let head = UploadHead {
                upload_id: String::new(),
                source: o.version,
                if_match,
                part_size: layout.part_size,
                attrs_digest: o.attrs_digest,
                started_ms: now_ms(),
            };
            let md5 = o.published.is_some();
            return self
                .upload_fresh(mp, o.loc, head, o.attributes, (o.in_flight, md5), stream)
                .await;
        }
        let (digest, target_etag) = self
            .upload_unrecorded(
                o.loc,
                layout,
                o.in_flight,
                stream,
                o.attributes,
                o.published,
            )
            .await?;
        let r = Replicated {
            source: o.version,
            digest,
            target_etag,
            attrs_digest: o.attrs_digest,
        };
        Ok(self
            .record(o.loc, r, Commit::Object, Outcome::Copied)
            .await?)
    }
}

/// An object's first GET, planned, with its memory reserved.
struct Opened {
    plan: Plan,
    in_flight: usize,
    _permit: OwnedSemaphorePermit,
    got: GetResult,
}

/// One object on its way, once its source version is known.
struct Object<'a> {
    loc: &'a Path,
    /// The version being copied.
    version: SourceVersion,
    /// What the target gets with it, and their digest.
    attributes: Attributes,
    attrs_digest: Hash,
    /// Parts in flight, for a multipart upload.
    in_flight: usize,
    /// The MD5 the source publishes for it, which its bytes must match.
    published: Option<Published>,
}

/// The version a read found: the listed one, unless the object changed
/// between the listing and the read (then what was read is recorded).
fn read_version(listed: &SourceVersion, got: &GetResult) -> SourceVersion {
    let got_etag = normalize_etag(got.meta.e_tag.as_deref());
    if listed.size != got.meta.size
        || (listed.etag.is_some() && got_etag.is_some() && listed.etag != got_etag)
    {
        return listed_version(&got.meta);
    }
    let mut version = listed.clone();
    if version.etag.is_none() {
        version.etag = got_etag;
    }
    version
}
