//! Where a node's blocking work (storage calls, scans) runs: tokio's blocking pool, or inline
//! on the calling thread when that thread runs a deterministic simulation.
//!
//! Every storage call a task makes goes through [`spawn`] (and every scan that feeds a stream
//! through [`produce`]) instead of `tokio::task::spawn_blocking`. In a node process they are
//! exactly `spawn_blocking`. A simulation drives many nodes on one current-thread runtime with
//! paused time and marks its thread with [`run_inline_on_this_thread`]: the work then runs
//! where it is called, so the order in which results come back is the order the scheduler
//! polled, the same for the same seed, instead of the order threads of the pool happened to
//! finish in. Simulated storage (`Memory`, a `Log` on `SimFs`) is fast enough for that.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinHandle};

thread_local! {
    static INLINE: Cell<bool> = const { Cell::new(false) };
}

/// Makes [`spawn`] and [`produce`] run their work inline on this thread from now on (for the
/// thread of a simulation's current-thread runtime; never in a node process).
pub fn run_inline_on_this_thread() {
    INLINE.with(|i| i.set(true));
}

fn inline() -> bool {
    INLINE.with(|i| i.get())
}

/// The result of [`spawn`]: the pool task's, or one computed inline.
pub enum Blocking<R> {
    /// Running on the blocking pool.
    Pool(JoinHandle<R>),
    /// Already computed (taken by the first poll).
    Done(Option<R>),
}

impl<R> Unpin for Blocking<R> {}

impl<R> Future for Blocking<R> {
    type Output = Result<R, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Self::Pool(handle) => Pin::new(handle).poll(cx),
            Self::Done(r) => Poll::Ready(Ok(r.take().expect("Blocking polled after completion"))),
        }
    }
}

/// Runs `f` off the async threads (`spawn_blocking`), or inline under a simulation.
pub fn spawn<F, R>(f: F) -> Blocking<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    if inline() {
        Blocking::Done(Some(f()))
    } else {
        Blocking::Pool(tokio::task::spawn_blocking(f))
    }
}

/// Runs the blocking `producer` and returns a channel of what it emits: the producer calls its
/// argument once per item and stops when that returns `false` (the receiver is gone). On the
/// blocking pool the channel holds `capacity` items (the producer waits for the reader); under
/// a simulation the producer runs inline to its end and the items are handed over from a task.
pub fn produce<T, P>(capacity: usize, producer: P) -> mpsc::Receiver<T>
where
    T: Send + 'static,
    P: FnOnce(&mut dyn FnMut(T) -> bool) + Send + 'static,
{
    let (tx, rx) = mpsc::channel(capacity.max(1));
    if inline() {
        let mut items = Vec::new();
        producer(&mut |item| {
            items.push(item);
            true
        });
        tokio::spawn(async move {
            for item in items {
                if tx.send(item).await.is_err() {
                    return;
                }
            }
        });
    } else {
        tokio::task::spawn_blocking(move || producer(&mut |item| tx.blocking_send(item).is_ok()));
    }
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pool_and_inline_give_the_same_results() {
        assert_eq!(spawn(|| 6 * 7).await.unwrap(), 42);
        let mut rx = produce(1, |emit| {
            for i in 0..5 {
                if !emit(i) {
                    return;
                }
            }
        });
        let mut got = Vec::new();
        while let Some(i) = rx.recv().await {
            got.push(i);
        }
        assert_eq!(got, vec![0, 1, 2, 3, 4]);

        // Inline: computed before the first poll, on this thread.
        let here = std::thread::current().id();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            run_inline_on_this_thread();
            rt.block_on(async move {
                let on = spawn(|| std::thread::current().id()).await.unwrap();
                assert_eq!(on, std::thread::current().id());
                assert_ne!(on, here);
                let mut rx = produce(1, |emit| {
                    for i in 0..3 {
                        emit(i);
                    }
                });
                let mut got = Vec::new();
                while let Some(i) = rx.recv().await {
                    got.push(i);
                }
                assert_eq!(got, vec![0, 1, 2]);
            });
        })
        .join()
        .unwrap();
    }
}
