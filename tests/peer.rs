//! `iwf-peer` on loopback: the ESME driver against the SMSC double, both real
//! processes on the kernel TCP stack (127.0.0.1, ephemeral ports), talking
//! through iwf's own SMPP session.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, ChildStderr, Command, Output, Stdio};
use std::time::{Duration, Instant};

const PEER: &str = env!("CARGO_BIN_EXE_iwf-peer");

/// A running SMSC double; SIGTERM'd (summary read) or killed when dropped.
struct Smsc {
    child: Child,
    addr: SocketAddr,
    stderr: BufReader<ChildStderr>,
}

impl Smsc {
    fn start(extra: &[&str]) -> Smsc {
        let mut child = Command::new(PEER)
            .args(["smsc", "--listen", "127.0.0.1:0", "--system-id", "iwf", "--password", "pwc"])
            .args(["--duration", "60"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start iwf-peer smsc");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let mut line = String::new();
        stderr.read_line(&mut line).expect("listening line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .expect("address");
        Smsc { child, addr, stderr }
    }

    /// SIGTERM, then the one-line JSON summary.
    fn stop(mut self) -> serde_json::Value {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill");
        assert!(status.success());
        self.summary()
    }

    fn summary(&mut self) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            assert!(Instant::now() < deadline, "smsc did not stop");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        self.child.stdout.take().expect("stdout").read_to_string(&mut out).expect("read stdout");
        let mut err = String::new();
        let _ = self.stderr.read_to_string(&mut err);
        assert!(status.success(), "smsc exit {status:?}: {err}");
        assert_eq!(out.lines().count(), 1, "one line: {out:?}");
        serde_json::from_str(&out).expect("smsc summary is JSON")
    }
}

impl Drop for Smsc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn esme(addr: SocketAddr, password: &str, extra: &[&str]) -> Output {
    Command::new(PEER)
        .args(["esme", "--connect", &addr.to_string(), "--system-id", "iwf", "--password", password])
        .args(["--timeout", "30"])
        .args(extra)
        .output()
        .expect("run iwf-peer esme")
}

fn json(out: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1, "one line: {text:?}");
    serde_json::from_str(&text).expect("esme output is JSON")
}

#[test]
fn esme_against_smsc_double_all_answered_all_receipts_back() {
    let smsc = Smsc::start(&[]);
    let out = esme(smsc.addr, "pwc", &["--count", "200", "--window", "10"]);
    assert!(out.status.success(), "esme: {}", String::from_utf8_lossy(&out.stderr));
    let v = json(&out);
    assert_eq!(v["submitted"], 200);
    assert_eq!(v["answered"], 200);
    assert_eq!(v["ok"], 200);
    assert_eq!(v["errors"], serde_json::json!({}));
    assert_eq!(v["timeouts"], 0);
    assert_eq!(v["receipts"], 200);
    assert_eq!(v["receipts_matched"], 200);
    assert_eq!(v["receipts_unmatched"], 0);
    assert_eq!(v["receipts_duplicate"], 0);
    assert_eq!(v["complete"], true);
    assert_eq!(v["closed"], "unbound");
    let lat = &v["latency_us"];
    let (p50, p99, max) = (lat["p50"].as_u64().unwrap(), lat["p99"].as_u64().unwrap(), lat["max"].as_u64().unwrap());
    assert!(p50 >= 1 && p50 <= p99 && p99 <= max, "{lat}");
    assert!(v["submit_per_s"].as_f64().unwrap() > 0.0);
    let s = smsc.stop();
    assert_eq!(s["role"], "smsc");
    assert_eq!(s["connections"], 1);
    assert_eq!(s["binds_ok"], 1);
    assert_eq!(s["binds_refused"], 0);
    assert_eq!(s["submit_sm"], 200);
    assert_eq!(s["receipts_requested"], 200);
    assert_eq!(s["receipts_sent"], 200);
    assert_eq!(s["receipts_acked"], 200);
    assert_eq!(s["receipts_failed"], 0);
    assert_eq!(s["receipts_unsent"], 0);
}

#[test]
fn wrong_password_fails_with_esme_rinvpaswd() {
    let smsc = Smsc::start(&[]);
    let out = esme(smsc.addr, "wrong", &["--count", "200", "--window", "10"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ESME_RINVPASWD"), "{err:?}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err:?}");
    assert!(out.stdout.is_empty());
    // Unknown system_id is told apart.
    let out = Command::new(PEER)
        .args(["esme", "--connect", &smsc.addr.to_string(), "--system-id", "nobody"])
        .args(["--password", "pwc", "--count", "1"])
        .output()
        .expect("run esme");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ESME_RINVSYSID"));
    let s = smsc.stop();
    assert_eq!(s["binds_refused"], 2);
    assert_eq!(s["binds_ok"], 0);
    assert_eq!(s["submit_sm"], 0);
}

#[test]
fn decimal_ids_delayed_receipts_and_no_receipt_when_not_asked() {
    let smsc = Smsc::start(&["--ids", "decimal", "--receipt-delay-ms", "30", "--window", "4"]);
    let out = esme(smsc.addr, "pwc", &["--count", "60", "--window", "8"]);
    assert!(out.status.success(), "esme: {}", String::from_utf8_lossy(&out.stderr));
    let v = json(&out);
    assert_eq!(v["receipts_matched"], 60);
    // registered_delivery 0: no receipt asked, none sent.
    let out = esme(smsc.addr, "pwc", &["--count", "20", "--window", "5", "--registered-delivery", "0"]);
    assert!(out.status.success());
    let v = json(&out);
    assert_eq!(v["ok"], 20);
    assert_eq!(v["receipts"], 0);
    assert_eq!(v["receipts_missing"], 0);
    let s = smsc.stop();
    assert_eq!(s["connections"], 2);
    assert_eq!(s["submit_sm"], 80);
    assert_eq!(s["receipts_requested"], 60);
    assert_eq!(s["receipts_sent"], 60);
    assert_eq!(s["receipts_acked"], 60);
}

#[test]
fn rate_limits_the_submissions() {
    let smsc = Smsc::start(&[]);
    let started = Instant::now();
    let out = esme(smsc.addr, "pwc", &["--count", "40", "--window", "10", "--rate", "200"]);
    assert!(out.status.success(), "esme: {}", String::from_utf8_lossy(&out.stderr));
    // 40 messages at 200/s take at least 195 ms (the first goes at once).
    assert!(started.elapsed() >= Duration::from_millis(195), "{:?}", started.elapsed());
    let v = json(&out);
    assert_eq!(v["receipts_matched"], 40);
    assert!(v["submit_per_s"].as_f64().unwrap() < 260.0, "{}", v["submit_per_s"]);
    drop(smsc);
}

#[test]
fn smsc_stops_by_itself_after_its_duration() {
    let mut child = Command::new(PEER)
        .args(["smsc", "--listen", "127.0.0.1:0", "--system-id", "iwf", "--password", "pwc"])
        .args(["--duration", "0.3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start smsc");
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut smsc = Smsc { addr: "127.0.0.1:1".parse().unwrap(), child, stderr };
    let s = smsc.summary();
    assert_eq!(s["connections"], 0);
    assert!(s["elapsed_s"].as_f64().unwrap() >= 0.3);
}

#[test]
fn esme_refuses_bad_arguments_and_unreachable_peers() {
    // Nothing listens on port 1 of loopback.
    let out = Command::new(PEER)
        .args(["esme", "--connect", "127.0.0.1:1", "--system-id", "x", "--password", "y", "--count", "1"])
        .output()
        .expect("run esme");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));
    let out = Command::new(PEER)
        .args(["esme", "--connect", "127.0.0.1:1", "--system-id", "a-system-id-too-long"])
        .args(["--password", "y", "--count", "1"])
        .output()
        .expect("run esme");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("too long"));
}

/// `iwf-peer ua` on loopback: a MESSAGE asking for positive-delivery gets 200 and a
/// delivery notification back for its imdn.Message-ID; a retransmitted MESSAGE gets the
/// same 200 and no second notification; the summary counts what happened.
#[test]
fn ua_answers_and_sends_the_delivery_notification_back() {
    use std::net::UdpSocket;
    let mut child = Command::new(PEER)
        .args(["ua", "--listen", "127.0.0.1:0", "--duration", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start iwf-peer ua");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    stderr.read_line(&mut line).expect("listening line");
    let ua: SocketAddr = line.trim().strip_prefix("listening on ").expect("listening line").parse().expect("address");
    let me = UdpSocket::bind("127.0.0.1:0").unwrap();
    me.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let local = me.local_addr().unwrap();
    let cpim = "From: <sip:+447000100001@iwf.ims.lab;user=phone>\r\nTo: <sip:+447900000001@ims.lab;user=phone>\r\n\
NS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: 000tag000000000000000000000000a1\r\nDateTime: 2027-01-15T08:00:00Z\r\n\
imdn.Disposition-Notification: positive-delivery, negative-delivery\r\n\r\n\
Content-Type: text/plain;charset=UTF-8\r\nContent-Length: 5\r\n\r\nhello";
    let message = format!(
        "MESSAGE sip:+447900000001@ims.lab;user=phone SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKtest1\r\n\
Max-Forwards: 70\r\nFrom: <sip:+447000100001@iwf.ims.lab;user=phone>;tag=a\r\nTo: <sip:+447900000001@ims.lab;user=phone>\r\n\
Call-ID: c1@127.0.0.1\r\nCSeq: 1 MESSAGE\r\nContent-Type: message/cpim\r\nContent-Length: {}\r\n\r\n{cpim}",
        cpim.len()
    );
    let mut buf = [0u8; 8192];
    me.send_to(message.as_bytes(), ua).unwrap();
    let (n, _) = me.recv_from(&mut buf).expect("the 200");
    let first = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(first.starts_with("SIP/2.0 200 OK\r\n"), "{first}");
    // The retransmission: the same response, no new notification.
    me.send_to(message.as_bytes(), ua).unwrap();
    let mut imdn = None;
    let mut second = None;
    for _ in 0..2 {
        let (n, from) = me.recv_from(&mut buf).expect("the resent 200 and the IMDN");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.starts_with("MESSAGE ") {
            imdn = Some((text, from));
        } else {
            second = Some(text);
        }
    }
    assert_eq!(second.as_deref(), Some(first.as_str()), "a retransmission gets the same response");
    let (imdn, from) = imdn.expect("a delivery notification");
    assert!(imdn.starts_with("MESSAGE sip:+447000100001@iwf.ims.lab;user=phone SIP/2.0\r\n"), "{imdn}");
    assert!(imdn.contains("<message-id>000tag000000000000000000000000a1</message-id>"), "{imdn}");
    assert!(imdn.contains("<delivered/>") && imdn.contains("Content-Disposition: notification"), "{imdn}");
    // Answer it 200 (the UA matches the response by its Via branch).
    let get = |name: &str| {
        imdn.lines().find(|l| l.starts_with(name)).map(|l| l[name.len()..].trim().to_string()).unwrap_or_default()
    };
    let via = get("Via:");
    let ok = format!(
        "SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: {}\r\nTo: {};tag=x\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        get("From:"),
        get("To:"),
        get("Call-ID:"),
        get("CSeq:")
    );
    me.send_to(ok.as_bytes(), from).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().expect("ua output");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ua summary is JSON");
    assert_eq!(v["messages"], 1, "{v}");
    assert_eq!(v["retransmitted_messages"], 1, "{v}");
    assert_eq!(v["imdns_sent"], 1, "{v}");
    assert_eq!(v["imdns_ok"], 1, "{v}");
    assert_eq!(v["imdns_unanswered"], 0, "{v}");
}

/// `iwf-peer load` on loopback without iwf: two "legacy systems" bind to the SMSC double
/// (which answers and sends a receipt per part), and the converged side originates
/// MESSAGEs to `iwf-peer ua` (which answers and notifies). Every part and every
/// notification must be matched, the mix must show in the parts, and the JSON report
/// must agree with the double's own counts.
#[test]
fn load_matches_every_receipt_and_notification_and_reports() {
    let smsc = Smsc::start(&["--window", "64"]);
    let mut ua = Command::new(PEER)
        .args(["ua", "--listen", "127.0.0.1:0", "--duration", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start iwf-peer ua");
    let mut line = String::new();
    BufReader::new(ua.stderr.take().expect("stderr")).read_line(&mut line).expect("listening line");
    let ua_addr = line.trim().strip_prefix("listening on ").expect("listening line").to_string();
    let report = std::env::temp_dir().join(format!("iwf-load-{}.json", std::process::id()));
    let out = Command::new(PEER)
        .args(["load", "--connect", &smsc.addr.to_string(), "--system", "iwf:pwc", "--system", "iwf:pwc"])
        .args(["--rate", "400", "--duration", "2", "--drain", "5", "--mix", "short=50,long=30,ucs2=20"])
        .args(["--ua-listen", "127.0.0.1:0", "--originate-rate", "50", "--originate-next-hop", &ua_addr])
        .args(["--progress-ms", "500", "--json", report.to_str().unwrap()])
        .output()
        .expect("run iwf-peer load");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let progress = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "load exit {:?}\n{text}\n{progress}", out.status);
    assert!(progress.lines().filter(|l| l.starts_with("load ")).count() >= 3, "progress lines: {progress}");
    assert!(text.contains("complete") && !text.contains("INCOMPLETE"), "{text}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).expect("json report")).expect("JSON");
    let _ = std::fs::remove_file(&report);
    let systems = v["systems"].as_array().expect("systems");
    assert_eq!(systems.len(), 2, "{v}");
    let mut parts = 0;
    for s in systems {
        let messages = s["messages"].as_u64().unwrap();
        assert!((300..=500).contains(&messages), "about 200/s for 2 s each: {s}");
        let t = &s["texts"];
        let (short, long, ucs2) =
            (t["short"].as_u64().unwrap(), t["long"].as_u64().unwrap(), t["ucs2"].as_u64().unwrap());
        assert_eq!(short + long + ucs2, messages, "{s}");
        assert!(long > 0 && ucs2 > 0, "{s}");
        assert_eq!(s["parts"].as_u64().unwrap(), short + 3 * long + 2 * ucs2, "{s}");
        assert_eq!(s["receipts_matched"], s["parts"], "{s}");
        assert_eq!(s["receipts_missing"], 0, "{s}");
        assert_eq!(s["receipts_misrouted"], 0, "{s}");
        assert!(s["receipt_latency_us"]["p99"].as_u64().unwrap() > 0, "{s}");
        parts += s["parts"].as_u64().unwrap();
    }
    assert_eq!(v["legacy"]["receipts_matched"].as_u64(), Some(parts), "{v}");
    let c = &v["converged"];
    let originated = c["originated"].as_u64().unwrap();
    assert!((80..=120).contains(&originated), "about 50/s for 2 s: {c}");
    assert_eq!(c["originated_ok"].as_u64(), Some(originated), "{c}");
    assert_eq!(c["delivered_back"].as_u64(), Some(originated), "{c}");
    assert_eq!(c["notifications_missing"], 0, "{c}");
    let double = smsc.stop();
    assert_eq!(double["submit_sm"].as_u64(), Some(parts), "{double}");
    assert_eq!(double["receipts_acked"].as_u64(), Some(parts), "{double}");
    let _ = ua.kill();
    let _ = ua.wait();
}

/// The records of a classic libpcap file (either byte order): (seconds, frame).
fn pcap_records(bytes: &[u8]) -> Vec<(u32, Vec<u8>)> {
    assert!(bytes.len() >= 24, "no global header");
    let magic = u32::from_le_bytes(bytes[..4].try_into().unwrap());
    let swap = match magic {
        0xa1b2_c3d4 => false,
        0xd4c3_b2a1 => true,
        m => panic!("not a microsecond libpcap file: magic {m:#x}"),
    };
    let u32_at = |i: usize| {
        let b: [u8; 4] = bytes[i..i + 4].try_into().unwrap();
        if swap {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    };
    assert_eq!(u32_at(20), 1, "link type Ethernet");
    let mut at = 24;
    let mut out = Vec::new();
    while at < bytes.len() {
        let (secs, caplen, len) = (u32_at(at), u32_at(at + 8) as usize, u32_at(at + 12) as usize);
        assert_eq!(caplen, len, "whole frames");
        out.push((secs, bytes[at + 16..at + 16 + caplen].to_vec()));
        at += 16 + caplen;
    }
    out
}

/// The frame's L4 protocol and payload, after checking the IPv4 and L4 checksums.
fn l4_payload(frame: &[u8]) -> (smoltcp::wire::IpProtocol, u16, Vec<u8>) {
    use smoltcp::wire::{EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Packet, TcpPacket, UdpPacket};
    let eth = EthernetFrame::new_checked(frame).expect("Ethernet");
    assert_eq!(eth.ethertype(), EthernetProtocol::Ipv4);
    let ip = Ipv4Packet::new_checked(eth.payload()).expect("IPv4");
    assert!(ip.verify_checksum(), "IPv4 checksum");
    let (src, dst) = (IpAddress::Ipv4(ip.src_addr()), IpAddress::Ipv4(ip.dst_addr()));
    match ip.next_header() {
        IpProtocol::Udp => {
            let udp = UdpPacket::new_checked(ip.payload()).expect("UDP");
            assert!(udp.verify_checksum(&src, &dst), "UDP checksum");
            (IpProtocol::Udp, udp.dst_port(), udp.payload().to_vec())
        }
        IpProtocol::Tcp => {
            let tcp = TcpPacket::new_checked(ip.payload()).expect("TCP");
            assert!(tcp.verify_checksum(&src, &dst), "TCP checksum");
            (IpProtocol::Tcp, tcp.dst_port(), tcp.payload().to_vec())
        }
        p => panic!("unexpected protocol {p}"),
    }
}

#[test]
fn pcap_writes_imdns_with_valid_tags_messages_and_an_smpp_session_from_the_lab_config() {
    use iwf::wire::cpim::{self, CpimRepr, Dispositions, EMPTY_HEADER};
    use iwf::wire::imdn::{DeliveryStatus, Imdn, Notification};
    use iwf::wire::sip::{parse_datagram, Header};
    use iwf::wire::smpp::{Body, Pdu};
    use smoltcp::wire::IpProtocol;
    use std::collections::HashSet;

    let lab = concat!(env!("CARGO_MANIFEST_DIR"), "/config/lab.toml");
    let provision = iwf::control::provision::Provision::parse(&std::fs::read_to_string(lab).unwrap()).unwrap();
    let dir = std::env::temp_dir().join(format!("iwf-peer-pcap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let count = 7u32;
    let out = Command::new(PEER)
        .args(["pcap", "--config", lab, "--out", dir.to_str().unwrap(), "--count", &count.to_string()])
        .args(["--system", "smsc-b"])
        .output()
        .expect("run iwf-peer pcap");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    let at = v["tags_issued_at"].as_u64().expect("tags_issued_at");
    assert_eq!(v["files"]["imdn"]["system"], "smsc-b", "{v}");
    assert_eq!(v["files"]["message"]["routed_to"], "smsc-b", "{v}");

    // imdn.pcap: delivery IMDNs whose tags verify with the lab keys and name smsc-b (2).
    let imdns = pcap_records(&std::fs::read(dir.join("imdn.pcap")).unwrap());
    assert_eq!(imdns.len(), count as usize);
    assert_eq!(v["files"]["imdn"]["frames"], count);
    let (mut calls, mut tags, mut first_tag) = (HashSet::new(), HashSet::new(), None);
    for (secs, frame) in &imdns {
        assert_eq!(u64::from(*secs), at);
        let (proto, port, payload) = l4_payload(frame);
        assert_eq!((proto, port), (IpProtocol::Udp, 5060));
        let mut headers = [Header::EMPTY; 24];
        let m = parse_datagram(&payload, &mut headers).expect("SIP");
        assert!(calls.insert(m.call_id().unwrap().to_string()), "Call-ID repeated");
        let mut ch = [EMPTY_HEADER; 16];
        let c = cpim::parse(m.body, &mut ch).expect("CPIM");
        let imdn = Imdn::parse(c.content).expect("IMDN");
        assert_eq!(imdn.notification, Notification::Delivery(DeliveryStatus::Delivered));
        let tag = imdn.message_id.as_plain().expect("a tag needs no escaping");
        // Signed for the parties the IMDN names: its CPIM From (the converged user) and To.
        let (to, from) = (c.to().expect("CPIM To"), c.from().expect("CPIM From"));
        let digits =
            |uri: &[u8]| iwf::interwork::legacy_to_converged::uri_msisdn(uri).expect("a number").digits().to_string();
        let (legacy, converged) = (digits(to.uri), digits(from.uri));
        let parties = iwf::tag::Parties::new(iwf::tag::Originator::Number(&legacy), &converged).unwrap();
        let fields = provision.keys.verify(tag, at, &[parties]).expect("the tag verifies");
        assert_eq!(fields.system, 2);
        assert!(fields.receipts.contains(iwf::tag::ReceiptRequest::DELIVERY));
        first_tag.get_or_insert_with(|| tag.to_vec());
        assert!(tags.insert(tag.to_vec()), "tag repeated");
    }
    assert_eq!(v["files"]["imdn"]["first_tag"].as_str().map(|t| t.as_bytes().to_vec()), first_tag);

    // message.pcap: text for a number routed to smsc-b, asking for a delivery notification.
    let messages = pcap_records(&std::fs::read(dir.join("message.pcap")).unwrap());
    assert_eq!(messages.len(), count as usize);
    let mut ids = HashSet::new();
    for (_, frame) in &messages {
        let (_, port, payload) = l4_payload(frame);
        assert_eq!(port, 5060);
        let mut headers = [Header::EMPTY; 24];
        let m = parse_datagram(&payload, &mut headers).expect("SIP");
        let uri = m.request_line().unwrap().uri;
        let number = uri.strip_prefix("sip:+").and_then(|u| u.split('@').next()).unwrap();
        assert_eq!(provision.routes.select_digits(number.as_bytes(), Some("text/plain")).map(|s| s.0), Ok(2), "{uri}");
        let mut ch = [EMPTY_HEADER; 16];
        let c = cpim::parse(m.body, &mut ch).expect("CPIM");
        let r = CpimRepr::parse(&c).expect("CPIM fields");
        assert!(r.dispositions.contains(Dispositions::POSITIVE_DELIVERY));
        assert!(ids.insert(r.message_id.to_vec()), "imdn.Message-ID repeated");
    }

    // smpp.pcap: one TCP flow; the client's stream is bind + submits + unbind, the
    // server's their responses, message_ids tags of a system that binds to iwf.
    let frames = pcap_records(&std::fs::read(dir.join("smpp.pcap")).unwrap());
    let (mut to_iwf, mut from_iwf) = (Vec::new(), Vec::new());
    for (_, frame) in &frames {
        let (proto, port, payload) = l4_payload(frame);
        assert_eq!(proto, IpProtocol::Tcp);
        if port == 2775 {
            to_iwf.extend(payload)
        } else {
            from_iwf.extend(payload)
        }
    }
    let pdus = |mut s: &[u8]| {
        let mut out = Vec::new();
        while !s.is_empty() {
            let n = u32::from_be_bytes(s[..4].try_into().unwrap()) as usize;
            out.push(s[..n].to_vec());
            s = &s[n..];
        }
        out
    };
    let (reqs, resps) = (pdus(&to_iwf), pdus(&from_iwf));
    assert_eq!((reqs.len(), resps.len()), (count as usize + 2, count as usize + 2));
    match Pdu::parse(&reqs[0]).unwrap().body {
        Body::BindTransmitter(b) => assert_eq!((b.system_id, b.password), (&b"smscb"[..], &b"pwb"[..])),
        b => panic!("first PDU {b:?}"),
    }
    for (q, r) in reqs[1..=count as usize].iter().zip(&resps[1..]) {
        let (q, r) = (Pdu::parse(q).unwrap(), Pdu::parse(r).unwrap());
        assert_eq!(q.sequence_number, r.sequence_number);
        let (Body::SubmitSm(sm), Body::SubmitSmResp(resp)) = (q.body, r.body) else { panic!("{q} / {r}") };
        assert_eq!(sm.registered_delivery.0, 1);
        let id = iwf::tag::decode_unauthenticated(resp.message_id.unwrap()).map(|(f, _, _)| f.system);
        assert_eq!(id, Ok(2));
    }
    assert!(matches!(Pdu::parse(reqs.last().unwrap()).unwrap().body, Body::Unbind));

    // tshark (scripts/setup.sh installs it) decodes every frame, checksums checked.
    if Command::new("tshark").arg("-v").output().is_ok_and(|o| o.status.success()) {
        for (file, proto, want) in
            [("imdn.pcap", "sip", count), ("message.pcap", "sip", count), ("smpp.pcap", "smpp", 2 * count + 4)]
        {
            let path = dir.join(file);
            let run = |filter: &str| {
                let o = Command::new("tshark")
                    .args(["-r", path.to_str().unwrap(), "-d", "tcp.port==2775,smpp"])
                    .args([
                        "-o",
                        "ip.check_checksum:TRUE",
                        "-o",
                        "udp.check_checksum:TRUE",
                        "-o",
                        "tcp.check_checksum:TRUE",
                    ])
                    .args(["-Y", filter])
                    .output()
                    .expect("tshark");
                assert!(o.status.success(), "tshark: {}", String::from_utf8_lossy(&o.stderr));
                String::from_utf8_lossy(&o.stdout).lines().count()
            };
            assert_eq!(run(proto), want as usize, "{file}: {proto} frames");
            let bad = "_ws.malformed || _ws.expert.severity == error || ip.checksum.status == 0 \
                       || udp.checksum.status == 0 || tcp.checksum.status == 0";
            assert_eq!(run(bad), 0, "{file}: malformed or bad checksums");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
