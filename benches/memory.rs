//! Memory per pending correlation entry: the bytes the allocator
//! holds for a [`CorrelationTable`] with N converged → legacy messages waiting for their
//! SMSC receipts (inserted, then re-keyed by their submit_sm_resp id, as in service),
//! divided by N. A counting global allocator measures what the table really holds: its
//! preallocated arrays, index and id arena. Not a criterion bench: it prints one JSON line
//! (`scripts/bench.sh` writes it to BENCHMARKS.md). `-- --test` (as `cargo bench -- --test`
//! passes it) runs 10 000 entries instead of 1 000 000, and every run checks that each
//! entry is still found by its id.
use iwf::ids::LegacySystemId;
use iwf::interwork::address::Msisdn;
use iwf::interwork::converged_to_legacy::{canonical_id, CanonicalId, IdOrigin, StoredCorrelation};
use iwf::interwork::state::ReceiptState;
use iwf::interwork::IdCanonicalisation;
use iwf::route::correlation::{CorrelationConfig, CorrelationTable, NewMessage, ReceiptOutcome};
use iwf::route::select::UriTemplate;
use iwf::wire::cpim::{DateTime, Dispositions};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, counting the bytes currently allocated.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

#[allow(unsafe_code)]
// SAFETY: every call is forwarded unchanged to the system allocator; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            let now = LIVE.fetch_add(new_size, Ordering::Relaxed) + new_size;
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const SYS: LegacySystemId = LegacySystemId(3);
const T0: u64 = 1_800_000_000;

fn id(n: u64) -> CanonicalId {
    canonical_id(format!("{n:x}").as_bytes(), IdCanonicalisation::Folded, IdOrigin::SubmitResp).expect("id")
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test");
    let n: u32 = if quick { 10_000 } else { 1_000_000 };
    let config = CorrelationConfig {
        sender_template: Some(UriTemplate::parse("sip:+{msisdn}@ims.lab;user=phone").expect("template")),
        ..CorrelationConfig::default()
    };
    let before = LIVE.load(Ordering::Relaxed);
    let mut table = CorrelationTable::with_capacity(config, n as usize);
    let allocated = LIVE.load(Ordering::Relaxed) - before;
    let datetime = DateTime::from_unix(1_700_000_000);
    let mut message_id = String::new();
    for i in 0..n {
        use std::fmt::Write as _;
        message_id.clear();
        let _ = write!(message_id, "{:032x}", u128::from(i) * 0x9E37_79B9_7F4A_7C15);
        let sender = format!("sip:+4477009{:05}@ims.lab;user=phone", i % 100_000);
        let stored = StoredCorrelation {
            message_id: &message_id,
            sender: &sender,
            recipient: Msisdn::parse("+447000312345").expect("number"),
            dispositions: Dispositions::POSITIVE_DELIVERY.union(Dispositions::NEGATIVE_DELIVERY),
            datetime,
            imdn_record_route: None,
        };
        let seq = i + 1;
        table
            .insert(&NewMessage { system: SYS, stored, segments: 1, first_sequence: seq, deadline: T0 + 86_400 }, T0)
            .expect("insert");
        table.resp(SYS, seq, &id(0x5000_0000 + u64::from(i)), T0).expect("resp");
    }
    let held = LIVE.load(Ordering::Relaxed) - before;
    // Every entry is still there: its receipt finds it.
    for i in (0..n).step_by(997) {
        let out = table.receipt(SYS, &id(0x5000_0000 + u64::from(i)), ReceiptState::Delivered, T0);
        assert!(matches!(out, ReceiptOutcome::Notify { .. }), "entry {i} lost");
    }
    let per_entry = held as f64 / f64::from(n);
    println!(
        "{{\"figure\":\"correlation_bytes_per_entry\",\"entries\":{n},\"bytes_held\":{held},\"bytes_preallocated\":{allocated},\"bytes_per_entry\":{per_entry:.1}}}"
    );
    std::hint::black_box(&table);
}
