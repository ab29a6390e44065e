//! A DPDK `rte_ring` of mbufs, created single-producer / single-consumer and handed
//! out as its two ends, so that the invariant the flags promise DPDK is one the types
//! keep: [`RingProducer`] and [`RingConsumer`] are neither `Copy`, `Clone` nor `Sync`,
//! so each end is used from one thread at a time and there is only ever one of each.
//! The ring is freed, after its last mbufs, when both ends are gone.
//!
//! ```compile_fail
//! // One producer only: an end cannot be copied ...
//! fn two(p: iwf::dataplane::dpdk::ring::RingProducer) -> (iwf::dataplane::dpdk::ring::RingProducer, iwf::dataplane::dpdk::ring::RingProducer) {
//!     (p, p)
//! }
//! ```
//! ```compile_fail
//! // ... nor shared between threads.
//! fn shared<T: Sync>() {}
//! shared::<iwf::dataplane::dpdk::ring::RingConsumer>();
//! ```
use super::mbuf::Mbuf;
use dpdk_sys as sys;
use std::ptr::NonNull;
use std::sync::Arc;

/// The ring itself, freed when the last end drops.
#[derive(Debug)]
struct Owned(NonNull<sys::rte_ring>);

// SAFETY: an rte_ring is made to be reached from several lcores; what each end may do
// with it is what the end types allow.
unsafe impl Send for Owned {}
// SAFETY: `Owned` itself only frees the ring, in `drop`, once (after the last `Arc`).
unsafe impl Sync for Owned {}

impl Drop for Owned {
    fn drop(&mut self) {
        // Nobody else holds an end: what is still in the ring is ours to free.
        while pop(self.0).is_some() {}
        // SAFETY: created by `create`, freed once, here.
        unsafe { sys::rte_ring_free(self.0.as_ptr()) };
    }
}

/// The enqueueing end: the only one of its ring.
#[derive(Debug)]
pub struct RingProducer {
    ring: Arc<Owned>,
    /// `*const ()` makes the end neither `Sync` nor (without the impl below) `Send`.
    _one_thread: std::marker::PhantomData<*const ()>,
}

/// The dequeueing end: the only one of its ring.
#[derive(Debug)]
pub struct RingConsumer {
    ring: Arc<Owned>,
    _one_thread: std::marker::PhantomData<*const ()>,
}

// SAFETY: an end may move to the lcore that uses it; it is not `Sync`, so it is used
// from that one thread only, as SP/SC requires.
unsafe impl Send for RingProducer {}
// SAFETY: as for `RingProducer`.
unsafe impl Send for RingConsumer {}

/// Creates a single-producer, single-consumer ring of `size` (a power of two) slots on
/// NUMA `socket`, named `name` (unique per process). EAL must be up.
pub fn create(name: &str, size: u32, socket: i32) -> Result<(RingProducer, RingConsumer), String> {
    let c_name = std::ffi::CString::new(name).map_err(|e| e.to_string())?;
    // SAFETY: EAL is up (the caller's promise); the name is a valid C string; the
    // flags match the ends handed out below: one producer, one consumer.
    let raw = unsafe { sys::rte_ring_create(c_name.as_ptr(), size, socket, sys::RING_F_SP_ENQ | sys::RING_F_SC_DEQ) };
    let ring = NonNull::new(raw)
        .map(|r| Arc::new(Owned(r)))
        .ok_or_else(|| format!("cannot create ring {name}: {}", super::eal::last_error()))?;
    let producer = RingProducer { ring: Arc::clone(&ring), _one_thread: std::marker::PhantomData };
    let consumer = RingConsumer { ring, _one_thread: std::marker::PhantomData };
    Ok((producer, consumer))
}

fn pop(ring: NonNull<sys::rte_ring>) -> Option<Mbuf> {
    let mut objs = [std::ptr::null_mut::<std::ffi::c_void>()];
    // SAFETY: a live ring; what comes out was enqueued by `push` (owned mbufs).
    let n = unsafe { sys::rte_ring_dequeue_burst(ring.as_ptr(), objs.as_mut_ptr(), 1) };
    if n == 1 {
        // SAFETY: ownership travelled through the ring.
        objs.first().and_then(|raw| unsafe { Mbuf::from_raw(raw.cast()) })
    } else {
        None
    }
}

impl RingProducer {
    /// Enqueues `m`, or hands it back when the ring is full.
    pub fn push(&self, m: Mbuf) -> Result<(), Mbuf> {
        let raw = m.into_raw();
        let objs = [raw.cast::<std::ffi::c_void>()];
        // SAFETY: a live ring (the Arc keeps it); this end is its only producer and
        // not Sync, so no other thread enqueues now; `raw` is ours and handed over
        // when enqueued.
        let n = unsafe { sys::rte_ring_enqueue_burst(self.ring.0.as_ptr(), objs.as_ptr(), 1) };
        if n == 1 {
            Ok(())
        } else {
            // SAFETY: not enqueued, so still ours.
            unsafe { Mbuf::from_raw(raw) }.map_or(Ok(()), Err)
        }
    }
}

impl RingConsumer {
    /// Dequeues one mbuf.
    pub fn pop(&self) -> Option<Mbuf> {
        // The only consumer, on one thread (not Sync): SC holds.
        pop(self.ring.0)
    }
}
