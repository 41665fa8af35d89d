//! Errors at the core boundary. Variants drive behaviour (exit codes,
//! retry or not); messages are one line and name the problem.

use std::path::PathBuf;

/// What went wrong, by the category a caller acts on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store URL cannot be used (unknown scheme, missing bucket name…).
    #[error("invalid store URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it is refused.
        reason: String,
    },
    /// An option has a value passeur cannot work with.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// The bucket, container or directory does not exist.
    #[error("{store}: bucket, container or directory not found")]
    MissingContainer {
        /// Store URL.
        store: String,
    },
    /// The endpoint does not answer.
    #[error("{store}: endpoint unreachable: {detail}")]
    Unreachable {
        /// Store URL.
        store: String,
        /// Transport error.
        detail: String,
    },
    /// The store refused our credentials.
    #[error("{store}: access denied (check credentials): {detail}")]
    AccessDenied {
        /// Store URL.
        store: String,
        /// Server's reason.
        detail: String,
    },
    /// The state directory cannot be created, opened or written.
    #[error("state directory {}: {detail}", path.display())]
    StateDir {
        /// Directory given.
        path: PathBuf,
        /// Why it is unusable.
        detail: String,
    },
    /// Another process holds the state directory (RocksDB's lock).
    #[error(
        "state directory {}: in use by another passeur process (RocksDB lock held): stop it (the service?) first",
        path.display()
    )]
    StateInUse {
        /// Directory given.
        path: PathBuf,
    },
    /// The state directory was written by another schema version.
    #[error(
        "state directory {} has schema version {found}; this passeur reads version {expected}",
        path.display()
    )]
    SchemaMismatch {
        /// Directory given.
        path: PathBuf,
        /// Version found on disk.
        found: u32,
        /// Version this build reads.
        expected: u32,
    },
    /// The state directory belongs to another job (source, target or
    /// chunking parameters differ).
    #[error("state directory {}: {detail}", path.display())]
    StateMismatch {
        /// Directory given.
        path: PathBuf,
        /// What differs.
        detail: String,
    },
    /// A trash prefix among the keys the job replicates: a source key
    /// under it would be replicated into the trash (or a trashed object
    /// overwritten by one).
    #[error(
        "trash prefix {prefix:?} is not excluded by the job's filters: source keys under {prefix}/ would be replicated into the trash; exclude \"{prefix}/**\""
    )]
    TrashOverlap {
        /// The trash prefix, without surrounding slashes.
        prefix: String,
    },
    /// The manifest database failed (an I/O error, a full disk…).
    #[error("manifest database: {source}")]
    Db {
        /// RocksDB's error.
        #[from]
        source: rocksdb::Error,
    },
    /// Bytes read from the source do not match the checksum the source
    /// published for them (an S3 object's MD5 ETag, an Azure blob's
    /// Content-MD5): altered on the way.
    #[error(
        "source bytes differ from the source's checksum ({what}: published {published}, read {read}); set check-md5 = false in [source] if the source's MD5s are not of the bytes (S3 SSE-KMS or SSE-C ETags, an Azure Content-MD5 set wrong by its writer)"
    )]
    SourceIntegrity {
        /// Which checksum.
        what: &'static str,
        /// What the source published.
        published: String,
        /// What the bytes read hash to.
        read: String,
    },
    /// A part of a recorded upload, read again to carry the source's MD5
    /// on, is not the bytes sent to the target before: one of the two
    /// reads was altered on the way.
    #[error(
        "part {index} read again differs from the bytes sent for it before: a read was altered on the way; the upload starts over"
    )]
    SentPartDiffers {
        /// The part, from 0.
        index: u32,
    },
    /// The target refused a body sent with the source's MD5
    /// (`Content-MD5`) as not hashing to it. passeur's read matched that
    /// MD5: the bytes were altered on their way to the target.
    #[error(
        "the target refused the body as not hashing to the source's {what} sent with it ({answer}): altered on its way to the target"
    )]
    DigestRefused {
        /// Which checksum of the source.
        what: &'static str,
        /// The target's answer.
        answer: String,
    },
    /// The state directory holds something this passeur cannot read or
    /// that contradicts itself: refused, never re-initialised.
    #[error("manifest corrupt: {0}")]
    Corrupt(String),
    /// A store operation failed.
    #[error(transparent)]
    Store(#[from] object_store::Error),
    /// A store operation on one object failed; the store's error is kept,
    /// so the failure's kind ([`Error::kind`]) survives into the summary.
    #[error("{op}: {}", error_chain(source))]
    StoreOp {
        /// What passeur was doing ("read source", "upload part"…).
        op: &'static str,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
    /// A multipart upload's completion was answered with an error, and the
    /// target, read back, does not hold the object the parts make: the
    /// upload is dropped, and the next pass starts the object over.
    #[error(
        "complete multipart upload: {}; read back, the target {found}: the upload is dropped, the next pass starts over",
        error_chain(source)
    )]
    CompletionUnconfirmed {
        /// The completion's error.
        #[source]
        source: object_store::Error,
        /// What the read-back found instead.
        found: String,
    },
    /// The source answered a read of the object with 409 Conflict, which
    /// object_store reports as "already exists": an Azure blob in the
    /// Archive tier (`BlobArchived`) is read only once rehydrated.
    /// Permanent until someone does.
    #[error(
        "read source: the store refused to read it with 409 Conflict (an Azure blob in the Archive tier is read only once rehydrated to Hot or Cool; `passeur plan` lists them): {}",
        error_chain(source)
    )]
    SourceConflict {
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
    /// The source object changed while it was being copied (size, ETag
    /// or a refused If-Match): retried by the next pass.
    #[error("{0}")]
    SourceChanged(String),
    /// A key object_store cannot carry as a path.
    #[error("key {key:?} cannot be carried: {source}")]
    BadKey {
        /// The key.
        key: String,
        /// Why object_store refuses it.
        #[source]
        source: object_store::path::Error,
    },
    /// A source key passeur cannot replicate (it is named, not skipped).
    #[error("{key:?}: {reason}")]
    NotCarried {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    /// The source's listing named `listed`, which is not there, while
    /// `key` is: its list answers said keys were URL-encoded and this one
    /// was not. The listing cannot be trusted for deletes this pass.
    #[error(
        "{key:?} was listed as {listed:?}: the store's listing says its keys are URL-encoded but left this one as it is; not replicated"
    )]
    MisreadKey {
        /// The key as the listing gave it.
        listed: String,
        /// The key the store holds.
        key: String,
    },
    /// A trashed copy of the key is already in the trash: not overwritten.
    #[error("{trashed} is already in the trash: not overwritten, {key} not deleted")]
    TrashOccupied {
        /// The key to delete.
        key: String,
        /// Where its trashed copy would go.
        trashed: String,
    },
    /// An object larger than the target's part limits allow.
    #[error(
        "object of {size} bytes exceeds the target's limit of {max_parts} parts of {max_part} bytes"
    )]
    TooLarge {
        /// Its size.
        size: u64,
        /// The target's part count limit.
        max_parts: u64,
        /// The target's part size limit.
        max_part: u64,
    },
    /// A part number beyond what a multipart upload can carry.
    #[error("part {0} out of range")]
    PartOutOfRange(u64),
    /// Part hashes that cannot be merged (a recorded upload that does not
    /// fit its object).
    #[error(transparent)]
    PartHash(#[from] PartHashError),
    /// A local file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What passeur was doing, and on which file.
        what: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The store kept answering 429 / 503 (throttling) until the client's
    /// retries ran out.
    #[error("{0} (the store kept answering 429/503: throttled)")]
    Throttled(#[source] Box<Error>),
    /// The Azure change feed holds what passeur cannot read: a damaged or
    /// unknown chunk file, a manifest it cannot parse, a gap.
    #[error("change feed {path}: {detail}")]
    ChangeFeed {
        /// The feed file (path in the `$blobchangefeed` container).
        path: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The runtime is shutting down: a task or the memory budget closed.
    #[error("shutting down")]
    ShuttingDown,
}

/// Why parts cannot be hashed or merged as asked (`content::parthash`;
/// defined here so that the lowest layer names every error it wraps).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("part hashing: {0}")]
pub struct PartHashError(pub(crate) String);

/// `key` as a store path, or the error naming it.
pub(crate) fn parse_key(key: &str) -> Result<object_store::path::Path, Error> {
    object_store::path::Path::parse(key).map_err(|source| Error::BadKey {
        key: key.to_owned(),
        source,
    })
}

/// A failed store call of one object, as its error.
pub(crate) fn store_err(op: &'static str, source: object_store::Error) -> Error {
    Error::StoreOp { op, source }
}

/// What kind of failure ended one object: what an operator can expect of
/// the next pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// The store answered that the object (or upload) is not there.
    NotFound,
    /// A condition did not hold (If-Match, If-None-Match): something
    /// changed the object between two requests.
    Precondition,
    /// The store refused the request (access denied, unauthenticated).
    Denied,
    /// The store kept answering 429 / 503 (SlowDown, ServerBusy) until the
    /// retries ran out: the next pass tries again; lower the concurrency or
    /// the request rate if it persists.
    Throttled,
    /// The connection failed, timed out or was cut, or the store kept
    /// answering other errors until the retries ran out (5xx); also any
    /// other error object_store reports only as generic: the next pass
    /// tries again.
    Transient,
    /// Anything else: passeur refused the object (a key it cannot carry,
    /// the source changing while read, a limit of the target), or the
    /// store rejected it for good.
    Permanent,
}

impl FailureKind {
    /// The kind as the summary and the report name it.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::NotFound => "not-found",
            FailureKind::Precondition => "precondition",
            FailureKind::Denied => "denied",
            FailureKind::Throttled => "throttled",
            FailureKind::Transient => "transient",
            FailureKind::Permanent => "permanent",
        }
    }
}

impl Error {
    /// The kind of this failure, from the store's error where there is one
    /// (never from message text).
    pub fn kind(&self) -> FailureKind {
        use object_store::Error as E;
        match self {
            Error::Store(e) | Error::StoreOp { source: e, .. } => match e {
                E::NotFound { .. } => FailureKind::NotFound,
                E::Precondition { .. } | E::NotModified { .. } | E::AlreadyExists { .. } => {
                    FailureKind::Precondition
                }
                E::PermissionDenied { .. } | E::Unauthenticated { .. } => FailureKind::Denied,
                // A local filesystem's answer no retry changes.
                E::Generic { source, .. } if refused_for_good(source.as_ref()) => {
                    FailureKind::Permanent
                }
                // Transport errors, timeouts, and 5xx / 429 answers after
                // object_store's retries all arrive as Generic (its retry
                // error, which knows the status, is private to it).
                E::Generic { .. } => FailureKind::Transient,
                _ => FailureKind::Permanent,
            },
            Error::Throttled(_) => FailureKind::Throttled,
            Error::Unreachable { .. } | Error::ShuttingDown => FailureKind::Transient,
            Error::AccessDenied { .. } => FailureKind::Denied,
            Error::SourceChanged(_) => FailureKind::Precondition,
            // Whatever the completion's answer said, the next pass uploads
            // the object afresh.
            Error::CompletionUnconfirmed { .. } => FailureKind::Transient,
            // Bytes altered on the way: another read may well be right.
            Error::SourceIntegrity { .. }
            | Error::SentPartDiffers { .. }
            | Error::DigestRefused { .. } => FailureKind::Transient,
            _ => FailureKind::Permanent,
        }
    }
}

/// Whether a local filesystem refused a path for good somewhere in `e`'s
/// chain: a file where a directory must be (keys `a` and `a/b`), a
/// directory where a file must be, a name too long or otherwise invalid.
fn refused_for_good(e: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind as K;
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                K::NotADirectory | K::IsADirectory | K::InvalidFilename
            )
        {
            return true;
        }
        next = e.source();
    }
    false
}

impl Error {
    /// Whether the state directory's database failed to read or write
    /// (RocksDB's I/O error kind: a full disk, a file gone).
    pub fn is_state_io(&self) -> bool {
        matches!(self, Error::Db { source } if source.kind() == rocksdb::ErrorKind::IOError)
    }

    /// Whether bytes read failed a check of their integrity: an upload
    /// holding them must not be completed, nor continued.
    pub fn is_integrity(&self) -> bool {
        matches!(
            self,
            Error::SourceIntegrity { .. }
                | Error::SentPartDiffers { .. }
                | Error::DigestRefused { .. }
        )
    }
}

/// Classify an object_store error met while probing a store.
pub fn classify_probe(store: &str, err: object_store::Error) -> Error {
    use object_store::Error as E;
    match err {
        E::NotFound { .. } => Error::MissingContainer {
            store: store.to_owned(),
        },
        E::PermissionDenied { source, .. } | E::Unauthenticated { source, .. } => {
            Error::AccessDenied {
                store: store.to_owned(),
                detail: one_line(&source.to_string()),
            }
        }
        other => {
            let text = error_chain(&other);
            let lower = text.to_ascii_lowercase();
            if lower.contains("nosuchbucket")
                || lower.contains("containernotfound")
                || lower.contains("no such file")
            {
                Error::MissingContainer {
                    store: store.to_owned(),
                }
            } else if has_status(&lower, "403")
                || lower.contains("signature")
                || lower.contains("authoriz")
                || lower.contains("accessdenied")
            {
                Error::AccessDenied {
                    store: store.to_owned(),
                    detail: one_line(&text),
                }
            } else {
                Error::Unreachable {
                    store: store.to_owned(),
                    detail: one_line(&text),
                }
            }
        }
    }
}

/// Whether `text` holds the HTTP status `code` as a number of its own (not
/// inside a longer one, such as the port in `127.0.0.1:38403`).
fn has_status(text: &str, code: &str) -> bool {
    text.match_indices(code).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + code.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit() || c == ':')
            && !after.is_some_and(|c| c.is_ascii_digit())
    })
}

/// An error and its sources on one line.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let t = e.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = e.source();
    }
    one_line(&s)
}

/// Collapse whitespace so a message fits on one line.
pub fn one_line(s: &str) -> String {
    let joined = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.len() > 400 {
        let mut end = 400;
        while !joined.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &joined[..end])
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_is_not_a_status() {
        assert!(!has_status(
            "get http://127.0.0.1:38403/bucket: connection refused",
            "403"
        ));
        assert!(!has_status("port 14030", "403"));
        assert!(has_status("server returned 403 forbidden", "403"));
        assert!(has_status("status: 403", "403"));
    }

    #[test]
    fn a_path_a_local_filesystem_refuses_is_a_permanent_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a"), b"file").expect("seed");
        // `a` is a file: `a/b` cannot be made, however often tried.
        let io = std::fs::create_dir_all(dir.path().join("a/b")).expect_err("a file in the way");
        let local = |e: std::io::Error| {
            Error::StoreOp {
                op: "write",
                source: object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: Box::new(e),
                },
            }
            .kind()
        };
        assert_eq!(local(io), FailureKind::Permanent);
        let long = std::fs::write(dir.path().join("n".repeat(300)), b"x").expect_err("too long");
        assert_eq!(local(long), FailureKind::Permanent);
        let cut = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "cut");
        assert_eq!(local(cut), FailureKind::Transient);
    }
}
