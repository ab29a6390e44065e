//! `iwf inspect` and `iwf tag` as an operator (and the test suites) use them: real
//! process, real files, JSON on stdout, one-line errors and exit status 1 on bad input.

use std::process::{Command, Output};

fn iwf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_iwf"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run iwf")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "iwf failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

fn one_line_error(out: &Output, needle: &str) {
    assert_eq!(out.status.code(), Some(1), "expected exit 1, stdout: {}", String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    assert!(err.contains(needle), "{err:?} should mention {needle:?}");
    assert!(out.stdout.is_empty());
}

#[test]
fn tag_issue_then_inspect() {
    let out = iwf(&[
        "tag",
        "--keys",
        "config/lab.toml",
        "--system",
        "3",
        "--sequence",
        "99",
        "--segments",
        "2",
        "--index",
        "2",
        "--receipts",
        "delivery,user_ack",
    ]);
    assert!(out.status.success());
    let tag = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(tag.len(), 32);
    let v = json(&iwf(&["inspect", "tag", &tag, "--keys", "config/lab.toml"]));
    assert_eq!(v["valid"], true);
    assert_eq!(v["fields"]["legacy_system"], 3);
    assert_eq!(v["fields"]["sequence"], 99);
    assert_eq!(v["fields"]["segment_index"], 2);
    assert_eq!(v["fields"]["receipts"]["user_ack"], true);
    assert_eq!(v["fields"]["receipts"]["failure"], false);
    // The same tag a week and a day later: still decodes, no longer verifies.
    let issued = v["fields"]["issued_unix"].as_u64().unwrap();
    let later = (issued + 8 * 86_400).to_string();
    let v = json(&iwf(&["inspect", "tag", &tag, "--keys", "config/lab.toml", "--at", &later]));
    assert_eq!(v["valid"], false);
    assert_eq!(v["reason"], "expired");
}

#[test]
fn tag_errors() {
    one_line_error(&iwf(&["inspect", "tag", "short", "--keys", "config/lab.toml"]), "32 characters");
    one_line_error(
        &iwf(&["inspect", "tag", "0123456789abcdefghijklmnopqrstuv", "--keys", "/nonexistent"]),
        "/nonexistent",
    );
    one_line_error(&iwf(&["tag", "--keys", "config/lab.toml", "--system", "1", "--receipts", "bogus"]), "bogus");
    one_line_error(
        &iwf(&["tag", "--keys", "config/lab.toml", "--system", "1", "--segments", "2", "--index", "3"]),
        "--index",
    );
}

#[test]
fn smpp_vectors() {
    let hex = std::fs::read_to_string("tests/data/demo/submit_sm.hex").unwrap();
    let v = json(&iwf(&["inspect", "smpp", hex.trim()]));
    assert_eq!(v["command"], "submit_sm");
    assert_eq!(v["sequence_number"], 42);
    assert_eq!(v["body"]["registered_delivery"]["value"], "0x11");
    assert_eq!(v["tlvs"][0]["name"], "user_message_reference");

    let hex = std::fs::read_to_string("tests/data/demo/deliver_sm_receipt.hex").unwrap();
    let v = json(&iwf(&["inspect", "smpp", hex.trim()]));
    assert_eq!(v["command"], "deliver_sm");
    assert_eq!(v["body"]["receipt"]["stat"], "DELIVRD");

    // Spaces and colons are allowed in the hex.
    let v = json(&iwf(&["inspect", "smpp", "00:00:00:10 80:00:00:15 00:00:00:00 00:00:00:01"]));
    assert_eq!(v["command"], "enquire_link_resp");

    one_line_error(&iwf(&["inspect", "smpp", "0000"]), "truncated");
    one_line_error(&iwf(&["inspect", "smpp", "zz"]), "hex");
    one_line_error(&iwf(&["inspect", "smpp", "000"]), "odd number");
    // command_length says 17 but 16 bytes follow.
    one_line_error(&iwf(&["inspect", "smpp", "00000011800000150000000000000001"]), "");
}

#[test]
fn sip_vectors() {
    let v = json(&iwf(&["inspect", "sip", "tests/data/demo/message.sip"]));
    assert_eq!(v["method"], "MESSAGE");
    assert!(v["cpim"].is_object(), "{v}");
    // Standard input works too.
    let mut child = Command::new(env!("CARGO_BIN_EXE_iwf"))
        .args(["inspect", "sip", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"OPTIONS sip:iwf.ims.lab SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.2.1;branch=z9hG4bK1\r\nFrom: <sip:a@ims.lab>;tag=1\r\nTo: <sip:iwf.ims.lab>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let v = json(&out);
    assert_eq!(v["method"], "OPTIONS");
    assert_eq!(v["valid"], true);

    one_line_error(&iwf(&["inspect", "sip", "tests/data/sip/badvers.dat"]), "");
    one_line_error(&iwf(&["inspect", "sip", "/nonexistent.sip"]), "/nonexistent.sip");
}

#[test]
fn mm4_vectors() {
    let v = json(&iwf(&["inspect", "mm4", "tests/data/mm4/forward.eml"]));
    assert_eq!(v["type"], "MM4_forward.REQ");
    assert_eq!(v["message_id"], "m1@mmsc-m.lab");
    assert_eq!((v["delivery_report"].as_bool(), v["read_reply"].as_bool()), (Some(true), Some(true)));
    assert_eq!(v["parts"][0]["text"], "hello");
    assert_eq!(
        (v["parts"][1]["content_type"].as_str(), v["parts"][1]["octets"].as_u64()),
        (Some("image/jpeg"), Some(15))
    );
    one_line_error(&iwf(&["inspect", "mm4", "tests/data/demo/message.sip"]), "Error-message-format-corrupt");
    one_line_error(&iwf(&["inspect", "mm4", "/nonexistent.eml"]), "/nonexistent.eml");
}

#[test]
fn receipt_vectors() {
    let v = json(&iwf(&[
        "inspect",
        "receipt",
        "ID:0a1b SUB:1 DLVRD:1 SUBMIT DATE:261126120000 DONE DATE:261126120105 STAT:delivrd ERR:0 Text:hi",
    ]));
    assert_eq!(v["stat"], "DELIVRD");
    assert_eq!(v["message_state"]["name"], "DELIVERED");
    assert!(v["canonical"].as_str().unwrap().starts_with("id:0a1b sub:001 dlvrd:001 submit date:2611261200"));
    one_line_error(&iwf(&["inspect", "receipt", "this is no receipt"]), "");
}

#[test]
fn keygen_writes_a_key_the_config_takes_and_never_overwrites_it() {
    let dir = std::env::temp_dir().join(format!("iwf-keygen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("tag-key-1");
    let key_s = key.to_str().unwrap();
    let out = iwf(&["keygen", "--out", key_s]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let hex = std::fs::read_to_string(&key).unwrap();
    assert_eq!(hex.trim().len(), 32);
    assert!(hex.trim().bytes().all(|b| b.is_ascii_hexdigit()));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    // A second run keeps the first key.
    one_line_error(&iwf(&["keygen", "--out", key_s]), "never overwritten");
    assert_eq!(std::fs::read_to_string(&key).unwrap(), hex);
    // Two printed keys differ.
    let a = iwf(&["keygen"]);
    let b = iwf(&["keygen"]);
    assert!(a.status.success() && b.status.success());
    assert_ne!(a.stdout, b.stdout);
    // The example configuration refuses to sign with nothing, and signs with the key.
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml")).unwrap();
    let conf = dir.join("iwf.toml");
    std::fs::write(&conf, &example).unwrap();
    one_line_error(&iwf(&["tag", "--keys", conf.to_str().unwrap(), "--system", "1"]), "iwf keygen --out");
    std::fs::write(&conf, example.replace("/etc/iwf/tag-key-1", key_s)).unwrap();
    let out = iwf(&["tag", "--keys", conf.to_str().unwrap(), "--system", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim().len(), 32);
    // With its key, the example is fit for service: nothing to warn about.
    let out = iwf(&["check", "--strict", conf.to_str().unwrap()]);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to warn about"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `iwf check` as a deployment step uses it: the lab's file loads; a broken one fails
/// with the reload's own one-line error; the dangerous one gets its warnings (exit 2
/// under --strict).
#[test]
fn check_judges_a_configuration_offline() {
    let lab = iwf(&["check", "config/lab.toml"]);
    assert!(lab.status.success(), "{}", String::from_utf8_lossy(&lab.stderr));
    let said = String::from_utf8_lossy(&lab.stdout);
    assert!(said.trim_end().ends_with("warning(s)") || said.contains("nothing to warn about"), "{said}");
    let dir = std::env::temp_dir().join(format!("iwf-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string("config/lab.toml").unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, text.replacen("signing_key = 1", "signing_key = 99", 1)).unwrap();
    one_line_error(&iwf(&["check", bad.to_str().unwrap()]), "`tag.signing_key`");
    // The lab's SMPP port gone: its server-role SMS centres can never bind.
    let open = dir.join("open.toml");
    let unserved: String = text.lines().filter(|l| !l.starts_with("smpp_tcp_port")).map(|l| format!("{l}\n")).collect();
    std::fs::write(&open, unserved).unwrap();
    let out = iwf(&["check", "--strict", open.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stdout));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("`smsc-a` connects in, but no [[ports]] entry has `smpp_tcp_port`: it can never bind"),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The systemd unit iwf ships passes `systemd-analyze verify` (with the binary this
/// build made in place of /usr/bin/iwf): no unknown keys, bad values or missing commands.
#[test]
fn the_unit_file_verifies() {
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/ops/iwf.service")).unwrap();
    assert!(
        unit.contains("Type=notify") && unit.contains("WatchdogSec=") && unit.contains("ExecReload=/bin/kill -HUP")
    );
    let dir = std::env::temp_dir().join(format!("iwf-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("iwf.service");
    std::fs::write(&path, unit.replace("/usr/bin/iwf", env!("CARGO_BIN_EXE_iwf"))).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", path.to_str().unwrap()])
        .output()
        .expect("systemd-analyze (Debian's systemd package; scripts/setup.sh installs it)");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify:\n{said}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `iwf assets` writes what the package ships from the CLI's own definition: a man page
/// per subcommand and completions that know the subcommands.
#[test]
fn assets_are_man_pages_and_completions_of_this_cli() {
    let dir = std::env::temp_dir().join(format!("iwf-assets-{}", std::process::id()));
    let out = iwf(&["assets", "--out", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let page = std::fs::read_to_string(dir.join("iwf.1")).expect("iwf.1");
    assert!(page.contains(".TH iwf 1") && page.contains("trace"), "{page}");
    let trace = std::fs::read_to_string(dir.join("iwf-trace.1")).expect("iwf-trace.1");
    assert!(trace.contains("receipt") || trace.contains("QUERY"), "{trace}");
    assert!(dir.join("iwf-ctl.1").exists());
    let bash = std::fs::read_to_string(dir.join("iwf.bash")).expect("iwf.bash");
    assert!(bash.contains("log-level") && bash.contains("trace"), "completions know the subcommands");
    assert!(dir.join("_iwf").exists() && dir.join("iwf.fish").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `iwf trace` says clearly when it has nothing to read or finds nothing.
#[test]
fn trace_errors_name_what_is_missing() {
    one_line_error(
        &iwf(&["trace", "--config", "config/example.toml", "x0x"]),
        "no record names `x0x` in /var/log/iwf/records.jsonl",
    );
    let dir = std::env::temp_dir().join(format!("iwf-trace-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("no-records.toml");
    let lab = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/lab.toml")).unwrap();
    let cut = lab.find("[records]").expect("config/lab.toml has [records]");
    let end = lab[cut..].find("\n\n").map_or(lab.len(), |e| cut + e);
    std::fs::write(&config, format!("{}{}", &lab[..cut], &lab[end..])).unwrap();
    one_line_error(&iwf(&["trace", "--config", config.to_str().unwrap(), "x"]), "no [records] path");
    let records = dir.join("records.jsonl");
    std::fs::write(&records, "{\"time\":\"2026-12-07T10:00:00.000Z\",\"event\":\"sms.in\",\"direction\":\"legacy-to-converged\",\"tag\":\"abc\",\"core\":0}\n").unwrap();
    one_line_error(&iwf(&["trace", "--records", records.to_str().unwrap(), "nothing"]), "no record names `nothing`");
    let out = iwf(&["trace", "--records", records.to_str().unwrap(), "--json", "abc"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("\"sms.in\""), "{out:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
