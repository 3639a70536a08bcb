//! Reading one /proc file per thread, for thousands of threads: the reads
//! are split over the CPUs (each is an open, a read and a close, kernel
//! time that does not share a lock), so a process with 10 000 threads is
//! read in a fraction of the time one thread takes.
use std::{num::NonZeroUsize, sync::OnceLock, thread};

/// Below this many items one thread is quicker than starting more.
const PER_WORKER: usize = 256;

/// `f` applied to every item, in order, on up to one thread per CPU (at most 8).
pub fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let workers = if items.len() <= PER_WORKER { 1 } else { cpus().min(items.len().div_ceil(PER_WORKER)) };
    if workers == 1 {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(workers);
    thread::scope(|scope| {
        let handles: Vec<_> =
            items.chunks(chunk).map(|part| scope.spawn(|| part.iter().map(&f).collect::<Vec<R>>())).collect();
        // A worker that panicked re-raises here: the same as a panic in `f` without workers.
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    })
}

/// CPUs to read on, at most 8; asked once: `available_parallelism` reads
/// the cgroup's CPU quota files on every call, and the run-time sampler
/// maps every 100 ms (a twentieth of an idle capture's CPU went there).
fn cpus() -> usize {
    static CPUS: OnceLock<usize> = OnceLock::new();
    *CPUS.get_or_init(|| thread::available_parallelism().map_or(1, NonZeroUsize::get).min(8))
}

#[cfg(test)]
mod tests {
    use super::map;

    #[test]
    fn keeps_the_order_of_the_items() {
        for n in [0, 1, 255, 256, 257, 10_000] {
            let items: Vec<u64> = (0..n).collect();
            assert_eq!(map(&items, |x| x * 2), items.iter().map(|x| x * 2).collect::<Vec<_>>(), "{n} items");
        }
    }
}
