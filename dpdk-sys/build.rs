//! Finds DPDK with `pkg-config libdpdk`, compiles the C shim and generates bindings.
//!
//! The cflags string `pkg-config --cflags libdpdk` prints (`-include rte_config.h
//! -march=...` included) goes, token for token, to both cc and bindgen: DPDK's inline
//! functions are only correct for the `-march` the library was built with.
use std::env;
use std::path::PathBuf;
use std::process::{exit, Command};

const MISSING: &str =
    "dpdk-sys: DPDK not found by `pkg-config libdpdk`: install the Debian packages libdpdk-dev pkg-config clang libclang-dev (or set PKG_CONFIG_PATH)";

fn pkg_config(arg: &str) -> Vec<String> {
    let tool = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".to_string());
    match Command::new(&tool).args([arg, "libdpdk"]).output() {
        Ok(out) if out.status.success() => {
            String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect()
        }
        _ => {
            eprintln!("{MISSING}");
            exit(1);
        }
    }
}

fn main() {
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG");
    println!("cargo:rerun-if-changed=shim/shim.c");
    println!("cargo:rerun-if-changed=shim/shim.h");
    println!("cargo:rerun-if-changed=build.rs");

    let version = pkg_config("--modversion").join("");
    let cflags = pkg_config("--cflags");
    let libs = pkg_config("--libs");

    // Shared linking: EAL loads the drivers (net_tap, net_null, PCI PMDs) at run time
    // from the distribution's pmds directory, so only the core libraries are linked.
    for token in &libs {
        if let Some(dir) = token.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={dir}");
        } else if let Some(lib) = token.strip_prefix("-l") {
            println!("cargo:rustc-link-lib=dylib={lib}");
        }
    }

    let mut build = cc::Build::new();
    build.file("shim/shim.c").include("shim").opt_level(2).warnings(false);
    for flag in &cflags {
        build.flag(flag);
    }
    build.compile("iwf_dpdk_shim");

    let bindings = bindgen::Builder::default()
        .header("shim/shim.h")
        .clang_args(&cflags)
        .clang_arg("-Ishim")
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .use_core()
        .layout_tests(false)
        .derive_default(true)
        .generate_comments(false)
        .prepend_enum_name(false)
        .default_enum_style(bindgen::EnumVariation::Consts)
        // Functions with a symbol in the shared libraries.
        .allowlist_function("rte_eal_(init|cleanup|remote_launch|mp_wait_lcore|wait_lcore|process_type)")
        .allowlist_function("rte_(lcore_count|get_main_lcore|get_next_lcore|lcore_is_enabled|lcore_to_socket_id|socket_id|strerror)")
        .allowlist_function("rte_pktmbuf_(pool_create|free_bulk)")
        .allowlist_function("rte_mempool_(free|avail_count|in_use_count|lookup)")
        .allowlist_function("rte_eth_dev_(configure|start|stop|close|info_get|get_port_by_name|count_avail|socket_id|is_valid_port|set_mtu|adjust_nb_rx_tx_desc)")
        .allowlist_function("rte_eth_(rx_queue_setup|tx_queue_setup|stats_get|stats_reset|link_get_nowait|link_to_str|macaddr_get)")
        .allowlist_function("rte_eth_promiscuous_(enable|disable|get)")
        .allowlist_function("rte_eth_allmulticast_(enable|disable)")
        .allowlist_function("rte_ring_(create|free|lookup)")
        // Telemetry: iwf's own commands on the telemetry socket (dataplane/telemetry.rs).
        .allowlist_function("rte_telemetry_register_cmd")
        .allowlist_function("rte_tel_data_(alloc|free|start_dict|start_array|add_dict_u64|add_array_string)")
        .allowlist_var("RTE_TEL_MAX_(STRING_LEN|DICT_ENTRIES|ARRAY_ENTRIES)")
        // The shim.
        .allowlist_function("iwfsh_.*")
        .allowlist_type("rte_eth_(conf|rxconf|txconf|dev_info|stats|link)")
        .allowlist_type("rte_mbuf|rte_mempool|rte_ring|rte_ether_addr|lcore_function_t|rte_rmt_call_main_t|telemetry_cb")
        .allowlist_var("RTE_MAX_LCORE|RTE_MAX_ETHPORTS|RTE_PKTMBUF_HEADROOM|RTE_MBUF_DEFAULT_.*|RTE_ETHER_ADDR_LEN")
        .allowlist_var("RTE_ETH_LINK_(UP|DOWN|FULL_DUPLEX|MAX_STR_LEN)|RTE_ETH_SPEED_NUM_.*|RTE_ETH_MQ_.*|RING_F_.*|SOCKET_ID_ANY")
        .allowlist_var("RTE_ETH_RX_DESC_DEFAULT|RTE_ETH_TX_DESC_DEFAULT|RTE_MEMPOOL_CACHE_MAX_SIZE")
        // Packed + aligned wire headers make rustc fail with E0588; iwf parses headers
        // with its own views (smoltcp::wire), never with DPDK's structs.
        .opaque_type("rte_.*_hdr")
        .opaque_type("rte_arp_.*")
        .opaque_type("rte_ether_hdr|rte_vlan_.*")
        .generate()
        .unwrap_or_else(|e| {
            eprintln!("dpdk-sys: bindgen failed on DPDK {version} headers ({e}): is libclang-dev installed?");
            exit(1);
        });
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    bindings.write_to_file(out.join("bindings.rs")).expect("write bindings.rs");
    println!("cargo:version={version}");
    println!("cargo:rustc-env=IWF_DPDK_VERSION={version}");
}
