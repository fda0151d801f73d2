//! Spreading CPU-bound work over the cores, keeping the order of the input.

/// Applies `f` to every item, on up to `available_parallelism` (max 8)
/// scoped threads when there are at least `min_parallel` items; the result
/// is in input order and identical to a sequential map.
pub fn par_map<T: Send, U: Send>(
    items: Vec<T>,
    min_parallel: usize,
    f: impl Fn(T) -> U + Sync,
) -> Vec<U> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(8);
    if threads < 2 || items.len() < min_parallel.max(2) {
        return items.into_iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let mut chunks: Vec<Vec<T>> = Vec::with_capacity(threads);
    let mut rest = items;
    while rest.len() > chunk {
        let tail = rest.split_off(chunk);
        chunks.push(rest);
        rest = tail;
    }
    chunks.push(rest);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|c| scope.spawn(move || c.into_iter().map(f).collect::<Vec<U>>()))
            .collect();
        let mut all = Vec::new();
        for h in handles {
            match h.join() {
                Ok(part) => all.extend(part),
                // A panic in `f` is a bug; surface it where it happened.
                Err(payload) => std::panic::resume_unwind(payload),
            }
        }
        all
    })
}

#[cfg(test)]
mod tests {
    use super::par_map;

    #[test]
    fn keeps_order_and_matches_sequential() {
        let items: Vec<u64> = (0..10_000).collect();
        let expected: Vec<u64> = items.iter().map(|x| x * x).collect();
        assert_eq!(par_map(items.clone(), 1, |x| x * x), expected);
        assert_eq!(par_map(items, 100_000, |x| x * x), expected);
        assert!(par_map(Vec::<u8>::new(), 0, |x| x).is_empty());
    }
}
