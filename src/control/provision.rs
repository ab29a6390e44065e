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
//! replay_capacity = 1000000           # notifications remembered in that window (16 octets each)
//! correlation_capacity = 4000000      # converged -> legacy messages correlated per worker at most
//! waiter_capacity = 65536             # SIP requests and store writes waiting per worker at most
//! parked_capacity = 65536             # SMSC receipts parked (id not bound yet) per worker at most
//! sms_max_parts = 4                   # SMS parts a text may take; longer goes to the MMS centre (else 488)
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
use super::config::file::File;
use super::config::{self, ConfigError, Doc};
use crate::control::config::LegacyConfig;
use crate::ids::LegacySystemId;
use crate::route::select::{MsisdnMap, RouteSpec, RoutingTable};
use crate::tag::KeyRing;
use serde_spanned::Spanned;

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
    /// Notifications remembered at most within the window (16 octets each, read at
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
    /// SMS parts a converged text may take to go to an SMS centre; longer text goes
    /// to the destination's MMS centre (exchange selection), or is refused 488.
    pub sms_max_parts: usize,
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
            sms_max_parts: 4,
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
        let file = config::read(text)?;
        let doc = Doc { text };
        let keys = config::keyring(&doc, &file)?;
        let legacy = config::dataplane(&doc, &file)?.legacy;
        let converged = converged_names(&doc, &file)?;
        let routes = routes(&doc, &file, &legacy)?;
        let msisdns = msisdns(&doc, &file, &converged)?;
        Ok(Provision { keys, legacy, routes, msisdns, converged })
    }
}

/// `[converged]`.
fn converged_names(doc: &Doc<'_>, file: &File) -> Result<ConvergedNames, ConfigError> {
    let d = ConvergedNames::default();
    let Some(t) = &file.converged else {
        return Ok(d);
    };
    let t = t.get_ref();
    let int = |k: &str, v: &Option<Spanned<i64>>, min: i64, max: i64, default: usize| {
        doc.integer_or(&format!("converged.{k}"), v, min, max, default as i64).map(|n| n as usize)
    };
    let domain = |k: &str, v: &Option<Spanned<String>>, default: &str| -> Result<String, ConfigError> {
        let Some(v) = v else { return Ok(default.to_string()) };
        let s = v.get_ref();
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b)) {
            return doc.err(&format!("converged.{k}"), v.span(), format!("`{s}` is not a domain name"));
        }
        Ok(s.clone())
    };
    Ok(ConvergedNames {
        legacy_domain: domain("legacy_domain", &t.legacy_domain, &d.legacy_domain)?,
        converged_domain: domain("converged_domain", &t.converged_domain, &d.converged_domain)?,
        message_validity_s: int(
            "message_validity_s",
            &t.message_validity_s,
            60,
            30 * 24 * 3600,
            d.message_validity_s as usize,
        )? as u64,
        replay_window_s: int("replay_window_s", &t.replay_window_s, 60, 7 * 24 * 3600, d.replay_window_s as usize)?
            as u64,
        replay_capacity: int("replay_capacity", &t.replay_capacity, 1024, 1 << 30, d.replay_capacity)?,
        correlation_capacity: int(
            "correlation_capacity",
            &t.correlation_capacity,
            1024,
            100_000_000,
            d.correlation_capacity,
        )?,
        waiter_capacity: int("waiter_capacity", &t.waiter_capacity, 64, 10_000_000, d.waiter_capacity)?,
        parked_capacity: int("parked_capacity", &t.parked_capacity, 64, 10_000_000, d.parked_capacity)?,
        sms_max_parts: int("sms_max_parts", &t.sms_max_parts, 1, 255, d.sms_max_parts)?,
    })
}

/// `[[routes]]`: converged → legacy, by number prefix (and content type).
fn routes(doc: &Doc<'_>, file: &File, legacy: &[LegacyConfig]) -> Result<RoutingTable, ConfigError> {
    let mut specs: Vec<RouteSpec<'_>> = Vec::new();
    let list = file.routes.as_ref();
    for (i, entry) in list.map_or(&[][..], |l| l.get_ref()).iter().enumerate() {
        let at = format!("routes[{i}]");
        let t = entry.get_ref();
        let prefix = doc.need(&format!("{at}.prefix"), &t.prefix, entry.span(), "the E.164 prefix (\"+4470001\")")?;
        let s = doc.need(&format!("{at}.system"), &t.system, entry.span(), "the legacy system's name")?;
        let name = s.get_ref();
        let Some(system) = legacy.iter().find(|l| &l.name == name) else {
            let names: Vec<&str> = legacy.iter().map(|l| l.name.as_str()).collect();
            return doc.err(
                &format!("{at}.system"),
                s.span(),
                format!("`{name}` is no [[legacy]] system (known: {})", names.join(", ")),
            );
        };

        specs.push(RouteSpec {
            prefix: prefix.get_ref(),
            system: LegacySystemId(system.id),
            content_type: t.content_type.as_ref().map(|c| c.get_ref().as_str()),
            exchange: system.exchange,
        });
    }
    RoutingTable::build(&specs).or_else(|e| doc.err("routes", list.map_or(0..0, Spanned::span), e.to_string()))
}

/// `[msisdn]`: legacy → converged, MSISDN to the converged user's URI.
fn msisdns(doc: &Doc<'_>, file: &File, converged: &ConvergedNames) -> Result<MsisdnMap, ConfigError> {
    let default_template = format!("sip:+{{msisdn}}@{};user=phone", converged.converged_domain);
    let mut template = Some(default_template.as_str());
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    let mut span = 0..0;
    if let Some(m) = &file.msisdn {
        span = m.span();
        let t = m.get_ref();
        if let Some(tv) = &t.template {
            template = Some(tv.get_ref().as_str()).filter(|s| !s.is_empty());
        }
        for (i, e) in t.entries.as_ref().map_or(&[][..], |l| l.get_ref()).iter().enumerate() {
            let (Some(n), Some(u)) = (&e.get_ref().number, &e.get_ref().uri) else {
                return doc.err(&format!("msisdn.entries[{i}]"), e.span(), "needs both `number` and `uri`");
            };
            pairs.push((n.get_ref(), u.get_ref()));
        }
    }
    MsisdnMap::build(&pairs, template).or_else(|e| doc.err("msisdn", span, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab() -> String {
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/lab.toml")).unwrap()
    }

    #[test]
    fn the_lab_configuration_provisions_its_systems_and_their_routes() {
        let p = Provision::parse(&lab()).unwrap();
        let names: Vec<_> = p.legacy.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["smsc-a", "smsc-b", "smsc-c", "mmsc-m"]);
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
    fn the_lab_routes_media_and_long_text_to_its_mms_centre() {
        use crate::route::select::ContentClass;
        let p = Provision::parse(&lab()).unwrap();
        let mmsc = p.legacy.iter().find(|l| l.name == "mmsc-m").unwrap();
        assert!(mmsc.mms.is_some());
        let media = p.routes.select_for(b"447000400001", Some("image/jpeg"), ContentClass::Media);
        assert_eq!(media, Ok(LegacySystemId(mmsc.id)));
        let text = p.routes.select_for(b"447000400001", Some("text/plain"), ContentClass::Text);
        assert_eq!(text, Ok(LegacySystemId(mmsc.id)), "no SMS route for the MMS users: the MMS route takes text");
    }

    #[test]
    fn a_bad_domain_and_an_unknown_key_are_refused() {
        let text = lab().replace("legacy_domain = \"iwf.ims.lab\"", "legacy_domain = \"iwf ims\"");
        assert!(Provision::parse(&text).unwrap_err().to_string().contains("converged.legacy_domain"));
        let text = lab().replace("[converged]", "[converged]\nfoo = 1");
        assert!(Provision::parse(&text).unwrap_err().to_string().contains("foo"));
    }
}
