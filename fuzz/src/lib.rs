//! What the stateful fuzz targets share: the flows of one worker under the lab's
//! provisioning.
use iwf::control::provision::Provision;
use iwf::flow::{Flows, FlowsConfig, Shared};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

/// One worker's flows with `config/lab.toml`'s provisioning, its tables sized for a fuzz
/// run (the defaults, a million remembered notifications and 4096-receipt lanes, are
/// megabytes to clear per input), and no store.
pub fn lab_flows() -> Flows {
    let text = include_str!("../../config/lab.toml")
        .replacen("[converged]", "[converged]\nreplay_capacity = 1024", 1)
        .replace("\nwindow = 10\n", "\nwindow = 10\nlane_capacity = 64\n");
    let provision = Provision::parse(&text).expect("config/lab.toml provisions");
    let shared = Arc::new(Shared::new(provision, 1, None).expect("the lab's shared state"));
    let config = FlowsConfig {
        core: 0,
        next_hop: SocketAddrV4::new(Ipv4Addr::new(198, 18, 2, 1), 5060),
        local_sent_by: "198.18.2.2:5060".into(),
        parts_aside: 64,
        reassembly: (1024, 1 << 20),
        max_sip_message: 1 << 20,
        mm4_clients: Vec::new(),
    };
    Flows::new(config, shared)
}
