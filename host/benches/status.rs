//! Status-channel send: one status through a capacity-5 channel to a consumer task.
#![allow(missing_docs, clippy::unwrap_used)]

/// The `capstan` binary's allocator (see `host/src/main.rs`): the benchmark stands for it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use capstan::status::{self, Delivery, EventProcessStatus, EventStatus};
use criterion::{Criterion, criterion_group, criterion_main};

fn send(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let status = EventProcessStatus {
        status: EventStatus::Processing,
        messages: vec![status::Message::new("cluster", "a")],
        ..EventProcessStatus::default()
    };
    let mut group = c.benchmark_group("status_channel");
    group.bench_function("send_1000_to_consumer", |b| {
        b.to_async(&rt).iter(|| {
            let status = status.clone();
            async move {
                let (mut tx, mut rx) = status::channel();
                let consumer = tokio::spawn(async move {
                    let mut n = 0;
                    while rx.recv().await.is_some() {
                        n += 1;
                    }
                    n
                });
                for _ in 0..999 {
                    tx.deliver(status.clone(), Delivery::Send).await.unwrap();
                }
                tx.deliver(status, Delivery::SendClose).await.unwrap();
                assert_eq!(consumer.await.unwrap(), 1000);
            }
        });
    });
    group.finish();
}

criterion_group!(benches, send);
criterion_main!(benches);
