//! Benchmarks of the event bus (publish to 1 and 8 subscribers) and of event trees.
//!
//! Publish is measured on the delivery path: subscriber buffers are large enough for a batch and
//! are drained, outside the timed region, between batches, so no timed publish hits a full buffer.

/// The `capstan` binary's allocator (see `host/src/main.rs`): the benchmark stands for it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use capstan::bus::{Bus, Subscription};
use capstan::event::{Context, Event};
use criterion::{BenchmarkId, Criterion, criterion_main};

/// Events published between two drains.
const BATCH: u64 = 4096;

/// A representative event: shared, so cloning it for each subscriber is a reference-count bump.
#[derive(Debug)]
struct Payload {
    _kind: &'static str,
    _name: String,
    _generation: u64,
}

fn drain<E>(subs: &mut [Subscription<E>]) {
    for sub in subs {
        while sub.try_recv().is_ok() {}
    }
}

/// Times `iters` publishes of `make(i)` to `subscribers` subscribers, draining between batches.
fn publish_timed<E: Clone + Send + 'static>(
    subscribers: usize,
    iters: u64,
    make: impl Fn(u64) -> E,
) -> Duration {
    let bus = Bus::new();
    let mut subs: Vec<_> = (0..subscribers)
        .map(|_| bus.subscribe(BATCH as usize))
        .collect();
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let batch = left.min(BATCH);
        let events: Vec<E> = (0..batch).map(&make).collect();
        let start = Instant::now();
        for event in events {
            bus.publish(black_box(event));
        }
        total += start.elapsed();
        drain(&mut subs);
        left -= batch;
    }
    assert!(
        subs.iter().all(|s| s.dropped() == 0),
        "timed publishes must not drop"
    );
    total
}

fn publish(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish");
    let payload = Arc::new(Payload {
        _kind: "Deployment",
        _name: "default/web".to_owned(),
        _generation: 7,
    });
    for subscribers in [1usize, 8] {
        group.bench_with_input(
            BenchmarkId::new("arc_event", subscribers),
            &subscribers,
            |b, &n| {
                b.iter_custom(|iters| publish_timed(n, iters, |_| Arc::clone(&payload)));
            },
        );
        group.bench_with_input(
            BenchmarkId::new("u64", subscribers),
            &subscribers,
            |b, &n| {
                b.iter_custom(|iters| publish_timed(n, iters, |i| i));
            },
        );
    }
    group.finish();
}

fn event_tree(c: &mut Criterion) {
    let mut group = c.benchmark_group("event_tree");
    let context = Context::new().with_trace_id("4bf92f3577b34da6a3ce929d0e0e4736");
    group.bench_function("root_clone_8_children_ack", |b| {
        b.iter(|| {
            let mut root = Event::with_ack(
                String::from("default/web Deployment generation 7"),
                context.clone(),
                || {
                    black_box(());
                },
                |err| {
                    black_box(err);
                },
            );
            let mut children: [Option<Event<String>>; 8] = Default::default();
            for child in &mut children {
                *child = root.with_context(root.context().clone()).ok();
            }
            root.ack();
            for child in children.iter_mut().flatten() {
                child.ack();
            }
            assert_eq!(root.tree_state(), capstan::event::TreeState::Handled);
        });
    });
    group.finish();
}

/// Wrapped in a private module: `criterion_group!` generates an undocumented `pub fn`.
mod group {
    use super::{Criterion, Duration, event_tree, publish};

    criterion::criterion_group! {
        name = benches;
        config = Criterion::default()
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
        targets = publish, event_tree
    }
}

criterion_main!(group::benches);
