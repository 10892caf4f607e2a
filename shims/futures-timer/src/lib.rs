//! `futures_timer::Delay`, on tokio's timer.
//!
//! libp2p times everything with futures-timer: each publish, request, substream upgrade and idle
//! connection gets a `Delay`. The upstream crate keeps its timers on a helper thread of its own;
//! creating and dropping a `Delay` each wake that thread (a futex call and two context switches),
//! so a node publishing 10,000 messages a second spends a tenth of its CPU waking a thread that
//! has nothing to do. This crate has the same name and API (`Delay::new`, `Delay::reset`,
//! `Future<Output = ()>`) and is put in its place by the workspace's `[patch.crates-io]`: a
//! `Delay` is only a deadline until it is first polled without being due, and then a tokio
//! `Sleep`, on the timer wheel of the runtime polling it (no other thread involved).
//!
//! Polled outside a tokio runtime, a pending `Delay` falls back to a thread that sleeps until the
//! deadline and wakes the task: correct everywhere, cheap where p2pd runs it. Inside one, the
//! runtime must have its timer enabled (`enable_time`/`enable_all`, as every runtime in this
//! workspace does), as for any tokio timer.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
// tokio's clock (the system's monotonic clock, or a test's paused one).
use tokio::time::Instant;

/// A future that completes at a point in time.
#[derive(Debug)]
pub struct Delay {
    deadline: Instant,
    timer: Option<Timer>,
}

#[derive(Debug)]
enum Timer {
    Tokio(Pin<Box<tokio::time::Sleep>>),
    Thread(Arc<Mutex<ThreadTimer>>),
}

/// The fallback outside a runtime: the waker to call and whether the deadline has passed.
#[derive(Debug, Default)]
struct ThreadTimer {
    waker: Option<Waker>,
    fired: bool,
}

impl Delay {
    /// A delay that completes `dur` from now.
    pub fn new(dur: Duration) -> Delay {
        Delay {
            deadline: deadline(dur),
            timer: None,
        }
    }

    /// Moves the deadline to `dur` from now, whether or not the delay has completed.
    pub fn reset(&mut self, dur: Duration) {
        self.deadline = deadline(dur);
        match &mut self.timer {
            Some(Timer::Tokio(sleep)) => sleep.as_mut().reset(self.deadline),
            // A sleeping thread cannot be moved; a new one is started when polled.
            Some(Timer::Thread(_)) => self.timer = None,
            None => {}
        }
    }
}

/// `now + dur`, saturating far in the future (as upstream, `Duration::MAX` means "never").
fn deadline(dur: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(dur)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

impl Future for Delay {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        match &mut this.timer {
            Some(Timer::Tokio(sleep)) => return sleep.as_mut().poll(cx),
            Some(Timer::Thread(t)) => {
                let mut t = t.lock().unwrap_or_else(|e| e.into_inner());
                if t.fired {
                    return Poll::Ready(());
                }
                t.waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            None => {}
        }
        if Instant::now() >= this.deadline {
            return Poll::Ready(());
        }
        let timer = match tokio::runtime::Handle::try_current() {
            Ok(_) => Timer::Tokio(Box::pin(tokio::time::sleep_until(this.deadline))),
            Err(_) => Timer::Thread(sleep_on_a_thread(this.deadline)),
        };
        this.timer = Some(timer);
        // Registers the waker with the new timer (due by now, it completes at once).
        Pin::new(this).poll(cx)
    }
}

fn sleep_on_a_thread(deadline: Instant) -> Arc<Mutex<ThreadTimer>> {
    let state = Arc::new(Mutex::new(ThreadTimer::default()));
    let shared = state.clone();
    std::thread::spawn(move || {
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        let waker = {
            let mut t = shared.lock().unwrap_or_else(|e| e.into_inner());
            t.fired = true;
            t.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    });
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn assert_send_sync_unpin<T: Send + Sync + Unpin>() {}

    /// tokio's wheel has millisecond slots and rounds up.
    fn assert_about(elapsed: Duration, secs: u64) {
        let want = Duration::from_secs(secs);
        assert!(
            elapsed >= want && elapsed <= want + Duration::from_millis(5),
            "{elapsed:?}, not {want:?}"
        );
    }

    #[test]
    fn it_can_stand_in_for_upstream() {
        assert_send_sync_unpin::<Delay>();
    }

    #[tokio::test(start_paused = true)]
    async fn completes_at_the_deadline_and_not_before() {
        let start = tokio::time::Instant::now();
        let mut d = Delay::new(Duration::from_secs(5));
        assert!((&mut d).now_or_never().is_none());
        assert!(matches!(d.timer, Some(Timer::Tokio(_))));
        d.await;
        assert_about(start.elapsed(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn reset_moves_the_deadline_both_ways() {
        let start = tokio::time::Instant::now();
        let mut d = Delay::new(Duration::from_secs(60));
        assert!((&mut d).now_or_never().is_none());
        d.reset(Duration::from_secs(2));
        (&mut d).await;
        assert_about(start.elapsed(), 2);
        // Completed, then reset: pending again until the new deadline.
        d.reset(Duration::from_secs(3));
        assert!((&mut d).now_or_never().is_none());
        d.await;
        assert_about(start.elapsed(), 5);
    }

    #[test]
    fn a_due_delay_needs_no_timer() {
        let mut d = Delay::new(Duration::ZERO);
        assert_eq!((&mut d).now_or_never(), Some(()));
        assert!(d.timer.is_none());
    }

    #[test]
    fn outside_a_runtime_a_thread_wakes_the_task() {
        let start = std::time::Instant::now();
        let mut d = Delay::new(Duration::from_millis(50));
        assert!((&mut d).now_or_never().is_none());
        futures::executor::block_on(d);
        assert!(start.elapsed() >= Duration::from_millis(50));
    }

    #[tokio::test(start_paused = true)]
    async fn a_huge_duration_on_the_wheel_means_never_not_a_panic() {
        let mut d = Delay::new(Duration::MAX);
        assert!((&mut d).now_or_never().is_none());
        assert!(matches!(d.timer, Some(Timer::Tokio(_))));
        tokio::time::advance(Duration::from_secs(10 * 365 * 24 * 3600)).await;
        assert!((&mut d).now_or_never().is_none());
        d.reset(Duration::from_secs(1));
        d.await;
    }

    #[test]
    fn a_huge_duration_means_never_not_a_panic() {
        let mut d = Delay::new(Duration::MAX);
        assert!((&mut d).now_or_never().is_none());
        d.reset(Duration::MAX);
        assert!((&mut d).now_or_never().is_none());
    }
}
