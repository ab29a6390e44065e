//! An owning mbuf: freed on drop, its data seen as a byte slice.
//!
//! Invariant: an [`Mbuf`] is the only owner of a single reference to a valid
//! `rte_mbuf` (refcount 1, as received from a queue or allocated from a pool), so
//! handing out `&mut [u8]` of its data is sound. Chained mbufs (more than one segment)
//! are refused by [`Mbuf::data`] and [`Mbuf::data_mut`]: a parser never sees half a
//! packet.
use dpdk_sys as sys;
use std::ptr::NonNull;

/// An mbuf chain has more than one segment; iwf does not read those.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chained;

/// One packet buffer from a DPDK mempool, owned.
#[derive(Debug)]
pub struct Mbuf(NonNull<sys::rte_mbuf>);

// SAFETY: an mbuf may be freed from any lcore (mempool put is thread-safe); ownership
// moves with the value.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Takes ownership of a raw mbuf (from an RX burst or an allocation).
    ///
    /// # Safety
    /// `raw` must be null or a valid mbuf the caller owns and hands over.
    #[inline]
    pub unsafe fn from_raw(raw: *mut sys::rte_mbuf) -> Option<Mbuf> {
        NonNull::new(raw).map(Mbuf)
    }

    /// Gives up ownership (for a TX burst, which takes it).
    #[inline]
    pub fn into_raw(self) -> *mut sys::rte_mbuf {
        let p = self.0.as_ptr();
        std::mem::forget(self);
        p
    }

    /// A fresh, empty mbuf from `pool`; `None` when the pool is exhausted.
    #[inline]
    pub fn alloc(pool: &Mempool) -> Option<Mbuf> {
        // SAFETY: the pool pointer is valid while `pool` lives; the result is ours.
        unsafe { Mbuf::from_raw(sys::rte_pktmbuf_alloc(pool.as_ptr())) }
    }

    #[inline]
    fn raw(&self) -> &sys::rte_mbuf {
        // SAFETY: valid by the type's invariant.
        unsafe { self.0.as_ref() }
    }

    /// The port it was received on (set by the RX driver).
    #[inline]
    pub fn port(&self) -> u16 {
        self.raw().port
    }

    /// Whether it has more than one segment.
    #[inline]
    pub fn is_chained(&self) -> bool {
        self.raw().nb_segs != 1 || !self.raw().next.is_null()
    }

    /// Packet length (all segments).
    #[inline]
    pub fn pkt_len(&self) -> usize {
        self.raw().pkt_len as usize
    }

    /// The data of a single-segment mbuf.
    #[inline]
    pub fn data(&self) -> Result<&[u8], Chained> {
        if self.is_chained() {
            return Err(Chained);
        }
        // SAFETY: a single segment holds data_len bytes at buf_addr + data_off.
        Ok(unsafe {
            std::slice::from_raw_parts(sys::rte_pktmbuf_mtod(self.0.as_ptr()), usize::from(self.raw().data_len))
        })
    }

    /// The data of a single-segment mbuf, writable.
    #[inline]
    pub fn data_mut(&mut self) -> Result<&mut [u8], Chained> {
        if self.is_chained() {
            return Err(Chained);
        }
        let len = usize::from(self.raw().data_len);
        // SAFETY: as in `data`, and we own the only reference (refcount 1).
        Ok(unsafe { std::slice::from_raw_parts_mut(sys::rte_pktmbuf_mtod(self.0.as_ptr()), len) })
    }

    /// Grows the data by `len` bytes at the tail and returns the whole data; `None`
    /// when the buffer lacks room or the mbuf is chained.
    #[inline]
    pub fn append(&mut self, len: u16) -> Option<&mut [u8]> {
        if self.is_chained() {
            return None;
        }
        // SAFETY: valid mbuf; append checks the tailroom and returns null without it.
        let p = unsafe { sys::rte_pktmbuf_append(self.0.as_ptr(), len) };
        if p.is_null() {
            return None;
        }
        self.data_mut().ok()
    }

    /// Room left after the data.
    #[inline]
    pub fn tailroom(&self) -> u16 {
        // SAFETY: valid mbuf.
        unsafe { sys::rte_pktmbuf_tailroom(self.0.as_ptr()) }
    }

    /// Shortens a single-segment mbuf to `len` bytes (no-op when already shorter).
    #[inline]
    pub fn truncate(&mut self, len: usize) {
        let cur = usize::from(self.raw().data_len);
        if len < cur && !self.is_chained() {
            if let Ok(cut) = u16::try_from(cur - len) {
                // SAFETY: valid mbuf; cut <= data_len of the last (only) segment.
                unsafe { sys::rte_pktmbuf_trim(self.0.as_ptr(), cut) };
            }
        }
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we own it; freeing returns the whole chain to its pool.
        unsafe { sys::rte_pktmbuf_free(self.0.as_ptr()) }
    }
}

/// A packet mempool, freed on drop (after every port using it has been closed).
#[derive(Debug)]
pub struct Mempool(NonNull<sys::rte_mempool>);

// SAFETY: DPDK mempools are multi-producer/multi-consumer; the pointer is shared by the
// workers and freed only by its owner after they have stopped.
unsafe impl Send for Mempool {}
unsafe impl Sync for Mempool {}

impl Mempool {
    /// `rte_pktmbuf_pool_create` with the default buffer size.
    pub fn create(name: &str, mbufs: u32, cache: u32, socket: i32) -> Result<Mempool, String> {
        let cname = std::ffi::CString::new(name).map_err(|_| format!("mempool name `{name}` contains NUL"))?;
        // SAFETY: EAL is initialised (Eal exists); the name is a valid C string.
        let p = unsafe {
            sys::rte_pktmbuf_pool_create(cname.as_ptr(), mbufs, cache, 0, sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16, socket)
        };
        NonNull::new(p).map(Mempool).ok_or_else(|| {
            format!(
                "cannot create mempool `{name}` of {mbufs} mbufs: {} (lower eal.mbufs or give EAL more memory)",
                super::eal::last_error()
            )
        })
    }

    /// The raw pointer, for queue setup and allocation.
    pub fn as_ptr(&self) -> *mut sys::rte_mempool {
        self.0.as_ptr()
    }

    /// Mbufs available (an estimate while workers run).
    pub fn available(&self) -> u32 {
        // SAFETY: valid pool.
        unsafe { sys::rte_mempool_avail_count(self.0.as_ptr()) }
    }
}

impl Drop for Mempool {
    /// Frees the pool only when every mbuf is back: an [`Mbuf`] still alive anywhere
    /// (a ring, a queue, a leaked handle) points into it, and freeing under it would
    /// be a use after free. A pool with mbufs out is left to the process's end (its
    /// hugepage memory goes with EAL's cleanup), and says so.
    fn drop(&mut self) {
        // SAFETY: a valid pool.
        let out = unsafe { sys::rte_mempool_in_use_count(self.0.as_ptr()) };
        if out != 0 {
            tracing::warn!("mempool not freed: {out} mbufs still in use");
            return;
        }
        // SAFETY: ours, and no mbuf of it is alive.
        unsafe { sys::rte_mempool_free(self.0.as_ptr()) }
    }
}
