//! The TCP stack against smoltcp peers in memory: binds, windows, admission, flow
//! steering between workers, SIP over TCP.
use super::*;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// A bounded ring for tests (the packet path uses `rte_ring`).
struct TestRing<T = u32>(Arc<Mutex<VecDeque<T>>>, usize);

impl<T> Clone for TestRing<T> {
    fn clone(&self) -> Self {
        TestRing(Arc::clone(&self.0), self.1)
    }
}

impl<T> std::fmt::Debug for TestRing<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestRing")
    }
}

impl<T: Send> SegmentSender for TestRing<T> {
    type Item = T;
    fn push(&self, item: T) -> Result<(), T> {
        let mut q = self.0.lock().unwrap();
        if q.len() >= self.1 {
            return Err(item);
        }
        q.push_back(item);
        Ok(())
    }
}

impl<T: Send> SegmentReceiver for TestRing<T> {
    type Item = T;
    fn pop(&self) -> Option<T> {
        self.0.lock().unwrap().pop_front()
    }
}

fn peer(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, 1), port)
}

#[test]
fn one_worker_owns_everything() {
    for p in [1u16, 2775, 40000, 65535] {
        assert_eq!(flow_owner(peer(p), 2775, 1), 0);
        assert_eq!(flow_owner(peer(p), EPHEMERAL_BASE + 300, 1), 0);
    }
}

#[test]
fn active_opens_belong_to_the_worker_that_made_them() {
    for q in 0..4u16 {
        let r = ephemeral_range(q);
        assert_eq!(r.len(), usize::from(EPHEMERAL_PER_WORKER));
        for local in [r.start, r.start + 17, r.end - 1] {
            for p in [2776u16, 5060, 9] {
                assert_eq!(flow_owner(peer(p), local, 4), q, "port {local}");
            }
        }
    }
    // A slice beyond the worker count is hashed like any passive flow.
    let beyond = ephemeral_range(9).start;
    assert!(flow_owner(peer(1), beyond, 4) < 4);
    assert!(ephemeral_range(3).end <= ephemeral_range(4).start);
}

#[test]
fn passive_flows_spread_by_hash_and_stay_put() {
    let mut per = [0usize; 4];
    for p in 30000..34000u16 {
        let o = flow_owner(peer(p), 2775, 4);
        assert_eq!(o, flow_owner(peer(p), 2775, 4), "deterministic");
        per[usize::from(o)] += 1;
    }
    // 4000 flows over 4 cores: each gets a fair share (within 20 %).
    assert!(per.iter().all(|&n| (800..=1200).contains(&n)), "{per:?}");
}

#[test]
fn segments_reach_their_owner_through_the_ring() {
    const W: u16 = 3;
    // rings[src][dst]
    let rings: Vec<Vec<Option<TestRing<u32>>>> = (0..W)
        .map(|s| (0..W).map(|d| (s != d).then(|| TestRing(Arc::new(Mutex::new(VecDeque::new())), 4))).collect())
        .collect();
    let handoff = |me: u16| {
        let out = rings[usize::from(me)].clone();
        let inbound = (0..W).map(|s| rings[usize::from(s)][usize::from(me)].clone()).collect();
        Handoff::new(me, W, out, inbound)
    };
    let h: Vec<_> = (0..W).map(handoff).collect();
    // Worker 0 receives segments of many flows; each must end at its owner.
    let mut local = Vec::new();
    let mut passed = 0;
    let mut full = 0;
    for p in 40000..40012u16 {
        match h[0].steer(peer(p), 2775) {
            Steer::Local => local.push(u32::from(p)),
            Steer::To(q) => match h[0].pass(q, u32::from(p)) {
                Ok(()) => passed += 1,
                Err(_) => full += 1,
            },
        }
    }
    // The active open of worker 2 comes back on worker 0 and goes to worker 2.
    let mine = ephemeral_range(2).start;
    assert_eq!(h[0].steer(peer(2776), mine), Steer::To(2));
    assert_eq!(h[2].steer(peer(2776), mine), Steer::Local);
    let mut got = vec![Vec::new(); usize::from(W)];
    for q in 1..W {
        h[usize::from(q)].drain(HANDOFF_BURST, |s| got[usize::from(q)].push(s));
        for s in &got[usize::from(q)] {
            assert_eq!(flow_owner(peer(*s as u16), 2775, W), q);
        }
    }
    assert_eq!(got[1].len() + got[2].len(), passed);
    assert_eq!(local.len() + passed + full, 12);
    assert!(local.iter().all(|p| flow_owner(peer(*p as u16), 2775, W) == 0));
    // A full ring hands the segment back (the caller counts and drops it).
    let tiny: TestRing<u32> = TestRing(Arc::new(Mutex::new(VecDeque::new())), 1);
    let h1 = Handoff::new(0, 2, vec![None, Some(tiny.clone())], Vec::<Option<TestRing<u32>>>::from([None, None]));
    assert_eq!(h1.pass(1, 7), Ok(()));
    assert_eq!(h1.pass(1, 8), Err(8));
    assert_eq!(h1.pass(0, 9), Err(9), "no ring to itself");
    assert_eq!(Handoff::<TestRing, TestRing>::single().steer(peer(1), 2775), Steer::Local);
}

/// Frames in memory: a device receives from `inbox` and sends to `out`.
#[derive(Default)]
struct Wire {
    inbox: VecDeque<Vec<u8>>,
    out: VecDeque<Vec<u8>>,
}

struct VecRx(Vec<u8>);

impl phy::RxToken for VecRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

struct VecTx<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::TxToken for VecTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut b = vec![0u8; len];
        let r = f(&mut b);
        self.0.push_back(b);
        r
    }
}

impl phy::Device for Wire {
    type RxToken<'a> = VecRx;
    type TxToken<'a> = VecTx<'a>;

    fn receive(&mut self, _: SmolInstant) -> Option<(VecRx, VecTx<'_>)> {
        let f = self.inbox.pop_front()?;
        Some((VecRx(f), VecTx(&mut self.out)))
    }

    fn transmit(&mut self, _: SmolInstant) -> Option<VecTx<'_>> {
        Some(VecTx(&mut self.out))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        capabilities()
    }
}

const IWF_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);

/// An ESME host on kernel-less TCP (plain smoltcp) facing one [`Endpoint`].
struct Lab {
    iwf: Endpoint,
    iwf_wire: Wire,
    esme: Interface,
    esme_wire: Wire,
    sockets: SocketSet<'static>,
    counters: QueueCounters,
    now: u64,
    /// The engine iwf's endpoint hands requests to (none: it answers them itself).
    flows: Option<crate::flow::Flows>,
}

fn settings(per_peer: usize) -> StackSettings {
    StackSettings {
        mac: EthernetAddress([2, 0, 0, 0, 0, 2]),
        ip: IWF_IP,
        prefix_len: 24,
        gateway: None,
        smpp_port: Some(2775),
        sip_port: None,
        clients: Vec::new(),
        tcp: TcpConfig { sockets: 8, rx_buffer: 4096, tx_buffer: 4096, max_connections_per_peer: per_peer },
        limits: std::sync::Arc::new(PeerLimits::new(per_peer)),
        bind_guard: std::sync::Arc::new(BindGuard::default()),
        parts_aside: 0,
        sip_trusted: Vec::new(),
        queue: 0,
        sip_transactions: 16,
        sip_slot_bytes: 1024,
        sip_next_hop: None,
        timer_f_ms: 0,
    }
}

impl Lab {
    fn new(per_peer: usize) -> Lab {
        Lab::build(settings(per_peer))
    }

    fn build(settings: StackSettings) -> Lab {
        let legacy = [LegacyConfig {
            id: 1,
            name: "smsc-a".into(),
            system_id: "smsca".into(),
            password: "pwa".into(),
            allow: vec![(Ipv4Addr::new(198, 18, 1, 0), 24)],
            window: 10,
            connect: None,
            connect_port: None,
            reconnect_ms: (1000, 60_000),
            ..LegacyConfig::default()
        }];
        let iwf = Endpoint::new(&settings, Directory::new(&legacy), crate::session::sip::unknown_recipient, 0);
        let mut esme_wire = Wire::default();
        let mut esme = Interface::new(
            Config::new(HardwareAddress::Ethernet(EthernetAddress([2, 0, 0, 0, 0, 1]))),
            &mut esme_wire,
            SmolInstant::from_millis(0),
        );
        esme.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(Ipv4Addr::new(198, 18, 1, 1)), 24));
        });
        Lab {
            iwf,
            iwf_wire: Wire::default(),
            esme,
            esme_wire,
            sockets: SocketSet::new(Vec::new()),
            counters: QueueCounters::default(),
            now: 0,
            flows: None,
        }
    }

    fn connect(&mut self, local_port: u16) -> SocketHandle {
        self.connect_to(2775, local_port)
    }

    fn connect_to(&mut self, port: u16, local_port: u16) -> SocketHandle {
        let s = tcp::Socket::new(tcp::SocketBuffer::new(vec![0; 4096]), tcp::SocketBuffer::new(vec![0; 4096]));
        let h = self.sockets.add(s);
        let sock = self.sockets.get_mut::<tcp::Socket>(h);
        sock.connect(self.esme.context(), (IpAddress::Ipv4(IWF_IP), port), local_port).unwrap();
        h
    }

    fn listen(&mut self, port: u16) -> SocketHandle {
        let s = tcp::Socket::new(tcp::SocketBuffer::new(vec![0; 4096]), tcp::SocketBuffer::new(vec![0; 4096]));
        let h = self.sockets.add(s);
        self.sockets.get_mut::<tcp::Socket>(h).listen(port).unwrap();
        h
    }

    fn text(&mut self, h: SocketHandle) -> String {
        let mut buf = [0u8; 4096];
        let n = self.sock(h).recv_slice(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Runs both ends for `ms` milliseconds of virtual time.
    fn run(&mut self, ms: u64) {
        for _ in 0..ms {
            self.now += 1;
            let t = SmolInstant::from_millis(self.now as i64);
            self.esme.poll(t, &mut self.esme_wire, &mut self.sockets);
            self.iwf_wire.inbox.extend(self.esme_wire.out.drain(..));
            let input = !self.iwf_wire.inbox.is_empty();
            self.iwf.poll(self.now, input, &self.counters, &mut self.iwf_wire, self.flows.as_mut());
            self.esme_wire.inbox.extend(self.iwf_wire.out.drain(..));
        }
    }

    fn sock(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket>(h)
    }

    /// The (command_id, status, sequence) of every whole PDU the ESME received.
    fn responses(&mut self, h: SocketHandle) -> Vec<(u32, u32, u32)> {
        let mut bytes = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.sock(h).recv_slice(&mut buf) {
            if n == 0 {
                break;
            }
            bytes.extend_from_slice(&buf[..n]);
        }
        let word = |b: &[u8], i: usize| u32::from_be_bytes(b[i..i + 4].try_into().unwrap());
        let mut out = Vec::new();
        let mut at = 0;
        while bytes.len() >= at + 16 {
            let len = word(&bytes, at) as usize;
            out.push((word(&bytes, at + 4), word(&bytes, at + 8), word(&bytes, at + 12)));
            at += len.max(16);
        }
        out
    }
}

fn pdu(command_id: u32, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut p = ((16 + body.len()) as u32).to_be_bytes().to_vec();
    p.extend_from_slice(&command_id.to_be_bytes());
    p.extend_from_slice(&[0; 4]);
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(body);
    p
}

fn bind(system_id: &str, password: &str) -> Vec<u8> {
    let body = [system_id.as_bytes(), b"\0", password.as_bytes(), b"\0\0\x34\0\0\0"].concat();
    pdu(0x09, 1, &body)
}

fn submit_sm(seq: u32) -> Vec<u8> {
    let body = b"\0\x01\x01447000100001\0\x01\x01447000200002\0\0\0\0\0\0\x01\0\0\0\x02hi";
    pdu(0x04, seq, body)
}

#[test]
fn smpp_over_smoltcp_binds_answers_rx_t_appn_and_throttles_beyond_the_window() {
    let mut lab = Lab::new(8);
    let h = lab.connect(40000);
    lab.run(50);
    assert_eq!(lab.sock(h).state(), TcpState::Established);
    assert_eq!(lab.counters.tcp.accepted.get(), 1);
    lab.sock(h).send_slice(&bind("smsca", "pwa")).unwrap();
    lab.run(50);
    assert_eq!(lab.responses(h), [(0x8000_0009, 0, 1)], "bind_transceiver_resp ESME_ROK");
    assert_eq!(lab.counters.smpp.binds_ok.get(), 1);
    // Twelve submit_sm in one segment: the window's ten answered ESME_RX_T_APPN
    // (iwf cannot deliver yet), two ESME_RTHROTTLED; none dropped.
    let burst: Vec<u8> = (10..22).flat_map(submit_sm).collect();
    lab.sock(h).send_slice(&burst).unwrap();
    lab.run(50);
    let got = lab.responses(h);
    assert_eq!(got.len(), 12, "{got:?}");
    assert!(got.iter().all(|r| r.0 == 0x8000_0004), "{got:?}");
    assert_eq!(got.iter().filter(|r| r.1 == 0x64).count(), 10, "{got:?}");
    assert_eq!(got.iter().filter(|r| r.1 == 0x58).count(), 2, "{got:?}");
    let mut seqs: Vec<u32> = got.iter().map(|r| r.2).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (10..22).collect::<Vec<_>>());
    assert_eq!((lab.counters.smpp.rx_t_appn.get(), lab.counters.smpp.throttled.get()), (10, 2));
    // enquire_link, then unbind: answered, and iwf's side closes after the peer's FIN.
    lab.sock(h).send_slice(&[pdu(0x15, 30, b""), pdu(0x06, 31, b"")].concat()).unwrap();
    lab.run(50);
    assert_eq!(lab.responses(h), [(0x8000_0015, 0, 30), (0x8000_0006, 0, 31)]);
    lab.sock(h).close();
    lab.run(100);
    assert_eq!(lab.counters.smpp.unbind_in.get(), 1);
    assert_eq!(lab.counters.smpp.sessions_closed.get(), 1);
    assert_eq!(lab.counters.tcp.closed.get(), 1);
    assert_eq!(lab.counters.smpp.pdus_in.get(), 15);
    assert_eq!(lab.counters.smpp.pdus_out.get(), 15);
}

/// A bind and a submit_sm in one segment (an ESME or SMSC that sends its queue as
/// soon as it binds): the flows learn of the bind before the request reaches them,
/// so it is taken, not refused as unbound.
#[test]
fn a_request_in_the_bind_segment_reaches_the_flows_as_bound() {
    let mut lab = Lab::new(8);
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/lab.toml")).unwrap();
    let provision = crate::control::provision::Provision::parse(&text).unwrap();
    let shared = Arc::new(crate::flow::Shared::new(provision, 1, None).unwrap());
    let config = crate::flow::FlowsConfig {
        core: 0,
        next_hop: SocketAddrV4::new(Ipv4Addr::new(198, 18, 2, 1), 5060),
        local_sent_by: "198.18.2.2:5060".into(),
        parts_aside: 64,
        reassembly: (1024, 1 << 20),
    };
    lab.flows = Some(crate::flow::Flows::new(config, shared));
    let h = lab.connect(40000);
    lab.run(50);
    lab.sock(h).send_slice(&[bind("smsca", "pwa"), submit_sm(7)].concat()).unwrap();
    lab.run(50);
    // The bind answered; the submit_sm waits for its SIP MESSAGE's final response.
    assert_eq!(lab.responses(h), [(0x8000_0009, 0, 1)]);
    let flows = lab.flows.as_mut().unwrap();
    assert!(flows.poll_request().is_some(), "the submit_sm became a SIP MESSAGE");
}

#[test]
fn admission_at_the_syn_and_the_bind_back_off() {
    let mut lab = Lab::new(8);
    let esme = Ipv4Addr::new(198, 18, 1, 1);
    // Only the SMPP port is judged, and only addresses a system allows pass.
    assert_eq!(lab.iwf.admit(esme, 2775, 0), Ok(()));
    assert_eq!(lab.iwf.admit(Ipv4Addr::new(198, 18, 2, 9), 2775, 0), Err(Refusal::NotAllowed));
    assert_eq!(lab.iwf.admit(Ipv4Addr::new(198, 18, 2, 9), 2776, 0), Ok(()), "not a service: smoltcp's");
    // Four wrong passwords: still admitted; the fifth starts the back-off.
    for i in 0..5u16 {
        let h = lab.connect(42000 + i);
        lab.run(30);
        lab.sock(h).send_slice(&bind("smsca", "guess")).unwrap();
        lab.run(50);
        assert_eq!(lab.responses(h), [(0x8000_0009, 0x0d, 1)]);
        let admitted = lab.iwf.admit(esme, 2775, lab.now);
        assert_eq!(admitted.is_ok(), i < 4, "after failure {}", i + 1);
        lab.sock(h).abort();
        lab.run(20);
    }
    assert_eq!(lab.counters.smpp.bind_backoffs.get(), 1);
    assert_eq!(lab.iwf.admit(esme, 2775, lab.now + 59_000), Err(Refusal::Backoff));
    assert_eq!(lab.iwf.admit(esme, 2775, lab.now + 61_000), Ok(()), "a minute later");
    // Every unbound place went back when those connections closed.
    assert_eq!(lab.iwf.guard.unbound.held(), 0);
}

#[test]
fn unbound_connections_are_capped_for_the_port_and_a_bind_frees_a_place() {
    let mut s = settings(8);
    s.bind_guard = std::sync::Arc::new(BindGuard::new(Default::default(), 2, 64, false));
    let mut lab = Lab::build(s);
    let hs: Vec<_> = (0..3).map(|i| lab.connect(43000 + i)).collect();
    lab.run(100);
    let up: Vec<_> = hs.iter().filter(|h| lab.sock(**h).state() == TcpState::Established).copied().collect();
    assert_eq!(up.len(), 2);
    assert_eq!(lab.counters.tcp.refused_unbound_cap.get(), 1);
    // One binds: its place is free for the next stranger.
    lab.sock(up[0]).send_slice(&bind("smsca", "pwa")).unwrap();
    lab.run(50);
    assert_eq!(lab.responses(up[0]), [(0x8000_0009, 0, 1)]);
    assert_eq!(lab.iwf.guard.unbound.held(), 1);
    let h = lab.connect(43010);
    lab.run(100);
    assert_eq!(lab.sock(h).state(), TcpState::Established);
}

#[test]
fn passwords_compare_whole() {
    assert!(password_matches(b"pwa", b"pwa"));
    assert!(!password_matches(b"pwa", b"pw"));
    assert!(!password_matches(b"pwa", b"pwa\0"));
    assert!(!password_matches(b"", b"x"));
    assert!(!password_matches(b"12345678", b"12345679"));
}

#[test]
fn a_stranger_learns_nothing_from_the_refusal_reason() {
    let legacy = [LegacyConfig {
        id: 1,
        system_id: "smsca".into(),
        password: "pwa".into(),
        allow: vec![(Ipv4Addr::new(198, 18, 1, 1), 32)],
        ..LegacyConfig::default()
    }];
    let mut d = Directory::new(&legacy);
    let bind = |system_id: &'static [u8], password: &'static [u8], peer| BindRequest {
        system_id,
        password,
        system_type: b"",
        bind_type: crate::session::smpp::BindType::Transceiver,
        interface_version: 0x34,
        peer,
    };
    let stranger = Ipv4Addr::new(198, 18, 1, 9);
    // Unknown system_id, wrong password, right password: the address is checked first.
    for (id, pw) in [(&b"nobody"[..], &b"pwa"[..]), (b"smsca", b"wrong"), (b"smsca", b"pwa")] {
        assert_eq!(d.authenticate(&bind(id, pw, stranger)), Err(BindRefusal::AddressNotAllowed));
    }
    let esme = Ipv4Addr::new(198, 18, 1, 1);
    assert_eq!(d.authenticate(&bind(b"nobody", b"pwa", esme)), Err(BindRefusal::UnknownSystem));
    assert_eq!(d.authenticate(&bind(b"smsca", b"wrong", esme)), Err(BindRefusal::BadPassword));
    assert_eq!(d.authenticate(&bind(b"smsca", b"pwa", esme)), Ok(LegacySystemId(1)));
}

#[test]
fn refused_binds_close_and_the_per_peer_limit_resets() {
    let mut lab = Lab::new(2);
    let h = lab.connect(40001);
    lab.run(30);
    lab.sock(h).send_slice(&bind("smsca", "nope")).unwrap();
    lab.run(50);
    assert_eq!(lab.responses(h), [(0x8000_0009, 0x0d, 1)], "ESME_RBINDFAIL, the only refusal a peer sees");
    assert!(!lab.sock(h).may_recv(), "iwf closed the connection after the refusal");
    assert_eq!(lab.counters.smpp.bind_refused_password.get(), 1);
    lab.sock(h).close();
    lab.run(50);
    // Three connections from one address, two allowed: the third is reset.
    let hs: Vec<_> = (0..3).map(|i| lab.connect(41000 + i)).collect();
    lab.run(100);
    let states: Vec<_> = hs.iter().map(|h| lab.sock(*h).state()).collect();
    assert_eq!(states.iter().filter(|s| **s == TcpState::Established).count(), 2, "{states:?}");
    assert_eq!(states.iter().filter(|s| **s == TcpState::Closed).count(), 1, "{states:?}");
    assert_eq!(lab.counters.tcp.refused_peer_limit.get(), 1);
    // An unknown system_id on an allowed connection.
    let ok = *hs.iter().find(|h| lab.sock(**h).state() == TcpState::Established).unwrap();
    lab.sock(ok).send_slice(&bind("nosuch", "pwa")).unwrap();
    lab.run(50);
    assert_eq!(lab.responses(ok), [(0x8000_0009, 0x0d, 1)], "ESME_RBINDFAIL for an unknown system_id too");
    assert_eq!(lab.counters.smpp.bind_refused_system_id.get(), 1);
}

#[test]
fn smpp_client_backs_off_binds_and_stops_after_an_auth_rejection() {
    let mut st = settings(8);
    st.smpp_port = None;
    st.clients = vec![SmscClient {
        system: 3,
        remote: SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, 1), 2776),
        credentials: Credentials::transceiver(b"iwf", b"pwc").unwrap(),
        window: 10,
        reconnect: ReconnectConfig { initial: 100, max: 400 },
    }];
    let mut lab = Lab::build(st);
    // Nothing listens: each SYN is reset; the attempts follow the back-off (100 ms
    // doubling to 400 ms, jittered), not the 1 ms loop.
    lab.run(3000);
    let failed = lab.counters.tcp.connect_failed.get();
    assert!((5..=20).contains(&failed), "{failed} attempts in 3 s");
    assert_eq!(lab.counters.smpp.client_connects.get(), failed);
    // The SMSC listens: iwf connects from its own ephemeral slice and binds.
    let smsc = lab.listen(2776);
    lab.run(600);
    assert_eq!(lab.sock(smsc).state(), TcpState::Established);
    let local = lab.sock(smsc).remote_endpoint().unwrap().port;
    assert!(ephemeral_range(0).contains(&local), "local port {local}");
    let mut buf = [0u8; 256];
    let n = lab.sock(smsc).recv_slice(&mut buf).unwrap();
    assert_eq!(&buf[4..8], &[0, 0, 0, 9], "bind_transceiver");
    assert_eq!(&buf[16..n], b"iwf\0pwc\0\0\x34\0\0\0");
    let seq = u32::from_be_bytes(buf[12..16].try_into().unwrap());
    lab.sock(smsc).send_slice(&pdu(0x8000_0009, seq, b"smsc\0")).unwrap();
    lab.run(50);
    assert_eq!((lab.counters.smpp.client_bound.get(), lab.counters.smpp.client_up.get()), (1, 1));
    // The SMSC goes away: the session is lost, iwf reconnects.
    lab.sock(smsc).abort();
    lab.run(100);
    assert_eq!((lab.counters.smpp.client_lost.get(), lab.counters.smpp.client_up.get()), (1, 0));
    let before = lab.counters.smpp.client_connects.get();
    lab.run(1000);
    assert!(lab.counters.smpp.client_connects.get() > before, "reconnects after the loss");
    // It comes back and refuses iwf's password: the alarm, and no rebind at all.
    let smsc = lab.listen(2776);
    lab.run(600);
    let n = lab.sock(smsc).recv_slice(&mut buf).unwrap();
    assert!(n >= 16);
    let seq = u32::from_be_bytes(buf[12..16].try_into().unwrap());
    let mut refusal = pdu(0x8000_0009, seq, b"");
    refusal[8..12].copy_from_slice(&0x0eu32.to_be_bytes());
    lab.sock(smsc).send_slice(&refusal).unwrap();
    lab.run(100);
    assert_eq!(lab.counters.smpp.client_auth_rejected.get(), 1);
    let connects = lab.counters.smpp.client_connects.get();
    lab.run(3000);
    assert_eq!(lab.counters.smpp.client_connects.get(), connects, "no rebind after ESME_RINVPASWD");
}

#[test]
fn sip_over_tcp_is_framed_by_content_length_and_answered_on_the_stream() {
    let mut st = settings(8);
    st.smpp_port = None;
    st.sip_port = Some(5060);
    let mut lab = Lab::build(st);
    let h = lab.connect_to(5060, 42000);
    lab.run(30);
    let request = |method: &str, n: u32, body: &str| {
        format!(
            "{method} sip:+447000100001@iwf.ims.lab SIP/2.0\r\nVia: SIP/2.0/TCP 198.18.1.1:42000;branch=z9hG4bK-t{n}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:a@ims.lab>;tag={n}\r\nTo: <sip:+447000100001@iwf.ims.lab>\r\n\
             Call-ID: c{n}\r\nCSeq: 1 {method}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    // A MESSAGE in two segments, then an OPTIONS right behind it (CRLF keep-alive between).
    let message = request("MESSAGE", 1, "hello over TCP");
    let (a, b) = message.split_at(message.len() - 5);
    lab.sock(h).send_slice(a.as_bytes()).unwrap();
    lab.run(20);
    assert_eq!(lab.text(h), "", "nothing before the whole body arrived");
    lab.sock(h).send_slice(format!("{b}\r\n\r\n{}", request("OPTIONS", 2, "")).as_bytes()).unwrap();
    lab.run(20);
    let answers = lab.text(h);
    assert!(answers.starts_with("SIP/2.0 404 "), "{answers}");
    assert_eq!(answers.matches("SIP/2.0 ").count(), 2, "{answers}");
    assert!(answers.contains("SIP/2.0 200 OK"), "{answers}");
    assert!(answers.contains("CSeq: 1 OPTIONS"), "{answers}");
    assert_eq!(lab.counters.tcp.sip_requests.get(), 2);
    assert_eq!((lab.counters.tcp.sip_tx_2xx.get(), lab.counters.tcp.sip_tx_other.get()), (1, 1));
    // A stream that cannot be framed is closed.
    lab.sock(h).send_slice(b"OPTIONS sip:x SIP/2.0\r\nVia: x\r\n\r\n").unwrap();
    lab.run(50);
    assert_eq!(lab.counters.tcp.sip_stream_errors.get(), 1);
    assert!(!lab.sock(h).is_active(), "reset by iwf");
}

/// Two workers on one port, each with its own [`Endpoint`], behind a "NIC" that
/// spreads the peer's frames over the two queues by its own hash (not iwf's): every
/// TCP segment goes to its owner through the rings, so the ESMEs' binds and the
/// active open of worker 1 (whose replies land on either queue) all work, and the
/// per-peer limit holds across both workers.
/// One worker of the two-worker test: its endpoint, its wire, its rings.
type TestWorker = (Endpoint, Wire, Handoff<TestRing<Vec<u8>>, TestRing<Vec<u8>>>);

#[test]
fn two_workers_hand_segments_to_the_flow_owner() {
    let limits = Arc::new(PeerLimits::new(6));
    let mut workers: Vec<TestWorker> = Vec::new();
    let rings: Vec<Vec<Option<TestRing<Vec<u8>>>>> = (0..2)
        .map(|s| (0..2).map(|d| (s != d).then(|| TestRing(Arc::new(Mutex::new(VecDeque::new())), 64))).collect())
        .collect();
    for q in 0..2u16 {
        let mut st = settings(6);
        st.limits = Arc::clone(&limits);
        st.queue = q;
        if q == 1 {
            st.clients = vec![SmscClient {
                system: 3,
                remote: SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, 1), 2776),
                credentials: Credentials::transceiver(b"iwf", b"pwc").unwrap(),
                window: 10,
                reconnect: ReconnectConfig { initial: 50, max: 200 },
            }];
        }
        let base = Lab::build(st);
        let out = rings[usize::from(q)].clone();
        let inbound = (0..2).map(|s| rings[s][usize::from(q)].clone()).collect();
        workers.push((base.iwf, Wire::default(), Handoff::new(q, 2, out, inbound)));
    }
    // The peer host: ESMEs and the SMSC of worker 1's bind.
    let mut peer = Lab::new(6);
    let smsc = peer.listen(2776);
    let esmes: Vec<SocketHandle> = (0..8).map(|i| peer.connect(44000 + i)).collect();
    let counters = [QueueCounters::default(), QueueCounters::default()];
    let mut redirected = 0;
    let mut answered_bind = false;
    for now in 1..3000u64 {
        let t = SmolInstant::from_millis(now as i64);
        peer.esme.poll(t, &mut peer.esme_wire, &mut peer.sockets);
        // The "NIC": its own queue choice (TCP source port parity; ARP to both).
        for f in peer.esme_wire.out.drain(..) {
            let tcp = f.get(12..14) == Some(&[8, 0][..]) && f.get(23) == Some(&6);
            if !tcp {
                workers.iter_mut().for_each(|w| w.1.inbox.push_back(f.clone()));
                continue;
            }
            let sport = u16::from_be_bytes([f[34], f[35]]);
            let q = usize::from(sport % 2);
            let src = SocketAddrV4::new(Ipv4Addr::new(f[26], f[27], f[28], f[29]), sport);
            let dport = u16::from_be_bytes([f[36], f[37]]);
            match workers[q].2.steer(src, dport) {
                Steer::Local => workers[q].1.inbox.push_back(f),
                Steer::To(o) => {
                    workers[q].2.pass(o, f).expect("ring has room");
                    redirected += 1;
                }
            }
        }
        for q in 0..2 {
            let (ep, wire, handoff) = &mut workers[q];
            handoff.drain(HANDOFF_BURST, |f| wire.inbox.push_back(f));
            let input = !wire.inbox.is_empty();
            ep.poll(now, input, &counters[q], wire, None);
            peer.esme_wire.inbox.extend(wire.out.drain(..));
        }
        // Each ESME binds once connected; the SMSC answers iwf's bind.
        if now == 200 {
            for h in &esmes {
                if peer.sock(*h).state() == TcpState::Established {
                    peer.sock(*h).send_slice(&bind("smsca", "pwa")).unwrap();
                }
            }
        }
        if !answered_bind && peer.sock(smsc).recv_queue() >= 16 {
            let mut buf = [0u8; 64];
            let n = peer.sock(smsc).recv_slice(&mut buf).unwrap();
            assert!(n >= 16 && buf[4..8] == [0, 0, 0, 9]);
            let seq = u32::from_be_bytes(buf[12..16].try_into().unwrap());
            peer.sock(smsc).send_slice(&pdu(0x8000_0009, seq, b"smsc\0")).unwrap();
            answered_bind = true;
        }
    }
    let sum = |f: fn(&QueueCounters) -> u64| counters.iter().map(f).sum::<u64>();
    assert!(redirected > 0, "the NIC's choice differs from the owner for some flows");
    // Six ESMEs bound (the limit, across both workers), two reset.
    let bound: Vec<_> = esmes.iter().map(|h| peer.responses(*h)).filter(|r| r == &[(0x8000_0009, 0, 1)]).collect();
    assert_eq!(bound.len(), 6);
    assert_eq!(sum(|c| c.smpp.binds_ok.get()), 6);
    assert_eq!(sum(|c| c.tcp.refused_peer_limit.get()), 2);
    assert!(counters.iter().all(|c| c.tcp.accepted.get() > 0), "both workers own some flows");
    // Worker 1's active open: bound, though its SMSC's replies reach queue 0 half the time.
    assert_eq!(counters[1].smpp.client_bound.get(), 1);
    assert_eq!(counters[1].smpp.client_up.get(), 1);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// Whatever a peer writes on the SMPP or the SIP port (framing errors, garbage,
    /// truncated PDUs), the endpoint never panics and keeps accepting connections.
    #[test]
    fn any_stream_leaves_the_endpoint_serving(
        chunks in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), 1..6),
        sip in proptest::prelude::any::<bool>(),
        with_bind in proptest::prelude::any::<bool>(),
    ) {
        let mut st = settings(8);
        st.sip_port = Some(5060);
        let mut lab = Lab::build(st);
        let port = if sip { 5060 } else { 2775 };
        let h = lab.connect_to(port, 43000);
        lab.run(20);
        if with_bind && !sip {
            lab.sock(h).send_slice(&bind("smsca", "pwa")).unwrap();
            lab.run(10);
        }
        for c in &chunks {
            let _ = lab.sock(h).send_slice(c);
            lab.run(5);
        }
        lab.run(50);
        let again = lab.connect_to(port, 43001);
        lab.run(30);
        proptest::prop_assert_eq!(lab.sock(again).state(), TcpState::Established);
    }
}

#[test]
fn peer_limits_are_shared_and_exact_per_address() {
    let limits = std::sync::Arc::new(PeerLimits::new(2));
    let a = Ipv4Addr::new(198, 18, 1, 1);
    let others: Vec<Ipv4Addr> = (2..200u8).map(|i| Ipv4Addr::new(198, 18, 1, i)).collect();
    // Two workers share the table: the limit holds across them.
    let (w0, w1) = (std::sync::Arc::clone(&limits), std::sync::Arc::clone(&limits));
    assert!(w0.acquire(a));
    assert!(w1.acquire(a));
    assert!(!w0.acquire(a) && !w1.acquire(a));
    assert_eq!(limits.held(a), 2);
    // Other addresses do not share its limit unless they share its bucket, which a
    // key drawn at start decides: nobody can pick an address that does.
    let apart: Vec<Ipv4Addr> = others.iter().copied().filter(|o| limits.slot(*o) != limits.slot(a)).collect();
    assert!(apart.len() >= others.len() - 20, "{} of {} share a's bucket", others.len() - apart.len(), others.len());
    for o in &apart {
        assert!(limits.acquire(*o), "{o}");
        limits.release(*o);
    }
    let placements: Vec<Vec<usize>> =
        (0..4).map(|_| PeerLimits::new(2)).map(|l| others.iter().map(|o| l.slot(*o)).collect()).collect();
    assert!(placements.windows(2).any(|w| w[0] != w[1]), "the buckets differ from table to table");
    w1.release(a);
    assert!(w0.acquire(a));
    for _ in 0..5 {
        limits.release(a); // never below zero
    }
    assert_eq!(limits.held(a), 0);
    // Concurrent takers never exceed the limit.
    let l = std::sync::Arc::new(PeerLimits::new(8));
    let got: usize = (0..4)
        .map(|_| {
            let l = std::sync::Arc::clone(&l);
            std::thread::spawn(move || (0..100).filter(|_| l.acquire(a)).count())
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .sum();
    assert_eq!(got, 8);
}

#[test]
fn directory_authenticates_binds() {
    let sys = |id: u16, sid: &str, pw: &str, connect: Option<SocketAddrV4>| LegacyConfig {
        id,
        name: format!("s{id}"),
        system_id: sid.into(),
        password: pw.into(),
        allow: vec![(Ipv4Addr::new(198, 18, 1, 0), 24)],
        window: 5 + usize::from(id),
        connect,
        connect_port: None,
        reconnect_ms: (1000, 60_000),
        ..LegacyConfig::default()
    };
    let mut d = Directory::new(&[sys(1, "smsca", "pwa", None), sys(3, "iwf", "pwc", Some(peer(2776)))]);
    let bind = |sid: &'static [u8], pw: &'static [u8], ip: Ipv4Addr| BindRequest {
        system_id: sid,
        password: pw,
        system_type: b"",
        bind_type: crate::session::smpp::BindType::Transceiver,
        interface_version: 0x34,
        peer: ip,
    };
    let ok = Ipv4Addr::new(198, 18, 1, 1);
    assert_eq!(d.authenticate(&bind(b"smsca", b"pwa", ok)), Ok(LegacySystemId(1)));
    assert_eq!(d.authenticate(&bind(b"smsca", b"pwb", ok)), Err(BindRefusal::BadPassword));
    assert_eq!(d.authenticate(&bind(b"nobody", b"pwa", ok)), Err(BindRefusal::UnknownSystem));
    assert_eq!(
        d.authenticate(&bind(b"smsca", b"pwa", Ipv4Addr::new(10, 0, 0, 1))),
        Err(BindRefusal::AddressNotAllowed)
    );
    // A system iwf binds to never binds to iwf.
    assert_eq!(d.authenticate(&bind(b"iwf", b"pwc", ok)), Err(BindRefusal::UnknownSystem));
    assert_eq!((d.window(LegacySystemId(1)), d.max_window()), (6, 6));
}
