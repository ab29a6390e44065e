//! The packet path's counters as Prometheus metrics (see [`crate::control::metrics`]).
//!
//! * every counter of [`Totals`] per port: `iwf_<group>_<counter>_total{port="legacy"}`,
//!   groups `port`, `sip`, `tcp`, `smpp` (the order of [`Totals::visit`]); the drop
//!   reasons as one family, `iwf_packet_drops_total{port, reason}`; the busy time in
//!   seconds, `iwf_port_busy_seconds_total`;
//! * states as gauges: `iwf_port_link_up`, `iwf_sip_next_hop_state{port, state}` (1 for
//!   the state it is in: `unknown`, `down`, `up`; 0 for the others), `iwf_smpp_client_up`;
//! * the NIC's own counters (`rte_eth_stats`, read by the control thread each second):
//!   `iwf_nic_<field>_total{port}`;
//! * per queue (= per worker core): `iwf_queue_busy_seconds_total`,
//!   `iwf_queue_rx_packets_total`, `iwf_queue_tx_packets_total` with labels `port` and
//!   `queue`: a core's busy share is `rate(iwf_queue_busy_seconds_total[1m])`.
#![deny(unsafe_code)]

use super::counters::{Stats, Totals};
use crate::control::metrics::{MetricsSource, MetricsWriter};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Counters of [`Totals`] that are states, not counts: exported as gauges without `_total`.
const GAUGES: [(&str, &str); 1] = [("smpp", "client_up")];

/// `sip.next_hop_state`'s values, by the state's name.
const NEXT_HOP_STATES: [&str; 3] = ["unknown", "down", "up"];

/// Writes every port's totals, link state and per-queue counters.
pub fn render(stats: &Stats, out: &mut MetricsWriter) {
    for (i, port) in stats.ports.iter().enumerate() {
        let labels = [("port", port.name.as_str())];
        let _ = out.gauge(
            "iwf_port_link_up",
            "Link state as last seen by the control thread (1 up, 0 down).",
            &labels,
            f64::from(u8::from(port.link_up.load(Ordering::Relaxed))),
        );
        render_totals(&stats.totals(i), &labels, out);
        for (field, value) in port.nic.fields() {
            let _ = out.counter(
                &format!("iwf_nic_{field}_total"),
                &format!("The NIC's rte_eth_stats {field}, as the control thread last read it (each second)."),
                &labels,
                value,
            );
        }
    }
    for port in &stats.ports {
        for (q, c) in port.queues.iter().enumerate() {
            let queue = q.to_string();
            let labels = [("port", port.name.as_str()), ("queue", queue.as_str())];
            let _ = out.counter_f64(
                "iwf_queue_busy_seconds_total",
                "Seconds this queue's worker spent on polls that found packets (its busy share is the rate).",
                &labels,
                c.busy_ns.get() as f64 / 1e9,
            );
            let _ = out.counter(
                "iwf_queue_rx_packets_total",
                "Frames received on this queue.",
                &labels,
                c.rx_packets.get(),
            );
            let _ = out.counter(
                "iwf_queue_tx_packets_total",
                "Frames handed to this queue's TX ring.",
                &labels,
                c.tx_packets.get(),
            );
        }
    }
}

/// One port's totals, `iwf_<group>_<counter>_total` (or a gauge for [`GAUGES`]); the
/// drop reasons, the busy time and the next hop's state as their own families.
fn render_totals(t: &Totals, labels: &[(&str, &str)], out: &mut MetricsWriter) {
    let mut name = String::with_capacity(64);
    let port = labels.first().map_or("", |(_, v)| *v);
    t.visit(&mut |group, counter, value| {
        match (group, counter) {
            ("drop", reason) => {
                let _ = out.counter(
                    "iwf_packet_drops_total",
                    "Frames dropped on the packet path, by reason, summed over queues.",
                    &[("port", port), ("reason", reason)],
                    value,
                );
                return;
            }
            ("port", "busy_ns") => {
                let _ = out.counter_f64(
                    "iwf_port_busy_seconds_total",
                    "Seconds the port's workers spent on polls that found packets, summed over queues.",
                    labels,
                    value as f64 / 1e9,
                );
                return;
            }
            ("sip", "next_hop_state") => {
                for (i, state) in NEXT_HOP_STATES.iter().enumerate() {
                    let _ = out.gauge(
                        "iwf_sip_next_hop_state",
                        "SIP next hop by the last keep-alive OPTIONS: 1 for the state it is in (unknown: \
                         none answered yet), 0 for the others.",
                        &[("port", port), ("state", state)],
                        f64::from(u8::from(value == i as u64)),
                    );
                }
                return;
            }
            _ => {}
        }
        name.clear();
        name.push_str("iwf_");
        name.push_str(group);
        name.push('_');
        name.push_str(counter);
        if GAUGES.contains(&(group, counter)) {
            let _ = out.gauge(&name, &help(group, counter), labels, value as f64);
        } else {
            name.push_str("_total");
            let _ = out.counter(&name, &help(group, counter), labels, value);
        }
    });
}

/// A HELP line for a counter: the group says where it is counted.
fn help(group: &str, counter: &str) -> String {
    match group {
        "port" => format!("Port counter {counter}, summed over queues."),
        "smpp" if counter == "client_up" => "SMPP client sessions bound (1 per bound session).".to_string(),
        g => format!("{} counter {counter}, summed over queues.", g.to_ascii_uppercase()),
    }
}

/// The packet path's counters as a [`MetricsSource`] (register it with the admin server).
#[derive(Debug, Clone)]
pub struct StatsMetrics(pub Arc<Stats>);

impl MetricsSource for StatsMetrics {
    fn render(&self, out: &mut MetricsWriter) {
        render(&self.0, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::counters::DropReason;

    fn count_visits(t: &Totals) -> usize {
        let mut n = 0;
        t.visit(&mut |_, _, _| n += 1);
        n
    }

    #[test]
    fn every_counter_of_every_port_is_exported_once() {
        let stats = Stats::new(&["legacy".to_string(), "converged".to_string()], 2);
        stats.ports[0].queues[1].rx_packets.add(5);
        stats.ports[0].queues[0].drop(DropReason::IpBadChecksum);
        stats.ports[1].queues[0].sip.rx_message.add(3);
        stats.ports[1].queues[0].sip.next_hop_state.set(2);
        stats.ports[0].queues[1].smpp.client_up.set(1);
        stats.ports[0].queues[1].busy_ns.add(1234);
        stats.ports[1].link_up.store(true, Ordering::Relaxed);
        stats.ports[0].nic.store([10, 9, 7, 0, 0, 0]);
        let mut w = MetricsWriter::new();
        render(&stats, &mut w);
        let text = w.finish();

        for line in [
            "iwf_port_rx_packets_total{port=\"legacy\"} 5\n",
            "iwf_port_rx_packets_total{port=\"converged\"} 0\n",
            "iwf_packet_drops_total{port=\"legacy\",reason=\"ip_bad_checksum\"} 1\n",
            "iwf_packet_drops_total{port=\"converged\",reason=\"ip_bad_checksum\"} 0\n",
            "iwf_sip_rx_message_total{port=\"converged\"} 3\n",
            "iwf_sip_next_hop_state{port=\"converged\",state=\"unknown\"} 0\n",
            "iwf_sip_next_hop_state{port=\"converged\",state=\"down\"} 0\n",
            "iwf_sip_next_hop_state{port=\"converged\",state=\"up\"} 1\n",
            "iwf_sip_next_hop_state{port=\"legacy\",state=\"unknown\"} 1\n",
            "iwf_nic_imissed_total{port=\"legacy\"} 7\n",
            "iwf_nic_rx_nombuf_total{port=\"converged\"} 0\n",
            "iwf_smpp_client_up{port=\"legacy\"} 1\n",
            "iwf_port_link_up{port=\"converged\"} 1\n",
            "iwf_port_link_up{port=\"legacy\"} 0\n",
            "iwf_queue_busy_seconds_total{port=\"legacy\",queue=\"1\"} 0.000001234\n",
            "iwf_port_busy_seconds_total{port=\"legacy\"} 0.000001234\n",
            "iwf_queue_rx_packets_total{port=\"legacy\",queue=\"0\"} 0\n",
            "# TYPE iwf_sip_next_hop_state gauge\n",
            "# TYPE iwf_tcp_accepted_total counter\n",
            "# TYPE iwf_smpp_binds_ok_total counter\n",
        ] {
            assert!(text.contains(line), "missing {line:?}");
        }
        // One sample per counter and port (three for the next hop's state), the link
        // gauge and six NIC counters; three per queue.
        let per_port = count_visits(&stats.totals(0));
        assert!(per_port > 100, "{per_port}");
        let samples = text.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(samples, 2 * (per_port + 2 + 1 + 6) + 4 * 3);
        // HELP and TYPE once per family (the drop reasons are one); distinct names.
        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
        assert_eq!(types.len(), per_port - DropReason::COUNT + 1 + 1 + 6 + 3);
        let mut names: Vec<&str> = types.iter().filter_map(|l| l.split(' ').nth(2)).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), types.len());
        assert_eq!(text.lines().filter(|l| l.starts_with("# HELP ")).count(), types.len());
        // Every family's samples sit right after its TYPE line.
        let mut current = "";
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                current = rest.split(' ').next().unwrap_or("");
            } else if !l.starts_with('#') {
                assert!(l.starts_with(&format!("{current}{{")), "{l} outside its family {current}");
            }
        }
    }

    #[test]
    fn the_source_renders_the_shared_stats() {
        let stats = Arc::new(Stats::new(&["legacy".to_string()], 1));
        let source = StatsMetrics(Arc::clone(&stats));
        stats.ports[0].queues[0].tcp.accepted.add(4);
        let mut w = MetricsWriter::new();
        source.render(&mut w);
        assert!(w.finish().contains("iwf_tcp_accepted_total{port=\"legacy\"} 4\n"));
    }

    /// The wiring app.rs uses: the counters and a reloader behind the admin endpoint.
    #[test]
    fn admin_endpoint_serves_counters_and_reloads() {
        use crate::control::admin::{Admin, Handlers, Health};
        use crate::control::config::load_keyring;
        use crate::control::metrics::MetricsRegistry;
        use crate::control::reload::Reloader;
        use std::io::{Read, Write};

        let good = "[tag]\nsigning_key = 1\n\n[[tag.keys]]\nid = 1\nsecret = \"9f3c2a71d04be85a6e17c3f20b8d9e44\"\n";
        let path = std::env::temp_dir().join(format!("iwf-wiring-{}.toml", std::process::id()));
        std::fs::write(&path, good).unwrap();
        let stats = Arc::new(Stats::new(&["legacy".to_string()], 1));
        let keys = Arc::new(Reloader::load(&path, load_keyring).unwrap());
        let metrics = Arc::new(MetricsRegistry::new());
        metrics.register(Arc::new(StatsMetrics(Arc::clone(&stats))));
        metrics.register(keys.clone());
        let health_stats = Arc::clone(&stats);
        let reload_keys = Arc::clone(&keys);
        let admin = Admin::start(
            "127.0.0.1:0".parse().unwrap(),
            Handlers {
                metrics,
                health: Some(Box::new(move || {
                    let up = health_stats.ports.iter().all(|p| p.link_up.load(Ordering::Relaxed));
                    Health { healthy: up, details: serde_json::json!({ "links_up": up }) }
                })),
                reload: Some(Box::new(move || reload_keys.reload_text())),
                api: None,
                action: None,
                token: Some(crate::control::admin::AdminToken::new("wiring-token-0123456789").unwrap()),
            },
        )
        .unwrap();
        let ask = |req: &str| {
            let mut s = std::net::TcpStream::connect(admin.local_addr()).unwrap();
            // The endpoint's own Host and the token, after the request line.
            let (line, rest) = req.split_once("\r\n").unwrap();
            let host = admin.local_addr();
            let req = format!("{line}\r\nHost: {host}\r\nAuthorization: Bearer wiring-token-0123456789\r\n{rest}");
            s.write_all(req.as_bytes()).unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        };
        stats.ports[0].queues[0].rx_packets.add(9);
        assert!(ask("GET /healthz HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 503 "));
        stats.ports[0].link_up.store(true, Ordering::Relaxed);
        assert!(ask("GET /healthz HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200 "));
        std::fs::write(&path, good.replace("signing_key = 1", "signing_key = 9")).unwrap();
        let refused = ask("POST /-/reload HTTP/1.1\r\n\r\n");
        assert!(refused.starts_with("HTTP/1.1 400 ") && refused.contains("line 2: `tag.signing_key`"), "{refused}");
        std::fs::write(&path, good).unwrap();
        assert!(ask("POST /-/reload HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200 "));
        let scrape = ask("GET /metrics HTTP/1.1\r\n\r\n");
        for line in [
            "\niwf_port_rx_packets_total{port=\"legacy\"} 9\n",
            "\niwf_port_link_up{port=\"legacy\"} 1\n",
            "\niwf_config_generation 2\n",
            "\niwf_config_reloads_total{result=\"failed\"} 1\n",
        ] {
            assert!(scrape.contains(line), "missing {line:?}");
        }
        admin.stop();
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn visit_covers_the_totals() {
        // The groups' own lists plus the port counters, the drop reasons and next_hop_state.
        let t = Totals::default();
        let expected = 13 + DropReason::COUNT + t.sip.fields().len() + 1 + t.tcp.fields().len() + t.smpp.fields().len();
        assert_eq!(count_visits(&t), expected);
        let mut seen = Vec::new();
        t.visit(&mut |g, c, _| seen.push(format!("{g}.{c}")));
        let n = seen.len();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), n, "duplicate names");
    }
}
