//! Selecting a backend with `least_request` or `peak_ewma` allocates
//! nothing: counted by a global allocator wrapper, per thread.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pingora_load_balancing::selection::{BackendIter, BackendSelection};
use pingora_load_balancing::Backend;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use weir::upstream::selection::p2c::LeastRequest;
use weir::upstream::selection::peak_ewma::PeakEwma;
use weir::upstream::Shared;

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn allocs() -> usize {
    ALLOCS.with(|c| c.get())
}

fn setup() -> (BTreeSet<Backend>, weir::upstream::selection::Counters) {
    let addrs: Vec<String> = (1..=8).map(|p| format!("127.0.0.1:{p}")).collect();
    let set = addrs.iter().map(|a| Backend::new(a).unwrap()).collect();
    let map: HashMap<_, _> = addrs
        .iter()
        .map(|a| (a.parse().unwrap(), Arc::new(Shared::default())))
        .collect();
    (set, Arc::new(map))
}

fn count_selections<S: BackendSelection>(sel: &Arc<S>) -> usize
where
    S::Iter: BackendIter,
{
    // Warm the thread-local RNG and clock first.
    let _ = sel.iter(b"").next().map(|b| b.addr.clone());
    let before = allocs();
    for _ in 0..1000 {
        let mut it = sel.iter(b"");
        std::hint::black_box(it.next());
        std::hint::black_box(it.next());
    }
    allocs() - before
}

#[test]
fn least_request_selection_does_not_allocate() {
    let (set, counters) = setup();
    let sel = Arc::new(LeastRequest::build_with_config(&set, &counters));
    assert_eq!(count_selections(&sel), 0);
}

#[test]
fn peak_ewma_selection_does_not_allocate() {
    let (set, counters) = setup();
    for s in counters.values() {
        s.latency.observe(std::time::Duration::from_millis(3));
    }
    let sel = Arc::new(PeakEwma::build_with_config(&set, &counters));
    assert_eq!(count_selections(&sel), 0);
}
