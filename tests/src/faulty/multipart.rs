//! The multipart half of [`Faulty`]: the low-level API (`MultipartStore`:
//! start, parts, completion, abort) and the uploads `put_multipart` hands
//! out, each call through the same rules and counters as the rest.

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{
    MultipartId, MultipartUpload, PutMultipartOptions, PutPayload, PutResult, Result, UploadPart,
};

use super::{Fault, Faulty, OPS, Op, Plan, answer, check, decide};

/// A multipart upload whose parts and completion go through the rules.
pub(super) struct FaultyUpload {
    inner: Box<dyn MultipartUpload>,
    key: String,
    plan: Arc<Mutex<Plan>>,
    calls: Arc<[AtomicU64; OPS]>,
    injected: Arc<AtomicU64>,
}

impl FaultyUpload {
    /// `inner`, an upload to `key` that `store` started, under its rules.
    pub(super) fn new(store: &Faulty, inner: Box<dyn MultipartUpload>, key: &str) -> Self {
        Self {
            inner,
            key: key.to_owned(),
            plan: Arc::clone(&store.plan),
            calls: Arc::clone(&store.calls),
            injected: Arc::clone(&store.injected),
        }
    }

    fn decide(&self, op: Op) -> Option<Fault> {
        decide(&self.plan, &self.calls, &self.injected, op, &self.key)
    }
}

impl fmt::Debug for FaultyUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyUpload")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        match check(self.decide(Op::PutPart), Op::PutPart, &self.key) {
            Err(e) => Box::pin(async move { Err(e) }),
            Ok(_) => self.inner.put_part(data),
        }
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let fault = check(self.decide(Op::Complete), Op::Complete, &self.key)?;
        let done = self.inner.complete().await;
        answer(fault.as_ref(), Op::Complete, &self.key, done)
    }

    async fn abort(&mut self) -> Result<()> {
        let fault = check(self.decide(Op::Abort), Op::Abort, &self.key)?;
        let done = self.inner.abort().await;
        answer(fault.as_ref(), Op::Abort, &self.key, done)
    }
}

#[async_trait::async_trait]
impl MultipartStore for Faulty {
    async fn create_multipart(&self, path: &Path) -> Result<MultipartId> {
        self.create_multipart_opts(path, PutMultipartOptions::default())
            .await
    }

    async fn create_multipart_opts(
        &self,
        path: &Path,
        opts: PutMultipartOptions,
    ) -> Result<MultipartId> {
        let key = path.as_ref();
        check(self.decide(Op::CreateUpload, key), Op::CreateUpload, key)?;
        self.api(key)?.create_multipart_opts(path, opts).await
    }

    async fn put_part(
        &self,
        path: &Path,
        id: &MultipartId,
        part_idx: usize,
        data: PutPayload,
    ) -> Result<PartId> {
        let key = path.as_ref();
        check(self.decide(Op::PutPart, key), Op::PutPart, key)?;
        self.api(key)?.put_part(path, id, part_idx, data).await
    }

    async fn complete_multipart(
        &self,
        path: &Path,
        id: &MultipartId,
        parts: Vec<PartId>,
    ) -> Result<PutResult> {
        let key = path.as_ref();
        let fault = check(self.decide(Op::Complete, key), Op::Complete, key)?;
        let done = self.api(key)?.complete_multipart(path, id, parts).await;
        answer(fault.as_ref(), Op::Complete, key, done)
    }

    async fn abort_multipart(&self, path: &Path, id: &MultipartId) -> Result<()> {
        let key = path.as_ref();
        let fault = check(self.decide(Op::Abort, key), Op::Abort, key)?;
        let done = self.api(key)?.abort_multipart(path, id).await;
        answer(fault.as_ref(), Op::Abort, key, done)
    }
}

impl Faulty {
    fn api(&self, key: &str) -> Result<&dyn MultipartStore> {
        self.multipart
            .as_deref()
            .ok_or_else(|| object_store::Error::NotSupported {
                source: format!("{key}: the wrapped store has no multipart API").into(),
            })
    }
}
