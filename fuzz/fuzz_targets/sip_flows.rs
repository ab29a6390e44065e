//! The converged side's SIP transactions driving the flows, from arbitrary bytes: the
//! input is a list of steps (`op u8`, `len u8`, bytes): datagrams into the server
//! transactions (new requests go to the flows as MESSAGEs or IMDNs, the flows' answers
//! back through the transactions), SIP finals for the flows' own requests, a legacy
//! system binding and answering its receipts, time passing. Nothing may panic, and an
//! answer is only ever given to a live transaction.
#![no_main]

use iwf::flow::{SipTxn, SmppOut};
use iwf::ids::ConnRef;
use iwf::session::sip::{Incoming, ServerConfig, ServerTransactions};
use iwf::wire::sip::Header;
use iwf::wire::smpp::CommandStatus;
use libfuzzer_sys::fuzz_target;
use std::net::{Ipv4Addr, SocketAddrV4};

const UNIX: u64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let mut flows = iwf_fuzz::lab_flows();
    let mut server = ServerTransactions::new(ServerConfig { capacity: 64, ..ServerConfig::default() });
    let peer = SocketAddrV4::new(Ipv4Addr::new(198, 18, 2, 1), 5060);
    let mut reply = vec![0u8; 4096];
    let mut tokens: Vec<u64> = Vec::new();
    let mut now = 1_000u64;
    let mut seq = 1u32;
    let mut rest = data;
    while let Some((&op, tail)) = rest.split_first() {
        let n = usize::from(tail.first().copied().unwrap_or(0)) * 4;
        let (arg, next) = tail.get(1..).unwrap_or(&[]).split_at(n.min(tail.len().saturating_sub(1)));
        rest = next;
        match op % 6 {
            0 | 1 | 2 => {
                let mut headers = [Header::EMPTY; 48];
                if let Incoming::New { id, request, .. } =
                    server.handle_request(now, peer, arg, &mut headers, &mut reply)
                {
                    flows.sip_message(now, UNIX + now / 1000, SipTxn::Udp { port: 1, id }, &request, arg);
                }
            }
            3 => {
                if !tokens.is_empty() {
                    let t = tokens.remove(usize::from(arg.first().copied().unwrap_or(0)) % tokens.len());
                    let status = [200u16, 202, 404, 408, 500][usize::from(arg.get(1).copied().unwrap_or(0)) % 5];
                    flows.sip_final(t, status);
                }
            }
            4 => now += u64::from(arg.first().copied().unwrap_or(1)) * 131,
            _ => {
                let system = 1 + u16::from(arg.first().copied().unwrap_or(0) % 3);
                flows.bound(ConnRef::new(0, system), system, true);
            }
        }
        flows.poll(now, UNIX + now / 1000);
        while let Some(r) = flows.poll_request() {
            tokens.push(r.token);
        }
        while let Some((conn, o)) = flows.poll_smpp(0) {
            if let SmppOut::Send(req) = o {
                seq = seq.wrapping_add(1).max(1);
                flows.smpp_sent(conn, seq, req);
                let status = if seq % 7 == 0 { CommandStatus::ESME_RTHROTTLED } else { CommandStatus::ESME_ROK };
                flows.smpp_response(UNIX, conn, seq, status, format!("id{seq}").as_bytes());
            }
        }
        while let Some(a) = flows.poll_any_answer() {
            if let SipTxn::Udp { id, .. } = a.txn {
                let _ = iwf::dataplane::sip::answer_into(
                    &mut server,
                    now,
                    id,
                    a.status,
                    a.reason,
                    a.retry_after,
                    &mut reply,
                );
            }
        }
    }
});
