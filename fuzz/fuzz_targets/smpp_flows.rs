//! A legacy system's SMPP session driving the flows, from arbitrary bytes: the input is
//! a list of steps (`op u8`, then its bytes): stream chunks into a bound transceiver
//! session (its requests go to the flows, the flows' answers back to the session), SIP
//! final responses for what the flows sent to the converged side, time passing, the
//! bind closing and coming back. Nothing may panic, and every request the session
//! handed over is answered exactly once the flows have had their say.
#![no_main]

use iwf::flow::SmppOut;
use iwf::ids::ConnRef;
use iwf::ids::LegacySystemId;
use iwf::session::smpp::{BindRefusal, BindRequest, Session, SessionConfig};
use iwf::wire::smpp::CommandStatus;
use libfuzzer_sys::fuzz_target;
use std::net::Ipv4Addr;

const CONN: ConnRef = ConnRef::new(0, 7);
const UNIX: u64 = 1_800_000_000;

fn bind_transceiver() -> Vec<u8> {
    let body = b"smsca\0pwa\0\0\x34\x01\x01\0";
    let mut v = ((16 + body.len()) as u32).to_be_bytes().to_vec();
    v.extend_from_slice(&0x09u32.to_be_bytes());
    v.extend_from_slice(&[0; 4]);
    v.extend_from_slice(&1u32.to_be_bytes());
    v.extend_from_slice(body);
    v
}

fuzz_target!(|data: &[u8]| {
    let mut flows = iwf_fuzz::lab_flows();
    let mut auth = |b: &BindRequest<'_>| -> Result<LegacySystemId, BindRefusal> {
        if b.system_id == b"smsca" {
            Ok(LegacySystemId(1))
        } else {
            Err(BindRefusal::UnknownSystem)
        }
    };
    let mut session = Session::new(SessionConfig { window: 16, out_window: 16, aside: 64, ..SessionConfig::default() });
    let mut now = 1_000u64;
    session.connected(now, Ipv4Addr::new(198, 18, 1, 1));
    let mut stream = bind_transceiver();
    let mut tokens: Vec<u64> = Vec::new();
    let mut rest = data;
    let mut out = vec![0u8; 1 << 16];
    while let Some((&op, tail)) = rest.split_first() {
        let n = usize::from(tail.first().copied().unwrap_or(0));
        let (arg, next) = tail.get(1..).unwrap_or(&[]).split_at(n.min(tail.len().saturating_sub(1)));
        rest = next;
        match op % 6 {
            0 | 1 => stream.extend_from_slice(arg),
            2 => {
                // A SIP final for one of the flows' requests.
                if !tokens.is_empty() {
                    let t = tokens.remove(usize::from(arg.first().copied().unwrap_or(0)) % tokens.len());
                    let status = [200u16, 202, 404, 408, 480, 503][usize::from(arg.get(1).copied().unwrap_or(0)) % 6];
                    flows.sip_final(t, status);
                }
            }
            3 => now += u64::from(arg.first().copied().unwrap_or(1)) * 97,
            4 => flows.closed(CONN),
            _ => flows.bound(CONN, 1, true),
        }
        // The session reads what the stream holds; its requests go to the flows.
        let mut used = 0;
        loop {
            let input = session.handle_input(now, stream.get(used..).unwrap_or(&[]), &mut auth);
            if input.consumed == 0 && input.request.is_none() {
                break;
            }
            used += input.consumed;
            if let Some(pdu) = input.request {
                flows.smpp_request(now, UNIX + now / 1000, CONN, pdu.sequence_number, &pdu);
            }
        }
        stream.drain(..used.min(stream.len()));
        while let Some(e) = session.poll_event() {
            if let iwf::session::smpp::Event::Bound { .. } = e {
                flows.bound(CONN, 1, true);
            }
        }
        flows.poll(now, UNIX + now / 1000);
        while let Some(r) = flows.poll_request() {
            tokens.push(r.token);
        }
        while let Some((_, o)) = flows.poll_smpp(0) {
            match o {
                SmppOut::Respond { seq, status, message_id, id_len } => {
                    let id = message_id.get(..usize::from(id_len)).unwrap_or(&[]);
                    let _ = session.respond(seq, status, id);
                }
                SmppOut::SetAside { seq } => {
                    let _ = session.set_aside(seq);
                }
                SmppOut::Send(req) => match iwf::wire::smpp::Pdu::parse(req.item.pdu()) {
                    Ok(pdu) => match session.send_request(now, &pdu) {
                        Ok(seq) => {
                            flows.smpp_sent(CONN, seq, req);
                            flows.smpp_response(UNIX, CONN, seq, CommandStatus::ESME_ROK, b"");
                        }
                        Err(_) => flows.smpp_unsent(CONN, req),
                    },
                    Err(_) => flows.smpp_unsent(CONN, req),
                },
            }
        }
        let _ = session.poll_transmit(&mut out);
    }
});
