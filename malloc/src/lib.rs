//! Caps glibc's malloc arenas before the runtime starts its threads.
//!
//! glibc gives threads that allocate at the same time arenas of their own,
//! up to 8 per core, and memory freed into an arena stays with it. A pass
//! allocates from the runtime's workers, the blocking pool's threads (up to
//! hundreds of them, reading and writing small files and committing to
//! RocksDB) and RocksDB's own: measured over 10⁶ tiny local files, the
//! default arenas peaked at 157 MiB, two at 128 MiB, for the same work in
//! the same time (bench/README.md, Performance). Two is Ruby's choice for
//! the same reason.
//!
//! `MALLOC_ARENA_MAX` in the environment, read by glibc itself, wins: the
//! cap is set only when it is absent. Elsewhere than glibc this does
//! nothing.

/// Arenas allowed when the environment does not say.
pub const ARENAS: i32 = 2;

/// Cap the arenas at [`ARENAS`] unless `MALLOC_ARENA_MAX` is set. Call it
/// first in `main`, before any thread is started: the cap bounds the
/// arenas created after it, not those already there. Whether the cap was
/// set.
pub fn cap_arenas() -> bool {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return false;
    }
    set_arena_max(ARENAS)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_arena_max(n: i32) -> bool {
    // SAFETY: `mallopt` takes two integers and changes an allocator
    // setting under the allocator's own lock; it touches no Rust memory.
    #[allow(unsafe_code)]
    let r = unsafe { libc::mallopt(libc::M_ARENA_MAX, n) };
    r == 1
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_arena_max(_n: i32) -> bool {
    false
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_accepts_the_cap() {
        assert!(super::set_arena_max(super::ARENAS));
    }
}
