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

/// Run `objects` through `w` (as a pass does: as many waiting as the
/// ceiling), each taking `latency(objects in flight, objects done)`; the
/// limits seen at each hundredth object.
async fn simulate(
    w: &Arc<Window>,
    max: usize,
    objects: usize,
    latency: impl Fn(usize, usize) -> Duration,
) -> Vec<usize> {
    let in_flight = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let limits = Mutex::new(Vec::new());
    futures::stream::iter(0..objects)
        .map(|_| async {
            let slot = w.acquire().await;
            let n = in_flight.fetch_add(1, Relaxed) + 1;
            tokio::time::sleep(latency(n, done.load(Relaxed))).await;
            in_flight.fetch_sub(1, Relaxed);
            drop(slot);
            if done.fetch_add(1, Relaxed).is_multiple_of(100) {
                limits.lock().expect("limits").push(w.limit());
            }
        })
        .buffer_unordered(max)
        .collect::<Vec<()>>()
        .await;
    limits.into_inner().expect("limits")
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
    assert_eq!(stats.snapshot().concurrency_min, INITIAL as u64);
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
    assert!(stats.snapshot().concurrency_min < 64);
    assert_eq!(stats.snapshot().throttled, 0);
}
