//! SMPP over iwf's userspace TCP on one core, without DPDK or the tap: a plain smoltcp
//! ESME and iwf's [`Endpoint`] (smoltcp + the SMPP session + the glue) exchange frames
//! in memory. Each iteration: the ESME writes a window of 10 submit_sm in one segment,
//! both ends poll until the 10 responses (ESME_RX_T_APPN) are read. Throughput is in
//! SMPP PDUs (requests + responses); both stacks' cost is inside (the ESME's smoltcp is
//! a second userspace TCP on the same core), so iwf's share is at most this.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use iwf::control::config::{LegacyConfig, TcpConfig};
use iwf::dataplane::counters::QueueCounters;
use iwf::dataplane::tcp::{Directory, Endpoint, PeerLimits, StackSettings};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};
use std::collections::VecDeque;
use std::hint::black_box;
use std::net::Ipv4Addr;

#[derive(Default)]
struct Wire {
    inbox: VecDeque<Vec<u8>>,
    out: VecDeque<Vec<u8>>,
}

struct Rx(Vec<u8>);

impl phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

struct Tx<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut b = vec![0u8; len];
        let r = f(&mut b);
        self.0.push_back(b);
        r
    }
}

impl phy::Device for Wire {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(Rx, Tx<'_>)> {
        let f = self.inbox.pop_front()?;
        Some((Rx(f), Tx(&mut self.out)))
    }

    fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.out))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = 1514;
        c
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

struct Bench {
    iwf: Endpoint,
    iwf_wire: Wire,
    esme: Interface,
    esme_wire: Wire,
    sockets: SocketSet<'static>,
    handle: SocketHandle,
    counters: QueueCounters,
    now: u64,
    buf: Vec<u8>,
}

impl Bench {
    fn new() -> Bench {
        let iwf_ip = Ipv4Addr::new(198, 18, 1, 2);
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
        let settings = StackSettings {
            mac: EthernetAddress([2, 0, 0, 0, 0, 2]),
            ip: iwf_ip,
            prefix_len: 24,
            gateway: None,
            smpp_port: Some(2775),
            sip_port: None,
            clients: Vec::new(),
            tcp: TcpConfig::default(),
            limits: std::sync::Arc::new(PeerLimits::new(8)),
            bind_guard: std::sync::Arc::new(iwf::dataplane::admission::BindGuard::default()),
            parts_aside: 0,
            sip_trusted: Vec::new(),
            queue: 0,
            sip_transactions: 16,
            sip_slot_bytes: 1024,
            sip_next_hop: None,
            timer_f_ms: 0,
            sip_max_message: 1 << 20,
            sip_budget: std::sync::Arc::new(iwf::dataplane::tcp::StreamBudget::new(1 << 20)),
            smtp_port: None,
            mm4_clients: Vec::new(),
            smtp_hostname: "[198.18.1.2]".into(),
            smtp_max_message: 1 << 20,
        };
        let iwf = Endpoint::new(&settings, Directory::new(&legacy), iwf::session::sip::unknown_recipient, 0);
        let mut esme_wire = Wire::default();
        let mut esme = Interface::new(
            Config::new(HardwareAddress::Ethernet(EthernetAddress([2, 0, 0, 0, 0, 1]))),
            &mut esme_wire,
            Instant::from_millis(0),
        );
        esme.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(Ipv4Addr::new(198, 18, 1, 1)), 24));
        });
        let mut sockets = SocketSet::new(Vec::new());
        let mut s = tcp::Socket::new(tcp::SocketBuffer::new(vec![0; 65536]), tcp::SocketBuffer::new(vec![0; 65536]));
        s.set_nagle_enabled(false);
        let handle = sockets.add(s);
        sockets.get_mut::<tcp::Socket>(handle).connect(esme.context(), (IpAddress::Ipv4(iwf_ip), 2775), 40000).unwrap();
        let mut b = Bench {
            iwf,
            iwf_wire: Wire::default(),
            esme,
            esme_wire,
            sockets,
            handle,
            counters: QueueCounters::default(),
            now: 0,
            buf: vec![0u8; 65536],
        };
        b.step(50);
        let bind = [&b"smsca\0pwa\0\0\x34\0\0\0"[..]].concat();
        b.sockets.get_mut::<tcp::Socket>(b.handle).send_slice(&pdu(0x09, 1, &bind)).unwrap();
        b.step(20);
        let n = b.sockets.get_mut::<tcp::Socket>(b.handle).recv_slice(&mut b.buf).unwrap();
        assert!(n >= 16 && b.buf[8..12] == [0, 0, 0, 0], "bound");
        b
    }

    fn step(&mut self, n: u64) {
        for _ in 0..n {
            self.now += 1;
            let t = Instant::from_millis(self.now as i64);
            self.esme.poll(t, &mut self.esme_wire, &mut self.sockets);
            self.iwf_wire.inbox.extend(self.esme_wire.out.drain(..));
            let input = !self.iwf_wire.inbox.is_empty();
            self.iwf.poll(self.now, input, &self.counters, &mut self.iwf_wire, None);
            self.esme_wire.inbox.extend(self.iwf_wire.out.drain(..));
        }
    }

    /// One window: 10 submit_sm out, until 10 responses (16 bytes each) are read.
    fn window(&mut self, burst: &[u8]) {
        self.sockets.get_mut::<tcp::Socket>(self.handle).send_slice(burst).unwrap();
        let mut got = 0;
        for _ in 0..100 {
            self.step(1);
            while let Ok(n) = self.sockets.get_mut::<tcp::Socket>(self.handle).recv_slice(&mut self.buf) {
                if n == 0 {
                    break;
                }
                got += n;
            }
            if got >= 160 {
                return;
            }
        }
        panic!("only {got} response bytes");
    }
}

fn smpp_over_tcp(c: &mut Criterion) {
    let mut b = Bench::new();
    let body = b"\0\x01\x01447000100001\0\x01\x01447000200002\0\0\0\0\0\0\x01\0\0\0\x02hi";
    let burst: Vec<u8> = (10..20).flat_map(|s| pdu(0x04, s, body)).collect();
    let mut g = c.benchmark_group("tcp");
    g.throughput(Throughput::Elements(20));
    g.bench_function("smpp_window_of_10_submit_sm", |it| it.iter(|| b.window(black_box(&burst))));
    g.finish();
    // Cross-check the figure against the counters: 10 answers per window.
    let before = b.counters.smpp.rx_t_appn.get();
    let t0 = std::time::Instant::now();
    for _ in 0..10_000 {
        b.window(&burst);
    }
    let dt = t0.elapsed();
    let answered = b.counters.smpp.rx_t_appn.get() - before;
    assert_eq!(answered, 100_000, "every submit_sm answered ESME_RX_T_APPN");
    eprintln!(
        "tcp: 10000 windows, {answered} submit_sm answered in {dt:?}: {:.0} PDUs/s on one core (both stacks)",
        2.0 * answered as f64 / dt.as_secs_f64()
    );
}

criterion_group!(benches, smpp_over_tcp);
criterion_main!(benches);
