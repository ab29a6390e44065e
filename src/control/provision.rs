//! Provisioning: what the flows read on every message, as one immutable snapshot built
//! from the configuration file (and rebuilt whole on reload).
//!
//! Sections read here (the packet path's own sections are read by
//! [`crate::control::config`]):
//!
//! ```toml
//! [converged]
//! legacy_domain = "iwf.ims.lab"       # legacy users appear as sip:+<E.164>@iwf.ims.lab;user=phone
//! converged_domain = "ims.lab"        # converged users: sip:+<E.164>@ims.lab;user=phone
//! message_validity_s = 172800         # how long a correlation entry or a queued receipt lives
//! replay_window_s = 3600              # a notification is relayed at most once in this time
//! replay_capacity = 1000000           # notifications remembered in that window (10 octets each)
//! correlation_capacity = 4000000      # converged -> legacy messages correlated per worker at most
//! waiter_capacity = 65536             # SIP requests and store writes waiting per worker at most
//! parked_capacity = 65536             # SMSC receipts parked (id not bound yet) per worker at most
//!
//! [[routes]]                          # converged → legacy: longest number prefix wins
//! prefix = "+4470001"
//! system = "smsc-a"
//! content_type = "text/plain"         # optional restriction
//!
//! [msisdn]                            # legacy → converged: MSISDN → converged URI
//! template = "sip:+{msisdn}@ims.lab;user=phone"
//! entries = [ { number = "+447900000001", uri = "sip:alice@ims.lab" } ]
//! ```
//!
//! Every error names the key and its line; a snapshot is built whole or not at all.
use super::config::{self, ConfigError, Doc};
use crate::control::config::LegacyConfig;
use crate::ids::LegacySystemId;
use crate::route::select::{MsisdnMap, RouteSpec, RoutingTable};
use crate::tag::KeyRing;
use toml::de::DeTable;

/// `[converged]`: the names of the converged side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvergedNames {
    /// Domain under which legacy users appear.
    pub legacy_domain: String,
    /// Domain of converged users (the MSISDN template's default).
    pub converged_domain: String,
    /// Seconds a correlation entry or a receipt queued for an unbound system lives.
    pub message_validity_s: u64,
    /// How long a relayed notification is remembered, so a replay of it is not relayed
    /// again (seconds; read at start).
    pub replay_window_s: u64,
    /// Notifications remembered at most within the window (8-10 octets each, read at
    /// start); beyond, new notifications are refused 503 until old ones age out.
    pub replay_capacity: usize,
    /// Converged → legacy messages each worker keeps a correlation entry for at most
    /// (about 125 octets each); beyond, a MESSAGE is refused 503 + Retry-After.
    pub correlation_capacity: usize,
    /// Requests each worker keeps waiting for legacy answers or store writes at most (a
    /// converged MESSAGE, an IMDN, a receipt being parked); beyond, SIP 503 +
    /// Retry-After, or ESME_RMSGQFUL for a receipt.
    pub waiter_capacity: usize,
    /// SMSC receipts each worker keeps parked for an id no resp has bound yet (read at
    /// start); beyond, ESME_RMSGQFUL.
    pub parked_capacity: usize,
}

impl Default for ConvergedNames {
    fn default() -> Self {
        ConvergedNames {
            legacy_domain: "iwf.ims.lab".into(),
            converged_domain: "ims.lab".into(),
            message_validity_s: 48 * 3600,
            replay_window_s: 3600,
            replay_capacity: 1_000_000,
            correlation_capacity: 4_000_000,
            waiter_capacity: 65_536,
            parked_capacity: crate::route::correlation::DEFAULT_MAX_PARKED,
        }
    }
}

/// One immutable provisioning snapshot.
#[derive(Debug)]
pub struct Provision {
    /// Tag keys.
    pub keys: KeyRing,
    /// The legacy systems, in configuration order.
    pub legacy: Vec<LegacyConfig>,
    /// Converged → legacy routes.
    pub routes: RoutingTable,
    /// Legacy → converged recipient map.
    pub msisdns: MsisdnMap,
    /// The converged side's names.
    pub converged: ConvergedNames,
}

impl Provision {
    /// The legacy system with index `id`.
    pub fn system(&self, id: u16) -> Option<&LegacyConfig> {
        self.legacy.iter().find(|l| l.id == id)
    }

    /// Builds a snapshot from a whole configuration file.
    pub fn parse(text: &str) -> Result<Provision, ConfigError> {
        let keys = config::load_keyring(text)?;
        let legacy = crate::control::config::load(text)?.legacy;
        let doc = Doc { text };
        let root = config::parse(text)?;
        let root = root.get_ref();

        let converged = converged_names(&doc, root)?;
        let routes = routes(&doc, root, &legacy)?;
        let msisdns = msisdns(&doc, root, &converged)?;
        Ok(Provision { keys, legacy, routes, msisdns, converged })
    }
}

/// `[converged]`.
fn converged_names(doc: &Doc<'_>, root: &DeTable<'_>) -> Result<ConvergedNames, ConfigError> {
    let mut converged = ConvergedNames::default();
    if let Some(v) = Doc::get(root, "converged") {
        let t = doc.table("converged", v)?;
        doc.only(
            t,
            "converged",
            &[
                "legacy_domain",
                "converged_domain",
                "message_validity_s",
                "replay_window_s",
                "replay_capacity",
                "correlation_capacity",
                "waiter_capacity",
                "parked_capacity",
            ],
        )?;
        if let Some(d) = Doc::get(t, "waiter_capacity") {
            converged.waiter_capacity = doc.integer("converged.waiter_capacity", d, 64, 10_000_000)? as usize;
        }
        if let Some(d) = Doc::get(t, "parked_capacity") {
            converged.parked_capacity = doc.integer("converged.parked_capacity", d, 64, 10_000_000)? as usize;
        }
        if let Some(d) = Doc::get(t, "correlation_capacity") {
            converged.correlation_capacity =
                doc.integer("converged.correlation_capacity", d, 1024, 100_000_000)? as usize;
        }
        if let Some(d) = Doc::get(t, "replay_window_s") {
            converged.replay_window_s = doc.integer("converged.replay_window_s", d, 60, 7 * 24 * 3600)? as u64;
        }
        if let Some(d) = Doc::get(t, "replay_capacity") {
            converged.replay_capacity = doc.integer("converged.replay_capacity", d, 1024, 1 << 30)? as usize;
        }
        for (key, slot) in
            [("legacy_domain", &mut converged.legacy_domain), ("converged_domain", &mut converged.converged_domain)]
        {
            if let Some(d) = Doc::get(t, key) {
                let s = doc.string(&format!("converged.{key}"), d)?;
                if s.is_empty() || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b)) {
                    return doc.err(&format!("converged.{key}"), d.span(), format!("`{s}` is not a domain name"));
                }
                *slot = s.to_string();
            }
        }
        if let Some(d) = Doc::get(t, "message_validity_s") {
            converged.message_validity_s = doc.integer("converged.message_validity_s", d, 60, 30 * 24 * 3600)? as u64;
        }
    }
    Ok(converged)
}

/// `[[routes]]`: converged → legacy, by number prefix (and content type).
fn routes(doc: &Doc<'_>, root: &DeTable<'_>, legacy: &[LegacyConfig]) -> Result<RoutingTable, ConfigError> {
    let mut specs: Vec<(String, u16, Option<String>)> = Vec::new();
    if let Some(v) = Doc::get(root, "routes") {
        let Some(list) = v.get_ref().as_array() else {
            return doc.err("routes", v.span(), "expected an array of tables ([[routes]])");
        };
        for (i, entry) in list.iter().enumerate() {
            let at = format!("routes[{i}]");
            let t = doc.table(&at, entry)?;
            doc.only(t, &at, &["prefix", "system", "content_type"])?;
            let Some(p) = Doc::get(t, "prefix") else {
                return doc.err(&format!("{at}.prefix"), entry.span(), "missing: the E.164 prefix (\"+4470001\")");
            };
            let prefix = doc.string(&format!("{at}.prefix"), p)?;
            let Some(s) = Doc::get(t, "system") else {
                return doc.err(&format!("{at}.system"), entry.span(), "missing: the legacy system's name");
            };
            let name = doc.string(&format!("{at}.system"), s)?;
            let Some(system) = legacy.iter().find(|l| l.name == name) else {
                let names: Vec<&str> = legacy.iter().map(|l| l.name.as_str()).collect();
                return doc.err(
                    &format!("{at}.system"),
                    s.span(),
                    format!("`{name}` is no [[legacy]] system (known: {})", names.join(", ")),
                );
            };
            let content_type = match Doc::get(t, "content_type") {
                Some(c) => Some(doc.string(&format!("{at}.content_type"), c)?.to_string()),
                None => None,
            };
            specs.push((prefix.to_string(), system.id, content_type));
        }
    }
    let route_specs: Vec<RouteSpec<'_>> = specs
        .iter()
        .map(|(p, s, c)| RouteSpec { prefix: p, system: LegacySystemId(*s), content_type: c.as_deref() })
        .collect();
    match RoutingTable::build(&route_specs) {
        Ok(r) => Ok(r),
        Err(e) => {
            let span = Doc::get(root, "routes").map(|v| v.span()).unwrap_or(0..0);
            doc.err("routes", span, e.to_string())
        }
    }
}

/// `[msisdn]`: legacy → converged, MSISDN to the converged user's URI.
fn msisdns(doc: &Doc<'_>, root: &DeTable<'_>, converged: &ConvergedNames) -> Result<MsisdnMap, ConfigError> {
    let default_template = format!("sip:+{{msisdn}}@{};user=phone", converged.converged_domain);
    let mut template = Some(default_template);
    let mut entries: Vec<(String, String)> = Vec::new();
    let mut msisdn_span = 0..0;
    if let Some(v) = Doc::get(root, "msisdn") {
        msisdn_span = v.span();
        let t = doc.table("msisdn", v)?;
        doc.only(t, "msisdn", &["template", "entries"])?;
        if let Some(tv) = Doc::get(t, "template") {
            let s = doc.string("msisdn.template", tv)?;
            template = (!s.is_empty()).then(|| s.to_string());
        }
        if let Some(ev) = Doc::get(t, "entries") {
            let Some(list) = ev.get_ref().as_array() else {
                return doc.err("msisdn.entries", ev.span(), "expected an array of { number, uri } tables");
            };
            for (i, e) in list.iter().enumerate() {
                let at = format!("msisdn.entries[{i}]");
                let et = doc.table(&at, e)?;
                doc.only(et, &at, &["number", "uri"])?;
                let (Some(n), Some(u)) = (Doc::get(et, "number"), Doc::get(et, "uri")) else {
                    return doc.err(&at, e.span(), "needs both `number` and `uri`");
                };
                entries.push((
                    doc.string(&format!("{at}.number"), n)?.to_string(),
                    doc.string(&format!("{at}.uri"), u)?.to_string(),
                ));
            }
        }
    }
    let pairs: Vec<(&str, &str)> = entries.iter().map(|(n, u)| (n.as_str(), u.as_str())).collect();
    match MsisdnMap::build(&pairs, template.as_deref()) {
        Ok(m) => Ok(m),
        Err(e) => doc.err("msisdn", msisdn_span, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab() -> String {
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/lab.toml")).unwrap()
    }

    #[test]
    fn the_lab_configuration_provisions_three_systems_and_their_routes() {
        let p = Provision::parse(&lab()).unwrap();
        assert_eq!(p.legacy.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(), ["smsc-a", "smsc-b", "smsc-c"]);
        assert_eq!(p.routes.select_digits(b"447000100001", None), Ok(LegacySystemId(1)));
        assert_eq!(p.routes.select_digits(b"447000300042", None), Ok(LegacySystemId(3)));
        assert!(p.routes.select_digits(b"15550100", None).is_err());
        let m = crate::interwork::address::Msisdn::parse("+447900000001").unwrap();
        let mut out = [0u8; 128];
        let n = p.msisdns.write_uri(&m, &mut out).unwrap();
        assert_eq!(&out[..n], b"sip:+447900000001@ims.lab;user=phone");
        assert_eq!(p.converged.legacy_domain, "iwf.ims.lab");
    }

    #[test]
    fn the_annotated_example_provisions_too() {
        let example = include_str!("../../config/example.toml");
        // It does not load until its key exists ...
        let e = Provision::parse(example).unwrap_err().to_string();
        assert!(e.contains("tag.keys[0].secret_file") && e.contains("iwf keygen"), "{e}");
        // ... and provisions once one is put in.
        let keyed =
            example.replace("secret_file = \"/etc/iwf/tag-key-1\"", "secret = \"9f3c2a71d04be85a6e17c3f20b8d9e44\"");
        let p = Provision::parse(&keyed).unwrap();
        assert_eq!(p.routes.select_digits(b"447712345678", None), Ok(LegacySystemId(1)));
        assert_eq!(p.routes.select_digits(b"441234567890", Some("text/plain")), Ok(LegacySystemId(2)));
        assert!(p.routes.select_digits(b"441234567890", Some("image/png")).is_err());
        assert_eq!(p.system(1).map(|l| l.throughput), Some(500));
        let m = crate::interwork::address::Msisdn::parse("+447700900123").unwrap();
        assert_eq!(p.msisdns.entry(&m), Some("sip:alice@ims.example.net"));
    }

    #[test]
    fn a_route_to_an_unknown_system_names_the_key_and_line() {
        let text = lab().replace("system = \"smsc-b\"", "system = \"smsc-x\"");
        let e = Provision::parse(&text).unwrap_err().to_string();
        assert!(e.contains("routes[1].system") && e.contains("smsc-x"), "{e}");
        let line = text.lines().position(|l| l.contains("smsc-x")).unwrap() + 1;
        assert!(e.contains(&format!("line {line}")), "{e}");
    }

    #[test]
    fn a_bad_domain_and_an_unknown_key_are_refused() {
        let text = lab().replace("legacy_domain = \"iwf.ims.lab\"", "legacy_domain = \"iwf ims\"");
        assert!(Provision::parse(&text).unwrap_err().to_string().contains("converged.legacy_domain"));
        let text = lab().replace("[converged]", "[converged]\nfoo = 1");
        assert!(Provision::parse(&text).unwrap_err().to_string().contains("foo"));
    }
}
