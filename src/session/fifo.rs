//! A bounded FIFO allocated once: the event queues of the session state machines.

/// Bounded FIFO of `T`, its ring allocated at construction; `push` refuses when full.
#[derive(Debug)]
pub(crate) struct BoundedFifo<T> {
    ring: Vec<Option<T>>,
    head: usize,
    len: usize,
}

impl<T> BoundedFifo<T> {
    /// A queue of `capacity` slots (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        BoundedFifo { ring: (0..capacity.max(1)).map(|_| None).collect(), head: 0, len: 0 }
    }

    /// Slots left.
    pub(crate) fn free(&self) -> usize {
        self.ring.len() - self.len
    }

    /// Items queued.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The fixed capacity.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.ring.len()
    }

    /// Appends `item`; `false` (and nothing queued) when full.
    pub(crate) fn push(&mut self, item: T) -> bool {
        if self.len >= self.ring.len() {
            return false;
        }
        let i = (self.head + self.len) % self.ring.len();
        if let Some(s) = self.ring.get_mut(i) {
            *s = Some(item);
        }
        self.len += 1;
        true
    }

    /// The oldest item.
    pub(crate) fn pop(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        let item = self.ring.get_mut(self.head).and_then(Option::take);
        self.head = (self.head + 1) % self.ring.len();
        self.len -= 1;
        item
    }

    /// Drops every queued item.
    pub(crate) fn clear(&mut self) {
        while self.pop().is_some() {}
        self.head = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::BoundedFifo;

    #[test]
    fn fifo_order_bound_and_wrap() {
        let mut q = BoundedFifo::new(3);
        assert!(q.push(1) && q.push(2) && q.push(3));
        assert!(!q.push(4), "full");
        assert_eq!((q.len(), q.free()), (3, 0));
        assert_eq!(q.pop(), Some(1));
        assert!(q.push(4), "wraps around");
        assert_eq!([q.pop(), q.pop(), q.pop(), q.pop()], [Some(2), Some(3), Some(4), None]);
        q.push(5);
        q.clear();
        assert_eq!((q.pop(), q.free(), q.capacity()), (None, 3, 3));
        assert_eq!(BoundedFifo::<u8>::new(0).capacity(), 1);
    }
}
