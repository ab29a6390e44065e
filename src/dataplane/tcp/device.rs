//! smoltcp's [`phy::Device`] over the worker's mbufs: received frames queue for the
//! next poll, transmitted ones are written into fresh mbufs of the worker's pool and
//! go on its TX batch.
use super::*;

/// Frames smoltcp may be handed per poll (a burst, what other cores passed, ARP copies).
pub const RX_QUEUE: usize = 128;

/// Frames for smoltcp, owned until its poll consumes them (a fixed ring).
#[derive(Debug)]
pub struct FrameQueue {
    pub(super) slots: Vec<Option<Mbuf>>,
    pub(super) head: usize,
    pub(super) len: usize,
}

pub(super) fn capabilities() -> DeviceCapabilities {
    let mut caps = DeviceCapabilities::default();
    caps.medium = Medium::Ethernet;
    caps.max_transmission_unit = usize::from(MAX_FRAME);
    caps.max_burst_size = None;
    caps
}

/// smoltcp's view of the worker's queue: RX tokens are queued mbufs (smoltcp reads
/// their data in place), TX tokens allocate a fresh mbuf and let smoltcp write the
/// frame straight into its data room, then push it on the worker's TX batch.
pub struct MbufDevice<'a> {
    pub(super) rx: &'a mut FrameQueue,
    pub(super) pool: &'a Mempool,
    pub(super) tx: &'a mut TxBatch,
    pub(super) counters: &'a QueueCounters,
}

/// A received frame: read in place, freed after.
pub struct MbufRxToken(Mbuf);

impl phy::RxToken for MbufRxToken {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.0.data().unwrap_or(&[]))
    }
}

/// Room for one frame to send.
pub struct MbufTxToken<'a> {
    pub(super) pool: &'a Mempool,
    pub(super) tx: &'a mut TxBatch,
    pub(super) counters: &'a QueueCounters,
}

impl phy::TxToken for MbufTxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let room = u16::try_from(len).ok().filter(|l| *l <= MAX_FRAME);
        if let (Some(room), Some(mut m)) = (room, Mbuf::alloc(self.pool)) {
            if let Some(buf) = m.append(room) {
                let r = f(buf.get_mut(..len).unwrap_or(&mut []));
                self.tx.push(m);
                return r;
            }
        }
        // No mbuf (or an impossible length): smoltcp writes into a scratch frame that
        // is dropped and counted; TCP retransmits.
        self.counters.drop(DropReason::NoMbuf);
        let mut scratch = [0u8; MAX_FRAME as usize];
        let n = len.min(scratch.len());
        f(scratch.get_mut(..n).unwrap_or(&mut []))
    }
}

impl phy::Device for MbufDevice<'_> {
    type RxToken<'b>
        = MbufRxToken
    where
        Self: 'b;
    type TxToken<'b>
        = MbufTxToken<'b>
    where
        Self: 'b;

    fn receive(&mut self, _now: SmolInstant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let m = self.rx.pop()?;
        Some((MbufRxToken(m), MbufTxToken { pool: self.pool, tx: self.tx, counters: self.counters }))
    }

    fn transmit(&mut self, _now: SmolInstant) -> Option<Self::TxToken<'_>> {
        Some(MbufTxToken { pool: self.pool, tx: self.tx, counters: self.counters })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        capabilities()
    }
}

/// A device with no frames: only its capabilities are read (by `Interface::new`).
pub(super) struct NoFrames;

impl phy::Device for NoFrames {
    type RxToken<'b>
        = MbufRxToken
    where
        Self: 'b;
    type TxToken<'b>
        = MbufTxToken<'b>
    where
        Self: 'b;

    fn receive(&mut self, _now: SmolInstant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        None
    }

    fn transmit(&mut self, _now: SmolInstant) -> Option<Self::TxToken<'_>> {
        None
    }

    fn capabilities(&self) -> DeviceCapabilities {
        capabilities()
    }
}
