use std::sync::atomic::AtomicUsize;

use futures::StreamExt;

use super::*;

fn window(max: usize) -> (Arc<Window>, Arc<Pressure>, Arc<Stats>) {
    let p = Arc::new(Pressure::default());
    let stats = Arc::new(Stats::default());
    (
        Window::new(max, vec![Arc::clone(&p)], Arc::clone(&stats)),
        p,
        stats,
    )
}

#[tokio::test]
async fn halves_once_per_window_then_recovers() {
    let (w, p, stats) = window(8);
    let mut slots: Vec<Slot> = Vec::new();
    for _ in 0..8 {
        slots.push(w.acquire().await);
    }
    // Every object in flight saw throttling: one halving, not three.
    p.throttled.fetch_add(5, Relaxed);
    for _ in 0..8 {
        slots.pop();
    }
    assert_eq!(w.limit(), 4);
    assert_eq!(stats.snapshot().throttled, 5);
    // Calm: +1 per `limit` completions, back to 8 and no further.
    let mut done = 0;
    while w.limit() < 8 {
        drop(w.acquire().await);
        done += 1;
        assert!(done < 100, "never recovered");
    }
    assert_eq!(done, 4 + 5 + 6 + 7);
    for _ in 0..50 {
        drop(w.acquire().await);
    }
    assert_eq!(w.limit(), 8);
    let s = stats.snapshot();
    assert_eq!((s.concurrency, s.concurrency_min), (8, 4));
}

#[tokio::test]
async fn persistent_throttling_goes_down_to_one() {
    let (w, p, stats) = window(16);
    for _ in 0..10 {
        let s = w.acquire().await;
        p.throttled.fetch_add(1, Relaxed);
        drop(s);
    }
    assert_eq!(w.limit(), 1);
    assert_eq!(stats.snapshot().concurrency_min, 1);
}

#[tokio::test]
async fn a_full_window_makes_callers_wait() {
    let (w, _, _) = window(1);
    let first = w.acquire().await;
    let w2 = Arc::clone(&w);
    let waiter = tokio::spawn(async move { drop(w2.acquire().await) });
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    drop(first);
    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("released slot wakes the waiter")
        .expect("waiter ran");
}

/// What one simulated object did: how long it held its slot, the bytes
/// it read, and whether it made requests at all.
struct Sim {
    took: Duration,
    bytes: u64,
    counted: bool,
}

/// Run `objects` through `w` (as a pass does: as many waiting as the
/// ceiling), each as `object(objects in flight, objects done)` says; the
/// limits seen at each hundredth object.
async fn simulate_with(
    w: &Arc<Window>,
    stats: &Stats,
    max: usize,
    objects: usize,
    object: impl Fn(usize, usize) -> Sim,
) -> Vec<usize> {
    let in_flight = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let limits = Mutex::new(Vec::new());
    futures::stream::iter(0..objects)
        .map(|_| async {
            let slot = w.acquire().await;
            let n = in_flight.fetch_add(1, Relaxed) + 1;
            let sim = object(n, done.load(Relaxed));
            tokio::time::sleep(sim.took).await;
            stats.bytes_read.fetch_add(sim.bytes, Relaxed);
            in_flight.fetch_sub(1, Relaxed);
            if sim.counted {
                drop(slot);
            } else {
                slot.uncounted();
            }
            if done.fetch_add(1, Relaxed).is_multiple_of(100) {
                limits.lock().expect("limits").push(w.limit());
            }
        })
        .buffer_unordered(max)
        .collect::<Vec<()>>()
        .await;
    limits.into_inner().expect("limits")
}

/// [`simulate_with`] for objects that all count and read nothing.
async fn simulate(
    w: &Arc<Window>,
    max: usize,
    objects: usize,
    latency: impl Fn(usize, usize) -> Duration,
) -> Vec<usize> {
    let stats = Stats::default();
    simulate_with(w, &stats, max, objects, |n, d| Sim {
        took: latency(n, d),
        bytes: 0,
        counted: true,
    })
    .await
}

/// A store `rtt` seconds away that serves at most `cap` objects/s: below
/// `cap` × `rtt` in flight latency sets the pace, above it the store.
fn store(rtt: f64, cap: f64) -> impl Fn(usize, usize) -> Duration {
    move |n, _| Duration::from_secs_f64((n as f64 / cap).max(rtt))
}

#[tokio::test(start_paused = true)]
async fn grows_while_throughput_rises_and_stops_where_it_does_not() {
    // 2,000 objects/s at most: 200 at once reach it; 256 is the first
    // doubling from 64 past it, 512 buys nothing.
    let (w, _, stats) = window(1024);
    assert_eq!(w.limit(), INITIAL);
    let limits = simulate(&w, 1024, 40_000, store(0.1, 2000.0)).await;
    let late = &limits[limits.len() / 2..];
    assert!(
        late.iter().all(|&l| (200..=320).contains(&l)),
        "settles near what the store can take: {limits:?}"
    );
    assert!(limits.iter().all(|&l| l <= 512), "{limits:?}");
    // Lowered by throttling only: the summary reports it then.
    assert_eq!(stats.snapshot().concurrency_min, 1024);
    // The highest limit it tried (sampled every 100 objects here), as
    // the summary reports it.
    let top = limits.iter().copied().max().unwrap_or_default() as u64;
    let max = stats.snapshot().concurrency_max;
    assert!((top..=512).contains(&max), "{max}: {limits:?}");
}

#[tokio::test(start_paused = true)]
async fn the_ceiling_bounds_it() {
    let (w, _, _) = window(100);
    let limits = simulate(&w, 100, 10_000, store(0.1, 1e9)).await;
    assert!(limits.iter().all(|&l| l <= 100), "{limits:?}");
    assert_eq!(w.limit(), 100);
}

#[tokio::test(start_paused = true)]
async fn a_store_bound_by_its_own_work_keeps_the_initial_window() {
    // A local disk: 5,000 objects/s whatever the concurrency past 5.
    let (w, _, _) = window(1024);
    let limits = simulate(&w, 1024, 30_000, store(0.001, 5000.0)).await;
    let limits: Vec<usize> = limits.into_iter().skip(20).collect();
    assert!(
        limits.iter().all(|&l| l <= INITIAL + INITIAL / 4),
        "more at once bought nothing, so it was not kept: {limits:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn backs_off_when_latency_rises() {
    // Settled at 64 against a store that takes 64 at once; then the store
    // slows down to a third of its rate.
    let (w, _, stats) = window(64);
    let slow = |n: usize, done: usize| {
        let cap = if done < 5_000 { 640.0 } else { 640.0 / 3.0 };
        Duration::from_secs_f64((n as f64 / cap).max(0.1))
    };
    let limits = simulate(&w, 64, 12_000, slow).await;
    assert_eq!(limits[20], 64, "{limits:?}");
    assert!(w.limit() < 64, "{limits:?}");
    let s = stats.snapshot();
    assert!(s.concurrency < 64);
    // Not throttling: not reported as such.
    assert_eq!((s.concurrency_min, s.throttled), (64, 0));
    // The highest the window reached: at least where it started.
    assert!(s.concurrency_max >= 64, "{s:?}");
}

#[tokio::test(start_paused = true)]
async fn objects_found_unchanged_do_not_count() {
    // An incremental pass: runs of unchanged keys (settled in microseconds
    // from the manifest) between runs of changed ones 100 ms away. Counted,
    // the switches read as a store slowing down and cut the window.
    let (w, _, stats) = window(256);
    let limits = simulate_with(&w, &stats, 256, 60_000, |n, done| {
        let unchanged = (done / 3_000) % 2 == 0;
        Sim {
            took: if unchanged {
                Duration::from_micros(5)
            } else {
                Duration::from_secs_f64((n as f64 / 2000.0).max(0.1))
            },
            bytes: if unchanged { 0 } else { 1024 },
            counted: !unchanged,
        }
    })
    .await;
    assert!(
        limits.iter().all(|&l| l >= INITIAL),
        "never below where it started: {limits:?}"
    );
    // The first changed run doubles from 64 to the ceiling within it
    // (counted, the unchanged run before it ended the doubling).
    assert!(
        limits[45..60].iter().all(|&l| l == 256),
        "{:?}",
        &limits[..60]
    );
}

#[tokio::test(start_paused = true)]
async fn larger_objects_are_not_a_slower_store() {
    // Settled on small objects 100 ms away; then objects of 8 MiB, each
    // taking a second: fewer objects/s and longer ones, but more bytes/s.
    let (w, _, stats) = window(64);
    let limits = simulate_with(&w, &stats, 64, 8_000, |_, done| {
        if done < 5_000 {
            Sim {
                took: Duration::from_millis(100),
                bytes: 1024,
                counted: true,
            }
        } else {
            Sim {
                took: Duration::from_secs(1),
                bytes: 8 << 20,
                counted: true,
            }
        }
    })
    .await;
    assert!(limits.iter().all(|&l| l == 64), "{limits:?}");
}

#[tokio::test(start_paused = true)]
async fn a_trial_that_draws_throttling_is_not_climbed_back_to() {
    // 64 at once are fine; the doubling to 128 makes the store throttle.
    let (w, p, stats) = window(1024);
    let p2 = Arc::clone(&p);
    let limits = simulate_with(&w, &stats, 1024, 20_000, move |n, _| {
        if n > 64 {
            p2.throttled.fetch_add(1, Relaxed);
        }
        Sim {
            took: Duration::from_millis(100),
            bytes: 1024,
            counted: true,
        }
    })
    .await;
    let late = &limits[limits.len() / 2..];
    // After the trial's throttling, back at 64 and staying there until
    // the next trial (climbing back to 128 draws throttling again at 65).
    assert!(limits[..14].iter().all(|&l| l == 64), "{limits:?}");
    assert!(late.iter().all(|&l| l <= 80), "not back to 128: {limits:?}");
    assert!(stats.snapshot().throttled > 0);
    assert!(stats.snapshot().concurrency_min < 64);
}
