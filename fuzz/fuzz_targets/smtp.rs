//! Fuzzes the SMTP server session with a client's stream cut at fuzzer-chosen
//! places: it never panics, consumes what it can, answers every message it hands
//! out, and its output is always whole reply lines. The same bytes as replies go
//! to the client session.
#![no_main]

use iwf::session::smtp::client::{Client, ClientConfig};
use iwf::session::smtp::server::{Event, Server, ServerConfig};
use iwf::wire::smtp::Reply;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (cuts, stream) = data.split_at(data.len().min(4));
    let mut s = Server::new(ServerConfig { max_message_size: 4096, max_output: 1024, ..ServerConfig::default() });
    s.connected(0, true);
    let mut policy = |to: &[u8]| if to.starts_with(b"x") { Err(Reply::new(550, b"5.1.1 no")) } else { Ok(()) };
    let mut pending: Vec<u8> = Vec::new();
    let mut out = vec![0u8; 8192];
    let mut written = Vec::new();
    let mut chunks = cuts.iter().map(|&c| usize::from(c) + 1).chain(std::iter::repeat(64));
    let mut at = 0;
    for now in 0..10_000u64 {
        if at < stream.len() {
            let n = chunks.next().unwrap_or(64).min(stream.len() - at);
            pending.extend_from_slice(&stream[at..at + n]);
            at += n;
        }
        let used = s.handle_input(now, &pending, &mut policy);
        assert!(used <= pending.len());
        pending.drain(..used);
        while let Some(e) = s.poll_event() {
            if e == Event::Message {
                assert!(s.message().is_some_and(|m| m.data.len() <= 4096));
                s.answer(now, Reply::new(250, b"2.0.0 Ok")).expect("a message waits for its answer");
            }
        }
        let n = s.poll_transmit(&mut out);
        written.extend_from_slice(&out[..n]);
        if at >= stream.len() && (used == 0 || pending.is_empty()) && !s.wants_transmit() {
            break;
        }
    }
    assert!(written.is_empty() || written.ends_with(b"\r\n"));
    let mut c = Client::new(ClientConfig::default());
    c.connected(0);
    let _ = c.handle_input(1, stream);
    while c.poll_event().is_some() {}
});
