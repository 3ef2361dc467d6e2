//! Fan-out with bounded concurrency, yielding results in request order.
//!
//! A call's slot is freed when the call finishes, not when its result is
//! yielded: `futures`' `buffered(n)` frees slots in order, so one call slower
//! than its neighbours holds up every slot behind it, and each round of `n`
//! calls lasts as long as its slowest (measured: a 2,000-call fan-out at
//! concurrency 50 against 20 ms calls took 1,024 ms instead of 800).
//!
//! Results that finish ahead of their turn wait in order; to keep a consumer
//! that stops early (`LIMIT`) from causing many calls, a call is started only
//! while fewer than `window` calls are ahead of the next result to yield.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::stream::{FuturesUnordered, Stream, StreamExt};

/// How many calls may be started ahead of the next result to yield, as a
/// multiple of the concurrency.
pub const WINDOW_FACTOR: usize = 2;
/// Calls a slow start runs before any has finished ([`Ordered::slow_start`]).
pub const SLOW_START: usize = 2;

/// A future tagged with its position in the request order.
struct Indexed<F> {
    index: usize,
    future: Pin<Box<F>>,
}

impl<F: Future> Future for Indexed<F> {
    type Output = (usize, F::Output);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let index = self.index;
        self.future.as_mut().poll(cx).map(|out| (index, out))
    }
}

/// The stream [`ordered`] returns.
pub struct Ordered<I: Iterator, S, F: Future> {
    items: I,
    start: S,
    running: FuturesUnordered<Indexed<F>>,
    /// Results from `next_yield` on, by position; `None` while still running.
    finished: VecDeque<Option<F::Output>>,
    next_start: usize,
    next_yield: usize,
    concurrency: usize,
    /// How many may run now: `concurrency`, or while starting slowly (see
    /// [`Ordered::slow_start`]) fewer, one more per finished call.
    limit: usize,
    window: usize,
    /// How many calls may be started ahead of the next result to yield
    /// now: the window, or while ramping up (see [`Ordered::ramped`]) one
    /// at first, doubled at each result yielded.
    ahead: usize,
    exhausted: bool,
}

/// Starts `start(item)` for every item, at most `concurrency` running at a
/// time and at most `WINDOW_FACTOR * concurrency` started ahead of the next
/// result to yield; yields the results in the items' order. Nothing starts
/// until the stream is polled.
pub fn ordered<I, S, F>(items: I, concurrency: usize, start: S) -> Ordered<I::IntoIter, S, F>
where
    I: IntoIterator,
    S: FnMut(I::Item) -> F,
    F: Future,
{
    let concurrency = concurrency.max(1);
    Ordered {
        items: items.into_iter(),
        start,
        running: FuturesUnordered::new(),
        finished: VecDeque::new(),
        next_start: 0,
        next_yield: 0,
        concurrency,
        limit: concurrency,
        window: concurrency * WINDOW_FACTOR,
        ahead: concurrency * WINDOW_FACTOR,
        exhausted: false,
    }
}

impl<I: Iterator, S, F: Future> Ordered<I, S, F> {
    /// Runs at most [`SLOW_START`] calls at first, one more each time a call
    /// finishes, up to the concurrency: as TCP's slow start, about double
    /// per round trip. Many sessions starting at once against a throttled
    /// function then send a few requests each before the first answer (a
    /// 429 holds the function for every caller, see `throttle`), not
    /// `concurrency` each. Retries happen inside a call, so a throttled call
    /// does not finish, and does not widen the limit, until it is answered.
    pub fn slow_start(mut self) -> Self {
        self.limit = SLOW_START.min(self.concurrency);
        self
    }

    /// Starts one call, then doubles how many may run ahead of the next
    /// result at each result yielded, up to the window: a consumer that
    /// stops after the first result (`LIMIT` over batches of many rows)
    /// has started one call, and one that stops after `n` results at most
    /// `2n + 1`, at the cost of a few calls' time before full concurrency.
    pub fn ramped(mut self) -> Self {
        self.ahead = 1;
        self
    }
}

impl<I, S, F> Stream for Ordered<I, S, F>
where
    I: Iterator + Unpin,
    S: FnMut(I::Item) -> F + Unpin,
    F: Future,
    F::Output: Unpin,
{
    type Item = F::Output;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<F::Output>> {
        let this = &mut *self;
        loop {
            while !this.exhausted
                && this.running.len() < this.limit
                && this.next_start < this.next_yield + this.ahead
            {
                match this.items.next() {
                    Some(item) => {
                        this.running.push(Indexed {
                            index: this.next_start,
                            future: Box::pin((this.start)(item)),
                        });
                        this.next_start += 1;
                    }
                    None => this.exhausted = true,
                }
            }
            if let Some(out) = this.finished.front_mut().and_then(Option::take) {
                this.finished.pop_front();
                this.next_yield += 1;
                this.ahead = (this.ahead * 2).min(this.window);
                return Poll::Ready(Some(out));
            }
            if this.running.is_empty() {
                // Everything started has been yielded, and nothing is left.
                return Poll::Ready(None);
            }
            match this.running.poll_next_unpin(cx) {
                Poll::Ready(Some((index, out))) => {
                    this.limit = (this.limit + 1).min(this.concurrency);
                    // A started call is never behind the next one to yield.
                    let offset = index - this.next_yield;
                    if this.finished.len() <= offset {
                        this.finished.resize_with(offset + 1, || None);
                    }
                    this.finished[offset] = Some(out);
                }
                Poll::Ready(None) => {}
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;
    use std::time::Duration;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    /// Runs `delays` (ms) through `ordered`, recording the most calls seen
    /// running at once; returns the results and that peak.
    fn run(delays: Vec<u64>, concurrency: usize, take: usize) -> (Vec<u64>, usize, usize) {
        let running = Rc::new(Cell::new(0usize));
        let peak = Rc::new(Cell::new(0usize));
        let started = Rc::new(Cell::new(0usize));
        let out = runtime().block_on({
            let (running, peak, started) = (running.clone(), peak.clone(), started.clone());
            async move {
                ordered(delays, concurrency, move |ms| {
                    let (running, peak, started) = (running.clone(), peak.clone(), started.clone());
                    async move {
                        started.set(started.get() + 1);
                        running.set(running.get() + 1);
                        peak.set(peak.get().max(running.get()));
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        running.set(running.get() - 1);
                        ms
                    }
                })
                .take(take)
                .collect::<Vec<_>>()
                .await
            }
        });
        (out, peak.get(), started.get())
    }

    #[test]
    fn results_come_in_request_order() {
        let delays = vec![30, 5, 20, 1, 10, 2];
        let (out, peak, _) = run(delays.clone(), 3, usize::MAX);
        assert_eq!(out, delays);
        assert_eq!(peak, 3);
    }

    #[test]
    fn never_more_than_the_concurrency_at_once() {
        let (out, peak, _) = run(vec![2; 40], 4, usize::MAX);
        assert_eq!(out.len(), 40);
        assert_eq!(peak, 4);
    }

    #[test]
    fn a_slow_call_does_not_hold_the_other_slots() {
        // One 60 ms call, then 10 ms calls at concurrency 3. Slots freed in
        // order would start nothing more until the slow call is yielded;
        // freed on completion, the two other slots keep starting calls up to
        // the window (6 started) while the slow one runs.
        let started = Rc::new(Cell::new(0usize));
        let seen_when_slow_ended = Rc::new(Cell::new(0usize));
        let mut delays = vec![60u64];
        delays.extend(vec![10; 20]);
        let out = runtime().block_on({
            let (started, seen) = (started.clone(), seen_when_slow_ended.clone());
            async move {
                ordered(delays, 3, move |ms| {
                    let (started, seen) = (started.clone(), seen.clone());
                    async move {
                        started.set(started.get() + 1);
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        if ms == 60 {
                            seen.set(started.get());
                        }
                        ms
                    }
                })
                .collect::<Vec<_>>()
                .await
            }
        });
        assert_eq!(out.len(), 21);
        assert_eq!(seen_when_slow_ended.get(), 3 * WINDOW_FACTOR);
    }

    #[test]
    fn a_consumer_that_stops_early_starts_at_most_the_window() {
        let mut delays = vec![50];
        delays.extend(vec![1; 100]);
        let (out, _, started) = run(delays, 4, 1);
        assert_eq!(out, vec![50]);
        assert!(started <= 4 * WINDOW_FACTOR, "started {started}");
    }

    #[test]
    fn ramped_a_consumer_that_stops_early_starts_one_call_then_doubles() {
        let started = Rc::new(Cell::new(0usize));
        let peak = Rc::new(Cell::new(0usize));
        let ramped = |take: usize| {
            let (started, peak) = (started.clone(), peak.clone());
            started.set(0);
            runtime().block_on(async move {
                let running = Rc::new(Cell::new(0usize));
                ordered(vec![5u64; 100], 8, move |ms| {
                    let (started, peak, running) = (started.clone(), peak.clone(), running.clone());
                    async move {
                        started.set(started.get() + 1);
                        running.set(running.get() + 1);
                        peak.set(peak.get().max(running.get()));
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        running.set(running.get() - 1);
                        ms
                    }
                })
                .ramped()
                .take(take)
                .collect::<Vec<_>>()
                .await
            })
        };
        assert_eq!(ramped(1).len(), 1);
        assert_eq!(started.get(), 1);
        assert_eq!(ramped(2).len(), 2);
        assert!(started.get() <= 5, "started {}", started.get());
        assert_eq!(ramped(100).len(), 100);
        assert_eq!(started.get(), 100);
        assert_eq!(peak.get(), 8, "full concurrency once ramped up");
    }

    #[test]
    fn nothing_starts_before_the_first_poll_and_empty_input_ends() {
        let started = RefCell::new(0);
        let stream = ordered(vec![1u64, 2], 2, |x| {
            *started.borrow_mut() += 1;
            async move { x }
        });
        assert_eq!(*started.borrow(), 0);
        drop(stream);
        let (out, _, started) = run(Vec::new(), 5, usize::MAX);
        assert!(out.is_empty());
        assert_eq!(started, 0);
    }

    #[test]
    fn a_slow_start_runs_two_then_one_more_per_finished_call() {
        let running = Rc::new(Cell::new(0usize));
        let peaks = Rc::new(RefCell::new(Vec::new()));
        let out = runtime().block_on({
            let (running, peaks) = (running.clone(), peaks.clone());
            async move {
                ordered(vec![10u64; 40], 8, move |ms| {
                    let (running, peaks) = (running.clone(), peaks.clone());
                    async move {
                        running.set(running.get() + 1);
                        peaks.borrow_mut().push(running.get());
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        running.set(running.get() - 1);
                        ms
                    }
                })
                .slow_start()
                .collect::<Vec<_>>()
                .await
            }
        });
        assert_eq!(out.len(), 40);
        let peaks = peaks.borrow();
        assert_eq!(&peaks[..2], &[1, 2], "two before any answer");
        assert!(peaks[..2].iter().all(|&p| p <= SLOW_START));
        assert_eq!(peaks.iter().max(), Some(&8), "full concurrency later");
    }
}
