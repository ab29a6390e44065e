//! SMPP codec benches: submit_sm parse, the receipt path (receipt text + TLVs +
//! deliver_sm emit, all allocation-free), receipt parse, and stream framing.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use iwf::wire::smpp::{
    frame, Address, Body, DeliverSm, EsmClass, MessageState, Pdu, Receipt, ReceiptDate, ReceiptStat, SubmitSm, TlvTag,
    TlvWriter, Tlvs, KANNEL_MAX_PDU_LEN,
};

fn submit_sm_bytes() -> Vec<u8> {
    let mut area = [0u8; 32];
    let mut w = TlvWriter::new(&mut area);
    w.u16(TlvTag::USER_MESSAGE_REFERENCE, 7).unwrap();
    w.u16(TlvTag::SAR_MSG_REF_NUM, 0x1234).unwrap();
    w.u8(TlvTag::SAR_TOTAL_SEGMENTS, 2).unwrap();
    w.u8(TlvTag::SAR_SEGMENT_SEQNUM, 1).unwrap();
    let pdu = Pdu::new(
        2,
        Body::SubmitSm(SubmitSm {
            source: Address::international(b"447700900123"),
            destination: Address::international(b"447700900456"),
            registered_delivery: iwf::wire::smpp::RegisteredDelivery(1),
            short_message: b"Hello from the legacy side, this is a 160-character-ish SMS text used to benchmark the submit_sm parse path of iwf.",
            tlvs: Tlvs::Raw(w.as_bytes()),
            ..SubmitSm::default()
        }),
    );
    let mut buf = vec![0u8; pdu.buffer_len()];
    pdu.emit(&mut buf).unwrap();
    buf
}

/// The whole receipt emit path: canonical text, TLVs, deliver_sm PDU.
fn emit_receipt(out: &mut [u8], id: &[u8], seq: u32) -> usize {
    let receipt = Receipt {
        id: Some(id),
        sub: Some(1),
        dlvrd: Some(1),
        submit_date: ReceiptDate::new(24, 1, 1, 12, 0, None),
        done_date: ReceiptDate::new(24, 1, 1, 12, 1, None),
        stat: Some(ReceiptStat::Delivered),
        err: Some(b"000"),
        text: Some(b"Hello from the converged side"),
    };
    let mut text = [0u8; iwf::wire::smpp::receipt::RECEIPT_MAX_LEN];
    let text_len = receipt.emit(&mut text).unwrap();
    let mut area = [0u8; 80];
    let mut w = TlvWriter::new(&mut area);
    w.receipted_message_id(id).unwrap().message_state(MessageState::Delivered).unwrap();
    let pdu = Pdu::new(
        seq,
        Body::DeliverSm(DeliverSm {
            source: Address::international(b"447700900456"),
            destination: Address::international(b"447700900123"),
            esm_class: EsmClass(EsmClass::SMSC_DELIVERY_RECEIPT),
            short_message: &text[..text_len],
            tlvs: Tlvs::Raw(w.as_bytes()),
            ..DeliverSm::default()
        }),
    );
    pdu.emit(out).unwrap()
}

fn benches(c: &mut Criterion) {
    let submit = submit_sm_bytes();
    let mut g = c.benchmark_group("smpp");
    g.throughput(Throughput::Bytes(submit.len() as u64));
    g.bench_function("parse_submit_sm", |b| {
        b.iter(|| {
            let pdu = Pdu::parse(black_box(&submit)).unwrap();
            black_box(pdu.body.tlvs().user_message_reference().unwrap())
        })
    });

    let mut out = [0u8; 512];
    let id = b"0f3kq9z2m1x7c5v8b4n6a0s2d9f1g3h5";
    let n = emit_receipt(&mut out, id, 7);
    let receipt_pdu = out[..n].to_vec();
    g.throughput(Throughput::Bytes(n as u64));
    g.bench_function("emit_deliver_sm_receipt", |b| {
        b.iter(|| black_box(emit_receipt(black_box(&mut out), black_box(id), black_box(7))))
    });

    g.bench_function("parse_deliver_sm_receipt", |b| {
        b.iter(|| {
            let pdu = Pdu::parse(black_box(&receipt_pdu)).unwrap();
            let Body::DeliverSm(sm) = pdu.body else { unreachable!() };
            let state = sm.tlvs.message_state().unwrap();
            let receipt = Receipt::parse(sm.short_message).unwrap();
            black_box((state, receipt.id, receipt.stat))
        })
    });

    // A stream of 64 PDUs (enquire_link, submit_sm, receipts) framed one by one.
    let mut stream = Vec::new();
    for i in 0..64 {
        match i % 3 {
            0 => stream.extend_from_slice(&[0, 0, 0, 16, 0, 0, 0, 0x15, 0, 0, 0, 0, 0, 0, 0, 1]),
            1 => stream.extend_from_slice(&submit),
            _ => stream.extend_from_slice(&receipt_pdu),
        }
    }
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function("frame_stream_64_pdus", |b| {
        b.iter(|| {
            let mut rest: &[u8] = black_box(&stream);
            let mut count = 0usize;
            while let Some(len) = frame(rest, KANNEL_MAX_PDU_LEN).unwrap() {
                rest = &rest[len..];
                count += 1;
            }
            black_box(count)
        })
    });
    g.finish();
}

criterion_group!(smpp, benches);
criterion_main!(smpp);
