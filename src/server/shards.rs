//! Thread per core for client connections. Each shard is an OS thread running a single-threaded
//! Tokio runtime; the acceptor deals connections to the shards in turn, and a connection lives on
//! its shard to the end, with its upstream calls going through that shard's own connection pool
//! (`PerShard`). So the tasks that serve one request (the client's connection, the handler, the
//! upstream connection) wake each other on one thread: no hand-offs between worker threads, which
//! on the multi-threaded runtime cost a futex wake-up of the other core for nearly every request
//! (BENCHMARKS.md). Background workers stay on the main runtime.

use std::{cell::Cell, future::Future, pin::Pin, sync::OnceLock, time::Duration};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A connection's future, built on the shard (see `Shards::send`).
pub type MakeConn = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

thread_local! {
    /// 1..=count() on a shard's thread; 0 elsewhere.
    static SHARD: Cell<usize> = const { Cell::new(0) };
}

/// How many shards a server runs: one per core.
pub fn count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
}

/// The shard this thread serves (0: not a shard, e.g. a background worker).
fn current() -> usize {
    SHARD.with(Cell::get)
}

/// One `T` per shard plus one for every other thread; `get` picks this thread's.
pub struct PerShard<T>(Box<[T]>);

impl<T> PerShard<T> {
    pub fn new(make: impl Fn() -> T) -> Self {
        Self((0..=count()).map(|_| make()).collect())
    }

    pub fn get(&self) -> &T {
        &self.0[current() % self.0.len()]
    }
}

/// The shards' threads. They accept work until this is dropped, then keep their runtimes (and
/// whatever was spawned on them: streams' drains, upstream and database connections opened there)
/// until `stop` fires.
pub struct Shards {
    txs: Vec<mpsc::UnboundedSender<MakeConn>>,
    next: usize,
    stop: CancellationToken,
}

impl Shards {
    pub fn start(stop: CancellationToken) -> std::io::Result<Self> {
        // Every runtime is built before any thread starts, so a failure leaves nothing behind.
        let runtimes = (0..count())
            .map(|_| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        let mut txs = Vec::with_capacity(runtimes.len());
        for (i, rt) in (1..).zip(runtimes) {
            let (tx, rx) = mpsc::unbounded_channel::<MakeConn>();
            let thread_stop = stop.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("gophergate-shard-{i}"))
                .spawn(move || run(i, rt, rx, thread_stop));
            if let Err(e) = spawned {
                // The threads already started end at once.
                stop.cancel();
                return Err(e);
            }
            txs.push(tx);
        }
        Ok(Self { txs, next: 0, stop })
    }

    /// Resolves when the shards have been told to stop (the `App` is gone): accepting must end.
    pub fn stopped(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.stop.cancelled()
    }

    /// Builds and runs a connection on the next shard. The closure runs there, so that the
    /// socket is registered with that shard's reactor.
    pub fn send(&mut self, make: MakeConn) {
        let i = self.next % self.txs.len();
        self.next = self.next.wrapping_add(1);
        // A shard ends only after `stop`; its receiver outlives every sender.
        let _ = self.txs[i].send(make);
    }
}

fn run(
    i: usize,
    rt: tokio::runtime::Runtime,
    mut rx: mpsc::UnboundedReceiver<MakeConn>,
    stop: CancellationToken,
) {
    SHARD.with(|s| s.set(i));
    rt.block_on(async move {
        loop {
            tokio::select! {
                make = rx.recv() => match make {
                    Some(make) => {
                        tokio::spawn(make());
                    }
                    None => break,
                },
                _ = stop.cancelled() => break,
            }
        }
        stop.cancelled().await;
    });
    // Whatever is left (only after `stop`) is dropped with the runtime.
    rt.shutdown_timeout(Duration::from_secs(1));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn connections_are_dealt_in_turn_and_each_shard_sees_its_own_value() {
        let made = AtomicUsize::new(0);
        let per = std::sync::Arc::new(PerShard::new(|| made.fetch_add(1, Ordering::Relaxed)));
        assert_eq!(made.load(Ordering::Relaxed), count() + 1);
        // Off the shards: the extra value.
        assert_eq!(*per.get(), 0);

        let stop = CancellationToken::new();
        let mut shards = Shards::start(stop.clone()).unwrap();
        let mut seen = Vec::new();
        for _ in 0..2 * count() {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let per = per.clone();
            shards.send(Box::new(move || {
                Box::pin(async move {
                    let _ = tx.send((current(), *per.get()));
                })
            }));
            seen.push(rx.await.unwrap());
        }
        let expected: Vec<_> = (0..2 * count())
            .map(|i| (i % count() + 1, i % count() + 1))
            .collect();
        assert_eq!(seen, expected);
        stop.cancel();
    }
}
