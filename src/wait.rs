//! Waiting on the GPU without blocking. Every wait in the library (a buffer mapped back, the queue
//! drained, an error scope popped, a device opened) is a future: natively the edge drives it with
//! [`block_on`] (the wgpu call inside polls the device until the work is done, so the future is
//! ready at its first poll), in the browser the page awaits it on the event loop.

use crate::error::Result;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// A boxed future of a result, for the methods of object-safe traits ([`crate::backend::Backend`]).
/// Not `Send`: in the browser, WebGPU's objects live on one thread.
pub type Wait<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + 'a>>;

/// Run a future to completion on this thread (native only: the browser cannot block).
#[cfg(not(target_arch = "wasm32"))]
pub fn block_on<F: Future>(f: F) -> F::Output {
    pollster::block_on(f)
}

/// The sending half of a [`oneshot`]: what a wgpu callback fills.
pub struct Sender<T>(Arc<Mutex<Slot<T>>>);

/// The receiving half of a [`oneshot`]: a future of the value, or `None` if the sender was dropped
/// unsent (a callback that never ran).
pub struct Receiver<T>(Arc<Mutex<Slot<T>>>);

struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
    closed: bool,
}

/// A channel for one value from a callback to the future that awaits it.
pub fn oneshot<T>() -> (Sender<T>, Receiver<T>) {
    let slot = Arc::new(Mutex::new(Slot {
        value: None,
        waker: None,
        closed: false,
    }));
    (Sender(slot.clone()), Receiver(slot))
}

impl<T> Sender<T> {
    pub fn send(self, value: T) {
        if let Ok(mut s) = self.0.lock() {
            s.value = Some(value);
        }
        // Drop wakes the receiver.
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = match self.0.lock() {
            Ok(mut s) => {
                s.closed = true;
                s.waker.take()
            }
            Err(_) => None,
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Future for Receiver<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let Ok(mut s) = self.0.lock() else {
            return Poll::Ready(None);
        };
        if let Some(v) = s.value.take() {
            return Poll::Ready(Some(v));
        }
        if s.closed {
            return Poll::Ready(None);
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn a_value_sent_from_another_thread_arrives() {
        let (tx, rx) = oneshot();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            tx.send(7);
        });
        assert_eq!(block_on(rx), Some(7));
        t.join().expect("sender thread");
    }

    #[test]
    fn a_dropped_sender_ends_the_wait_with_none() {
        let (tx, rx) = oneshot::<u8>();
        drop(tx);
        assert_eq!(block_on(rx), None);
    }
}
