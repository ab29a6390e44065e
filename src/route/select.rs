//! Exchange selection for converged → legacy traffic: which legacy system takes a message for an E.164 number, and
//! the MSISDN → converged URI map for legacy → converged traffic.
//!
//! ```text
//!  provisioning ──RoutingTable::build──► immutable snapshot ──Selection::publish (arc-swap)──►
//!  pipelines: Selection::load() per burst ──► table.select_for(digits, content type, class)
//!                                     │ longest digit prefix, content type, then exchange kind
//!                                     ▼
//!   Ok(LegacySystemId) │ NoRoute → SIP 404 │ ContentTypeNotRouted → 415 │ TextTooLong → 488
//! ```
//!
//! - [`RoutingTable`]: a digit trie (10 children per node, `u32` indices) over
//!   the route prefixes. A lookup walks at most 15 digits, remembers the nodes
//!   that carry routes, and then tries them longest first: at the first prefix
//!   with a route that admits the content type and whose exchange takes the
//!   content's [`ContentClass`], short text goes to an SMS route before an MMS
//!   one, media and long text only to MMS. A number that matches no prefix is
//!   [`SelectError::NoRoute`]; long text with only SMS routes is
//!   [`SelectError::TextTooLong`]; any other content no route takes is
//!   [`SelectError::ContentTypeNotRouted`]. Lookups allocate nothing.
//! - [`MsisdnMap`]: explicit entries (exact MSISDN → URI), sorted by a packed
//!   numeric key and binary-searched, plus an optional template rule
//!   (`sip:+{msisdn}@ims.lab;user=phone`). The URI is written into a caller
//!   buffer; an unknown MSISDN without a template is [`UriMapError::Unknown`]
//!   (the caller answers `ESME_RINVDSTADR`).
//! - [`Selection`]: both tables in one snapshot the control plane publishes
//!   with arc-swap; readers never lock.
//!
//! ```
//! use iwf::interwork::address::Msisdn;
//! use iwf::route::select::{ContentClass, ExchangeKind, MsisdnMap, RouteSpec, RoutingTable, SelectError};
//! use iwf::ids::LegacySystemId;
//! let table = RoutingTable::build(&[
//!     RouteSpec::new("+4470001", LegacySystemId(1)),
//!     RouteSpec::new("+4470001", LegacySystemId(4)).exchange(ExchangeKind::Mms),
//!     RouteSpec::new("+44700015", LegacySystemId(2)).content_type("text/plain"),
//! ])?;
//! let n = Msisdn::parse("+447000151234")?;
//! assert_eq!(table.select(&n, Some("text/plain")), Ok(LegacySystemId(2)));
//! assert_eq!(table.select(&n, Some("image/png")), Ok(LegacySystemId(4)));
//! let long = ContentClass::of(Some("text/plain"), false);
//! assert_eq!(table.select_for(b"447000171234", Some("text/plain"), long), Ok(LegacySystemId(4)));
//! let other = Msisdn::parse("+33123")?;
//! assert_eq!(table.select(&other, None), Err(SelectError::NoRoute));
//!
//! let map = MsisdnMap::build(&[], Some("sip:+{msisdn}@ims.lab;user=phone"))?;
//! let mut buf = [0u8; 64];
//! let len = map.write_uri(&n, &mut buf)?;
//! assert_eq!(&buf[..len], b"sip:+447000151234@ims.lab;user=phone");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::fmt;
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, Guard};

use crate::ids::LegacySystemId;
use crate::interwork::address::{Msisdn, E164_MAX_DIGITS};

/// The placeholder of a [`MsisdnMap`] template: replaced by the number's digits.
pub const MSISDN_PLACEHOLDER: &str = "{msisdn}";

/// Longest URI a [`MsisdnMap`] entry or template may hold.
pub const URI_MAX: usize = 512;

const NONE: u32 = u32::MAX;

/// One route as provisioned: a number prefix, the legacy system that takes
/// messages for it, and an optional content-type restriction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec<'a> {
    /// E.164 prefix (`+4470001`; the `+` is optional). An empty prefix (or `+`)
    /// is a default route.
    pub prefix: &'a str,
    /// The legacy system.
    pub system: LegacySystemId,
    /// Only messages of this media type (`type/subtype`, case-insensitive) take
    /// the route; `None` admits every type.
    pub content_type: Option<&'a str>,
    /// The system's exchange: SMS takes short text only, MMS takes anything.
    pub exchange: ExchangeKind,
}

/// Which exchange a legacy system is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExchangeKind {
    /// An SMS centre (SMPP): text that fits the configured number of SMS parts.
    #[default]
    Sms,
    /// An MMS centre (MM4): media, multipart content, and text of any length.
    Mms,
}

/// What a message's content is, for exchange selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentClass {
    /// Text that fits the configured SMS limit: an SMS route first, else MMS.
    Text,
    /// Text over the SMS limit: MMS only (SIP 488 without an MMS route).
    LongText,
    /// Anything but plain text (images, multipart): MMS only (SIP 415 without one).
    Media,
}

impl ContentClass {
    /// The class of content of `content_type` (`None`: no body type, taken as text)
    /// whose text, if it is text, fits the SMS limit when `fits_sms`.
    pub fn of(content_type: Option<&str>, fits_sms: bool) -> ContentClass {
        match (is_text(content_type), fits_sms) {
            (true, true) => ContentClass::Text,
            (true, false) => ContentClass::LongText,
            (false, _) => ContentClass::Media,
        }
    }

    /// Whether a route to `exchange` takes this class; `restricted`: the route names
    /// the content type it takes (an operator's explicit choice of a media type for an
    /// SMS centre is honoured; long text never goes to one).
    fn takes(self, exchange: ExchangeKind, restricted: bool) -> bool {
        matches!((self, exchange), (ContentClass::Text, _) | (_, ExchangeKind::Mms))
            || (restricted && self == ContentClass::Media)
    }
}

/// Whether content of `content_type` is text: `text/*`, or no body type at all.
pub fn is_text(content_type: Option<&str>) -> bool {
    let essence = content_type.map_or("", |c| c.split(';').next().unwrap_or("").trim());
    essence.is_empty() || essence.as_bytes().get(..5).is_some_and(|p| p.eq_ignore_ascii_case(b"text/"))
}

impl<'a> RouteSpec<'a> {
    /// A route for every content type.
    pub const fn new(prefix: &'a str, system: LegacySystemId) -> Self {
        RouteSpec { prefix, system, content_type: None, exchange: ExchangeKind::Sms }
    }

    /// The same route to an exchange of kind `exchange`.
    pub const fn exchange(mut self, exchange: ExchangeKind) -> Self {
        self.exchange = exchange;
        self
    }

    /// The same route restricted to one media type.
    pub const fn content_type(mut self, media_type: &'a str) -> Self {
        self.content_type = Some(media_type);
        self
    }
}

/// Why a routing table cannot be built from provisioning. Nothing is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildError {
    /// Route `index` has a prefix with a character other than a digit (after an
    /// optional leading `+`).
    BadPrefix {
        /// Position of the route in the provisioning list.
        index: usize,
    },
    /// Route `index` has a prefix longer than an E.164 number.
    PrefixTooLong {
        /// Position of the route in the provisioning list.
        index: usize,
    },
    /// Route `index` has a malformed media type (not `type/subtype`).
    BadContentType {
        /// Position of the route in the provisioning list.
        index: usize,
    },
    /// Route `index` repeats the prefix, content type and exchange kind of route
    /// `first`.
    Duplicate {
        /// The earlier route.
        first: usize,
        /// The repeating route.
        index: usize,
    },
    /// More routes or trie nodes than a `u32` index holds.
    TooManyRoutes,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::BadPrefix { index } => {
                write!(f, "route {index}: prefix is not + followed by digits")
            }
            BuildError::PrefixTooLong { index } => {
                write!(f, "route {index}: prefix longer than {E164_MAX_DIGITS} digits")
            }
            BuildError::BadContentType { index } => {
                write!(f, "route {index}: content type is not type/subtype")
            }
            BuildError::Duplicate { first, index } => {
                write!(f, "route {index} repeats prefix, content type and exchange of route {first}")
            }
            BuildError::TooManyRoutes => f.write_str("too many routes"),
        }
    }
}

impl std::error::Error for BuildError {}

/// Why no legacy system takes a message. Each maps to a SIP answer
/// ([`SelectError::sip_status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectError {
    /// No route prefix matches the number (SIP 404).
    NoRoute,
    /// Prefixes match, but every matching route is restricted to other content
    /// types, or is an SMS route and the content is not text (SIP 415).
    ContentTypeNotRouted,
    /// Prefixes match, but only SMS routes, and the text is over the SMS limit
    /// (SIP 488).
    TextTooLong,
}

impl SelectError {
    /// The SIP status code and reason phrase to answer the MESSAGE with.
    pub fn sip_status(self) -> (u16, &'static str) {
        match self {
            SelectError::NoRoute => (404, "Not Found"),
            SelectError::ContentTypeNotRouted => (415, "Unsupported Media Type"),
            SelectError::TextTooLong => (488, "Not Acceptable Here (text over the SMS limit, no MMS route)"),
        }
    }
}

impl fmt::Display for SelectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SelectError::NoRoute => "no route for the number",
            SelectError::ContentTypeNotRouted => "no route for the number and content type",
            SelectError::TextTooLong => "text over the SMS limit and no MMS route for the number",
        })
    }
}

impl std::error::Error for SelectError {}

/// A trie node: children by digit, and the node's routes as a range of
/// `RoutingTable::routes` (content-type-restricted routes first).
#[derive(Debug, Clone, Copy)]
struct Node {
    children: [u32; 10],
    first_route: u32,
    route_count: u32,
}

impl Node {
    const EMPTY: Node = Node { children: [NONE; 10], first_route: 0, route_count: 0 };
}

#[derive(Debug, Clone)]
struct Route {
    system: LegacySystemId,
    exchange: ExchangeKind,
    /// Lower-case `type/subtype`, or `None` for every type.
    content_type: Option<Box<str>>,
}

/// The routing table snapshot: number prefixes → legacy systems, longest
/// prefix first, with optional content-type restrictions. Immutable once built.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    nodes: Vec<Node>,
    routes: Vec<Route>,
}

impl Default for RoutingTable {
    fn default() -> Self {
        RoutingTable { nodes: vec![Node::EMPTY], routes: Vec::new() }
    }
}

/// `type/subtype` without parameters and surrounding blanks, if well formed.
fn media_type(text: &str) -> Option<&str> {
    let t = text.split(';').next().unwrap_or("").trim();
    let (ty, sub) = t.split_once('/')?;
    let token = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_alphanumeric() || b"!#$&-^_.+*".contains(&c));
    (token(ty) && token(sub)).then_some(t)
}

fn prefix_digits(prefix: &str, index: usize) -> Result<&[u8], BuildError> {
    let digits = prefix.strip_prefix('+').unwrap_or(prefix).as_bytes();
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(BuildError::BadPrefix { index });
    }
    if digits.len() > E164_MAX_DIGITS {
        return Err(BuildError::PrefixTooLong { index });
    }
    Ok(digits)
}

impl RoutingTable {
    /// Builds the table from provisioning; any bad route rejects the whole list.
    pub fn build(specs: &[RouteSpec<'_>]) -> Result<RoutingTable, BuildError> {
        if specs.len() >= NONE as usize {
            return Err(BuildError::TooManyRoutes);
        }
        let mut nodes = vec![Node::EMPTY];
        // (node, restricted first, spec index, system, content type, exchange)
        type Placed = (u32, bool, usize, LegacySystemId, Option<String>, ExchangeKind);
        let mut placed: Vec<Placed> = Vec::with_capacity(specs.len());
        for (index, spec) in specs.iter().enumerate() {
            let digits = prefix_digits(spec.prefix, index)?;
            let ct = match spec.content_type {
                None => None,
                Some(c) => Some(media_type(c).ok_or(BuildError::BadContentType { index })?.to_ascii_lowercase()),
            };
            let mut at = 0usize;
            for &d in digits {
                let slot = usize::from(d - b'0');
                let next = nodes.get(at).and_then(|n| n.children.get(slot)).copied().unwrap_or(NONE);
                at = if next == NONE {
                    let new =
                        u32::try_from(nodes.len()).ok().filter(|&n| n != NONE).ok_or(BuildError::TooManyRoutes)?;
                    nodes.push(Node::EMPTY);
                    if let Some(c) = nodes.get_mut(at).and_then(|n| n.children.get_mut(slot)) {
                        *c = new;
                    }
                    new as usize
                } else {
                    next as usize
                };
            }
            let same = |p: &&Placed| p.0 as usize == at && p.4 == ct && p.5 == spec.exchange;
            if let Some(first) = placed.iter().find(same).map(|p| p.2) {
                return Err(BuildError::Duplicate { first, index });
            }
            placed.push((at as u32, ct.is_none(), index, spec.system, ct, spec.exchange));
        }
        // Group by node; within a node, restricted routes before the catch-all.
        placed.sort_by_key(|p| (p.0, p.1, p.2));
        let mut routes = Vec::with_capacity(placed.len());
        for (node, _, _, system, ct, exchange) in placed {
            let route_index = routes.len() as u32; // < specs.len() < u32::MAX
            routes.push(Route { system, exchange, content_type: ct.map(String::into_boxed_str) });
            if let Some(n) = nodes.get_mut(node as usize) {
                if n.route_count == 0 {
                    n.first_route = route_index;
                }
                n.route_count += 1;
            }
        }
        Ok(RoutingTable { nodes, routes })
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether the table has no route.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Every route as `(prefix digits without `+`, system, content type)`, in digit
    /// order of the prefixes (a prefix before its extensions): for tools that need a
    /// number a route covers (`iwf-peer pcap`), not for the packet path.
    pub fn entries(&self) -> Vec<(String, LegacySystemId, Option<&str>)> {
        let mut out = Vec::with_capacity(self.routes.len());
        // Depth-first over the trie; a node's digits are its path from the root.
        let mut stack: Vec<(u32, String)> = vec![(0, String::new())];
        while let Some((node, digits)) = stack.pop() {
            let Some(n) = self.nodes.get(node as usize) else { continue };
            let start = n.first_route as usize;
            let end = start.saturating_add(n.route_count as usize);
            for r in self.routes.get(start..end).unwrap_or(&[]) {
                out.push((digits.clone(), r.system, r.content_type.as_deref()));
            }
            for (d, &child) in n.children.iter().enumerate().rev() {
                if child != NONE {
                    let mut next = digits.clone();
                    next.push(char::from(b'0' + d as u8));
                    stack.push((child, next));
                }
            }
        }
        out
    }

    /// The legacy system for `number` and a message of `content_type`
    /// (`type/subtype`, parameters ignored; `None` when the message has no
    /// body type, which only unrestricted routes admit), text taken as fitting the
    /// SMS limit: [`RoutingTable::select_for`] with [`ContentClass::of`].
    pub fn select(&self, number: &Msisdn, content_type: Option<&str>) -> Result<LegacySystemId, SelectError> {
        self.select_for(number.digits().as_bytes(), content_type, ContentClass::of(content_type, true))
    }

    /// [`RoutingTable::select`] over ASCII digits (a leading `+` is skipped;
    /// anything else than a digit ends the walk).
    pub fn select_digits(&self, digits: &[u8], content_type: Option<&str>) -> Result<LegacySystemId, SelectError> {
        self.select_for(digits, content_type, ContentClass::of(content_type, true))
    }

    /// Exchange selection: the legacy system for the number `digits` and content of
    /// `content_type` and `class`. The longest prefix with a route that admits the
    /// content type and takes the class wins; at one prefix, short text goes to an
    /// SMS route before an MMS one, media and long text only to MMS. A prefix whose
    /// routes admit the content but cannot take its class yields to a shorter one
    /// (a default MMS route serves media to numbers routed to an SMS centre).
    pub fn select_for(
        &self,
        digits: &[u8],
        content_type: Option<&str>,
        class: ContentClass,
    ) -> Result<LegacySystemId, SelectError> {
        let digits = digits.strip_prefix(b"+").unwrap_or(digits);
        // Nodes with routes along the path, shortest first (root + 15 digits).
        let mut path = [0u32; E164_MAX_DIGITS + 1];
        let mut depth = 0usize;
        let mut at = 0usize;
        let mut push = |node: usize, depth: &mut usize, nodes: &[Node]| {
            if nodes.get(node).is_some_and(|n| n.route_count > 0) {
                if let Some(slot) = path.get_mut(*depth) {
                    *slot = node as u32;
                    *depth += 1;
                }
            }
        };
        push(at, &mut depth, &self.nodes);
        for &d in digits.iter().take(E164_MAX_DIGITS) {
            if !d.is_ascii_digit() {
                break;
            }
            let next = self.nodes.get(at).and_then(|n| n.children.get(usize::from(d - b'0'))).copied().unwrap_or(NONE);
            if next == NONE {
                break;
            }
            at = next as usize;
            push(at, &mut depth, &self.nodes);
        }
        if depth == 0 {
            return Err(SelectError::NoRoute);
        }
        let wanted = content_type.map(|c| c.split(';').next().unwrap_or("").trim());
        let mut admitted = false;
        for &node in path.get(..depth).unwrap_or(&[]).iter().rev() {
            let Some(n) = self.nodes.get(node as usize) else {
                continue;
            };
            let start = n.first_route as usize;
            let end = start.saturating_add(n.route_count as usize);
            let routes = self.routes.get(start..end).unwrap_or(&[]);
            let admits = |r: &&Route| match (&r.content_type, wanted) {
                (None, _) => true,
                (Some(ct), Some(w)) => ct.eq_ignore_ascii_case(w),
                (Some(_), None) => false,
            };
            let mut fit = routes.iter().filter(admits).peekable();
            admitted |= fit.peek().is_some();
            let mut mms = None;
            for r in fit.filter(|r| class.takes(r.exchange, r.content_type.is_some())) {
                match r.exchange {
                    ExchangeKind::Sms => return Ok(r.system),
                    ExchangeKind::Mms => mms = mms.or(Some(r.system)),
                }
            }
            if let Some(system) = mms {
                return Ok(system);
            }
        }
        Err(match class {
            ContentClass::LongText if admitted => SelectError::TextTooLong,
            _ => SelectError::ContentTypeNotRouted,
        })
    }
}

/// Why a converged URI cannot be written for an MSISDN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriMapError {
    /// The MSISDN has no entry and there is no template (`ESME_RINVDSTADR`).
    Unknown,
    /// The output buffer is too small for the URI.
    BufferTooSmall {
        /// Octets needed.
        needed: usize,
    },
}

impl fmt::Display for UriMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UriMapError::Unknown => f.write_str("MSISDN has no converged URI"),
            UriMapError::BufferTooSmall { needed } => {
                write!(f, "buffer too small for the URI ({needed} octets)")
            }
        }
    }
}

impl std::error::Error for UriMapError {}

/// Why an MSISDN map cannot be built from provisioning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapBuildError {
    /// Entry `index` has a malformed MSISDN.
    BadMsisdn {
        /// Position in the provisioning list.
        index: usize,
    },
    /// Entry `index` has an empty URI, one longer than [`URI_MAX`], or one with
    /// control characters or blanks.
    BadUri {
        /// Position in the provisioning list.
        index: usize,
    },
    /// Entry `index` repeats the MSISDN of entry `first`.
    Duplicate {
        /// The earlier entry.
        first: usize,
        /// The repeating entry.
        index: usize,
    },
    /// The template does not hold exactly one `{msisdn}`, is too long or holds
    /// blanks or control characters.
    BadTemplate,
}

impl fmt::Display for MapBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapBuildError::BadMsisdn { index } => write!(f, "MSISDN entry {index}: bad number"),
            MapBuildError::BadUri { index } => write!(f, "MSISDN entry {index}: bad URI"),
            MapBuildError::Duplicate { first, index } => {
                write!(f, "MSISDN entry {index} repeats entry {first}")
            }
            MapBuildError::BadTemplate => f.write_str("URI template must hold exactly one {msisdn} and no blanks"),
        }
    }
}

impl std::error::Error for MapBuildError {}

/// A number's digits as one `u64`: the value and the digit count (leading
/// zeros are kept apart by the count). 15 digits < 2^50.
pub(crate) fn pack_msisdn(m: &Msisdn) -> u64 {
    let d = m.digits().as_bytes();
    let v = d.iter().fold(0u64, |v, &c| v.wrapping_mul(10).wrapping_add(u64::from(c - b'0')));
    v | ((d.len() as u64) << 56)
}

/// The number [`pack_msisdn`] packed.
pub(crate) fn unpack_msisdn(packed: u64) -> Option<Msisdn> {
    let len = (packed >> 56) as usize;
    let mut v = packed & ((1u64 << 56) - 1);
    let mut digits = [b'0'; E164_MAX_DIGITS];
    let slot = digits.get_mut(..len)?;
    for c in slot.iter_mut().rev() {
        *c = b'0' + (v % 10) as u8;
        v /= 10;
    }
    Msisdn::parse(core::str::from_utf8(slot).ok()?).ok()
}

fn uri_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= URI_MAX && s.bytes().all(|c| c.is_ascii_graphic() || c >= 0x80)
}

/// A URI template split around its `{msisdn}` placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriTemplate {
    before: Box<str>,
    after: Box<str>,
}

impl UriTemplate {
    /// Parses `text` holding exactly one `{msisdn}`.
    pub fn parse(text: &str) -> Result<UriTemplate, MapBuildError> {
        let (before, after) = text.split_once(MSISDN_PLACEHOLDER).ok_or(MapBuildError::BadTemplate)?;
        if after.contains(MSISDN_PLACEHOLDER) || !uri_ok(text) {
            return Err(MapBuildError::BadTemplate);
        }
        Ok(UriTemplate { before: before.into(), after: after.into() })
    }

    /// Writes the URI of `number` into `out`, returning its length.
    pub fn write(&self, number: &Msisdn, out: &mut [u8]) -> Result<usize, UriMapError> {
        let d = number.digits().as_bytes();
        let needed = self.before.len() + d.len() + self.after.len();
        let dst = out.get_mut(..needed).ok_or(UriMapError::BufferTooSmall { needed })?;
        let (a, rest) = dst.split_at_mut(self.before.len());
        a.copy_from_slice(self.before.as_bytes());
        let (b, c) = rest.split_at_mut(d.len());
        b.copy_from_slice(d);
        c.copy_from_slice(self.after.as_bytes());
        Ok(needed)
    }

    /// The number a URI of this template's form names (`None` when `uri` is not
    /// of the form, or the middle is not a number).
    pub fn match_uri(&self, uri: &str) -> Option<Msisdn> {
        let mid = uri.strip_prefix(&*self.before)?.strip_suffix(&*self.after)?;
        if mid.is_empty() || !mid.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        Msisdn::parse(mid).ok()
    }
}

/// The MSISDN → converged URI map: explicit entries first, then the template.
#[derive(Debug, Clone, Default)]
pub struct MsisdnMap {
    /// Sorted packed MSISDN keys, parallel to `spans`.
    keys: Vec<u64>,
    /// (offset, length) of each entry's URI in `uris`.
    spans: Vec<(u32, u16)>,
    uris: String,
    template: Option<UriTemplate>,
}

impl MsisdnMap {
    /// Builds the map from explicit `(MSISDN, URI)` entries and an optional
    /// template; any bad entry rejects the whole list.
    pub fn build(entries: &[(&str, &str)], template: Option<&str>) -> Result<MsisdnMap, MapBuildError> {
        let template = template.map(UriTemplate::parse).transpose()?;
        let mut keyed: Vec<(u64, usize)> = Vec::with_capacity(entries.len());
        for (index, (number, uri)) in entries.iter().enumerate() {
            let m = Msisdn::parse(number).map_err(|_| MapBuildError::BadMsisdn { index })?;
            if !uri_ok(uri) {
                return Err(MapBuildError::BadUri { index });
            }
            keyed.push((pack_msisdn(&m), index));
        }
        keyed.sort_unstable();
        if let Some(w) = keyed.windows(2).find(|w| w[0].0 == w[1].0) {
            let (first, index) = (w[0].1.min(w[1].1), w[0].1.max(w[1].1));
            return Err(MapBuildError::Duplicate { first, index });
        }
        let mut uris = String::new();
        let mut keys = Vec::with_capacity(keyed.len());
        let mut spans = Vec::with_capacity(keyed.len());
        for (key, index) in keyed {
            let uri = entries.get(index).map(|e| e.1).unwrap_or("");
            let off = u32::try_from(uris.len()).map_err(|_| MapBuildError::BadUri { index })?;
            uris.push_str(uri);
            keys.push(key);
            spans.push((off, uri.len() as u16)); // ≤ URI_MAX
        }
        Ok(MsisdnMap { keys, spans, uris, template })
    }

    /// Number of explicit entries.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the map has neither entries nor a template.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.template.is_none()
    }

    /// The template rule, if any.
    pub fn template(&self) -> Option<&UriTemplate> {
        self.template.as_ref()
    }

    /// The explicit URI of `number`, if it has an entry.
    pub fn entry(&self, number: &Msisdn) -> Option<&str> {
        let i = self.keys.binary_search(&pack_msisdn(number)).ok()?;
        let &(off, len) = self.spans.get(i)?;
        let start = off as usize;
        self.uris.get(start..start + usize::from(len))
    }

    /// Writes the converged URI of `number` into `out` (an explicit entry, else
    /// the template), returning its length. Allocates nothing.
    pub fn write_uri(&self, number: &Msisdn, out: &mut [u8]) -> Result<usize, UriMapError> {
        if let Some(uri) = self.entry(number) {
            let needed = uri.len();
            let dst = out.get_mut(..needed).ok_or(UriMapError::BufferTooSmall { needed })?;
            dst.copy_from_slice(uri.as_bytes());
            return Ok(needed);
        }
        match &self.template {
            Some(t) => t.write(number, out),
            None => Err(UriMapError::Unknown),
        }
    }
}

/// Everything exchange selection reads, as one immutable snapshot.
#[derive(Debug, Clone, Default)]
pub struct SelectionTables {
    /// Converged → legacy routes.
    pub routes: RoutingTable,
    /// MSISDN → converged URI.
    pub msisdns: MsisdnMap,
    /// Bumped by every publication.
    pub generation: u64,
}

/// The published selection tables: the control plane [`Selection::publish`]es
/// a new snapshot after provisioning; pipelines [`Selection::load`] it per
/// burst without a lock.
#[derive(Debug)]
pub struct Selection {
    tables: ArcSwap<SelectionTables>,
    publish: Mutex<()>,
}

impl Default for Selection {
    fn default() -> Self {
        Selection::new(RoutingTable::default(), MsisdnMap::default())
    }
}

impl Selection {
    /// A selection publishing its first snapshot.
    pub fn new(routes: RoutingTable, msisdns: MsisdnMap) -> Self {
        Selection {
            tables: ArcSwap::from_pointee(SelectionTables { routes, msisdns, generation: 0 }),
            publish: Mutex::new(()),
        }
    }

    /// The current snapshot, lock-free (hold it for one burst).
    pub fn load(&self) -> Guard<Arc<SelectionTables>> {
        self.tables.load()
    }

    /// Publishes new tables (built and checked beforehand); returns the new
    /// generation. Readers holding the old snapshot finish with it.
    pub fn publish(&self, routes: RoutingTable, msisdns: MsisdnMap) -> u64 {
        let _p = self.publish.lock().unwrap_or_else(|e| e.into_inner());
        let generation = self.tables.load().generation.wrapping_add(1);
        self.tables.store(Arc::new(SelectionTables { routes, msisdns, generation }));
        generation
    }
}

#[cfg(test)]
mod tests {
    /// Exchange selection by content and destination: short text to the SMS centre,
    /// media and long text to the MMS centre, a default MMS route behind an SMS-only
    /// prefix, and the specific refusals.
    #[test]
    fn content_picks_the_exchange() {
        let (sms, mms, other_mms) = (LegacySystemId(1), LegacySystemId(4), LegacySystemId(9));
        let t = RoutingTable::build(&[
            RouteSpec::new("+4470001", sms),
            RouteSpec::new("+4470001", mms).exchange(ExchangeKind::Mms),
            RouteSpec::new("+4470004", mms).exchange(ExchangeKind::Mms),
            RouteSpec::new("+4470002", sms),
            RouteSpec::new("+33", sms),
            RouteSpec::new("+", other_mms).exchange(ExchangeKind::Mms).content_type("image/jpeg"),
        ])
        .unwrap();
        let pick = |n: &str, ct: Option<&str>, fits: bool| t.select_for(n.as_bytes(), ct, ContentClass::of(ct, fits));
        assert_eq!(pick("447000100001", Some("text/plain"), true), Ok(sms));
        assert_eq!(pick("447000100001", Some("text/plain"), false), Ok(mms));
        assert_eq!(pick("447000100001", Some("image/png"), true), Ok(mms));
        assert_eq!(pick("447000100001", Some("multipart/related; type=\"text/plain\""), true), Ok(mms));
        // Text for an MMS user: the MMS centre takes it.
        assert_eq!(pick("447000400001", Some("text/plain"), true), Ok(mms));
        assert_eq!(pick("447000400001", None, true), Ok(mms));
        // An SMS-only prefix: long text is 488, media without a route for it 415, and
        // a shorter prefix's MMS route serves the media it admits.
        assert_eq!(pick("447000200001", Some("text/plain"), false), Err(SelectError::TextTooLong));
        assert_eq!(SelectError::TextTooLong.sip_status().0, 488);
        assert_eq!(pick("447000200001", Some("image/png"), true), Err(SelectError::ContentTypeNotRouted));
        assert_eq!(pick("447000200001", Some("image/jpeg"), true), Ok(other_mms));
        assert_eq!(pick("3312", Some("image/jpeg"), true), Ok(other_mms));
        assert_eq!(pick("1555", Some("text/plain"), true), Err(SelectError::ContentTypeNotRouted));
        assert_eq!(
            RoutingTable::build(&[RouteSpec::new("+1", sms)]).unwrap().select_digits(b"44", None),
            Err(SelectError::NoRoute)
        );
        // A Content-Type whose fifth octet falls inside a character is media, not a panic.
        assert_eq!(ContentClass::of(Some("abcdé/x"), true), ContentClass::Media);
        assert_eq!(ContentClass::of(Some("TEXT/Plain; charset=utf-8"), false), ContentClass::LongText);
        // A route restricted to text/plain is still an SMS route: long text is 488 there.
        let r = RoutingTable::build(&[RouteSpec::new("+44", sms).content_type("text/plain")]).unwrap();
        let long = ContentClass::of(Some("text/plain"), false);
        assert_eq!(r.select_for(b"441", Some("text/plain"), long), Err(SelectError::TextTooLong));
        // The same prefix may have one route of each kind, not two of one.
        let dup = RoutingTable::build(&[RouteSpec::new("+44", sms), RouteSpec::new("+44", LegacySystemId(2))]);
        assert_eq!(dup.unwrap_err(), BuildError::Duplicate { first: 0, index: 1 });
    }

    use super::*;
    use proptest::prelude::*;

    fn m(s: &str) -> Msisdn {
        Msisdn::parse(s).unwrap()
    }

    #[test]
    fn entries_list_every_route_in_digit_order() {
        let t = RoutingTable::build(&[
            RouteSpec::new("+4470002", LegacySystemId(2)),
            RouteSpec::new("+4470001", LegacySystemId(1)),
            RouteSpec {
                prefix: "+447000",
                system: LegacySystemId(3),
                content_type: Some("text/plain"),
                exchange: ExchangeKind::Sms,
            },
            RouteSpec::new("+447000", LegacySystemId(4)),
        ])
        .unwrap();
        let e = t.entries();
        assert_eq!(e.len(), t.len());
        assert_eq!(
            e,
            [
                ("447000".to_string(), LegacySystemId(3), Some("text/plain")),
                ("447000".to_string(), LegacySystemId(4), None),
                ("4470001".to_string(), LegacySystemId(1), None),
                ("4470002".to_string(), LegacySystemId(2), None),
            ]
        );
        for (digits, system, ct) in e {
            assert_eq!(t.select_digits(digits.as_bytes(), ct), Ok(system));
        }
        assert!(RoutingTable::default().entries().is_empty());
    }

    fn lab() -> RoutingTable {
        RoutingTable::build(&[
            RouteSpec::new("+4470001", LegacySystemId(1)),
            RouteSpec::new("+4470002", LegacySystemId(2)),
            RouteSpec::new("+4470003", LegacySystemId(3)),
        ])
        .unwrap()
    }

    #[test]
    fn lab_routes() {
        let t = lab();
        assert_eq!(t.len(), 3);
        assert_eq!(t.select(&m("+447000112345"), Some("text/plain")), Ok(LegacySystemId(1)));
        assert_eq!(t.select(&m("+447000254321"), None), Ok(LegacySystemId(2)));
        assert_eq!(t.select(&m("+447000300000"), None), Ok(LegacySystemId(3)));
        assert_eq!(t.select(&m("+447000400000"), None), Err(SelectError::NoRoute));
        assert_eq!(t.select(&m("+44700"), None), Err(SelectError::NoRoute));
        assert_eq!(t.select(&m("+33"), None), Err(SelectError::NoRoute));
        // The prefix itself is a number of the route.
        assert_eq!(t.select(&m("+4470001"), None), Ok(LegacySystemId(1)));
    }

    #[test]
    fn longest_prefix_wins() {
        let t = RoutingTable::build(&[
            RouteSpec::new("+44", LegacySystemId(9)),
            RouteSpec::new("+447", LegacySystemId(7)),
            RouteSpec::new("+44701", LegacySystemId(1)),
        ])
        .unwrap();
        assert_eq!(t.select(&m("+447012"), None), Ok(LegacySystemId(1)));
        assert_eq!(t.select(&m("+447020"), None), Ok(LegacySystemId(7)));
        assert_eq!(t.select(&m("+44123"), None), Ok(LegacySystemId(9)));
        assert_eq!(t.select(&m("+45"), None), Err(SelectError::NoRoute));
    }

    #[test]
    fn default_route() {
        let t = RoutingTable::build(&[RouteSpec::new("+", LegacySystemId(5)), RouteSpec::new("49", LegacySystemId(6))])
            .unwrap();
        assert_eq!(t.select(&m("+1555"), None), Ok(LegacySystemId(5)));
        assert_eq!(t.select(&m("+4930"), None), Ok(LegacySystemId(6)));
    }

    #[test]
    fn content_type_restrictions() {
        let t = RoutingTable::build(&[
            RouteSpec::new("+4470001", LegacySystemId(1)).content_type("text/plain"),
            RouteSpec::new("+4470002", LegacySystemId(2)).content_type("text/plain"),
            RouteSpec::new("+4470002", LegacySystemId(4)).content_type("Message/CPIM"),
            RouteSpec::new("+44700025", LegacySystemId(5)).content_type("text/plain"),
            RouteSpec::new("+447000", LegacySystemId(3)).content_type("image/png"),
        ])
        .unwrap();
        let a = m("+447000112345");
        assert_eq!(t.select(&a, Some("text/plain")), Ok(LegacySystemId(1)));
        assert_eq!(t.select(&a, Some("TEXT/Plain; charset=UTF-8")), Ok(LegacySystemId(1)));
        assert_eq!(t.select(&a, Some("image/png")), Ok(LegacySystemId(3)));
        assert_eq!(t.select(&a, Some("audio/amr")), Err(SelectError::ContentTypeNotRouted));
        assert_eq!(t.select(&a, None), Err(SelectError::ContentTypeNotRouted));
        let b = m("+447000259999");
        assert_eq!(t.select(&b, Some("text/plain")), Ok(LegacySystemId(5)));
        assert_eq!(t.select(&b, Some("message/cpim")), Ok(LegacySystemId(4)));
        assert_eq!(t.select(&m("+4499"), Some("text/plain")), Err(SelectError::NoRoute));
        assert_eq!(SelectError::NoRoute.sip_status().0, 404);
        assert_eq!(SelectError::ContentTypeNotRouted.sip_status().0, 415);
    }

    #[test]
    fn restricted_before_catch_all_at_one_prefix() {
        let t = RoutingTable::build(&[
            RouteSpec::new("+44", LegacySystemId(1)),
            RouteSpec::new("+44", LegacySystemId(2)).content_type("text/plain"),
        ])
        .unwrap();
        assert_eq!(t.select(&m("+441"), Some("text/plain")), Ok(LegacySystemId(2)));
        assert_eq!(t.select(&m("+441"), Some("text/html")), Ok(LegacySystemId(1)));
        // Media goes to an SMS centre only through a route restricted to its type.
        assert_eq!(t.select(&m("+441"), Some("image/gif")), Err(SelectError::ContentTypeNotRouted));
    }

    #[test]
    fn build_errors() {
        let e = |specs: &[RouteSpec<'_>]| RoutingTable::build(specs).unwrap_err();
        assert_eq!(e(&[RouteSpec::new("+44a", LegacySystemId(1))]), BuildError::BadPrefix { index: 0 });
        assert_eq!(
            e(&[RouteSpec::new("1", LegacySystemId(1)), RouteSpec::new("++1", LegacySystemId(1))]),
            BuildError::BadPrefix { index: 1 }
        );
        assert_eq!(
            e(&[RouteSpec::new("+1234567890123456", LegacySystemId(1))]),
            BuildError::PrefixTooLong { index: 0 }
        );
        assert_eq!(
            e(&[RouteSpec::new("+1", LegacySystemId(1)).content_type("text")]),
            BuildError::BadContentType { index: 0 }
        );
        assert_eq!(
            e(&[
                RouteSpec::new("+1", LegacySystemId(1)),
                RouteSpec::new("+2", LegacySystemId(1)),
                RouteSpec::new("1", LegacySystemId(2)),
            ]),
            BuildError::Duplicate { first: 0, index: 2 }
        );
        assert!(RoutingTable::build(&[
            RouteSpec::new("+1", LegacySystemId(1)).content_type("text/plain"),
            RouteSpec::new("+1", LegacySystemId(1)),
        ])
        .is_ok());
        assert!(!BuildError::TooManyRoutes.to_string().is_empty());
    }

    #[test]
    fn select_digits_is_tolerant() {
        let t = lab();
        assert_eq!(t.select_digits(b"+4470001", None), Ok(LegacySystemId(1)));
        assert_eq!(t.select_digits(b"4470001x99", None), Ok(LegacySystemId(1)));
        assert_eq!(t.select_digits(b"", None), Err(SelectError::NoRoute));
        assert_eq!(t.select_digits(b"\xff\x00", None), Err(SelectError::NoRoute));
        assert_eq!(RoutingTable::default().select_digits(b"1", None), Err(SelectError::NoRoute));
    }

    #[test]
    fn msisdn_map_entries_and_template() {
        let map = MsisdnMap::build(
            &[("+447700900001", "sip:alice@ims.lab"), ("447700900002", "tel:+447700900002")],
            Some("sip:+{msisdn}@ims.lab;user=phone"),
        )
        .unwrap();
        let mut buf = [0u8; 64];
        let n = map.write_uri(&m("+447700900001"), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"sip:alice@ims.lab");
        let n = map.write_uri(&m("+447700900002"), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"tel:+447700900002");
        let n = map.write_uri(&m("+447700900003"), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"sip:+447700900003@ims.lab;user=phone");
        let mut small = [0u8; 10];
        assert_eq!(map.write_uri(&m("+447700900003"), &mut small), Err(UriMapError::BufferTooSmall { needed: 36 }));
        assert_eq!(map.write_uri(&m("+447700900001"), &mut small), Err(UriMapError::BufferTooSmall { needed: 17 }));
        assert_eq!(map.len(), 2);
        let t = map.template().unwrap();
        assert_eq!(t.match_uri("sip:+447700900003@ims.lab;user=phone"), Some(m("+447700900003")));
        assert_eq!(t.match_uri("sip:+44770x@ims.lab;user=phone"), None);
        assert_eq!(t.match_uri("sip:+@ims.lab;user=phone"), None);
        assert_eq!(t.match_uri("sip:+1@other;user=phone"), None);
    }

    #[test]
    fn msisdn_map_without_template() {
        let map = MsisdnMap::build(&[("+1555", "sip:bob@x")], None).unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(map.write_uri(&m("+1556"), &mut buf), Err(UriMapError::Unknown));
        // Leading zeros and length keep numbers apart.
        let map = MsisdnMap::build(&[("01", "sip:a@x"), ("1", "sip:b@x")], None).unwrap();
        let n = map.write_uri(&m("01"), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"sip:a@x");
        let n = map.write_uri(&m("1"), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"sip:b@x");
    }

    #[test]
    fn msisdn_map_build_errors() {
        assert_eq!(MsisdnMap::build(&[("x1", "sip:a@x")], None).unwrap_err(), MapBuildError::BadMsisdn { index: 0 });
        assert_eq!(MsisdnMap::build(&[("1", "")], None).unwrap_err(), MapBuildError::BadUri { index: 0 });
        assert_eq!(MsisdnMap::build(&[("1", "sip:a b@x")], None).unwrap_err(), MapBuildError::BadUri { index: 0 });
        assert_eq!(
            MsisdnMap::build(&[("+12", "sip:a@x"), ("+3", "sip:c@x"), ("12", "sip:b@x")], None).unwrap_err(),
            MapBuildError::Duplicate { first: 0, index: 2 }
        );
        for bad in ["sip:x@y", "{msisdn}{msisdn}", "sip:+{msisdn} @x"] {
            assert_eq!(MsisdnMap::build(&[], Some(bad)).unwrap_err(), MapBuildError::BadTemplate, "{bad}");
        }
    }

    #[test]
    fn publish_swaps_snapshots() {
        let sel = Selection::new(lab(), MsisdnMap::default());
        let old = sel.load();
        assert_eq!(old.generation, 0);
        let g = sel.publish(
            RoutingTable::build(&[RouteSpec::new("+4470001", LegacySystemId(7))]).unwrap(),
            MsisdnMap::default(),
        );
        assert_eq!(g, 1);
        // A reader holding the old snapshot keeps it.
        assert_eq!(old.routes.select(&m("+44700011"), None), Ok(LegacySystemId(1)));
        assert_eq!(sel.load().routes.select(&m("+44700011"), None), Ok(LegacySystemId(7)));
        assert_eq!(sel.load().routes.select(&m("+44700021"), None), Err(SelectError::NoRoute));
    }

    /// Reference: the longest provisioned prefix of the number, by string search.
    fn reference(specs: &[(String, u16)], digits: &str) -> Option<u16> {
        specs.iter().filter(|(p, _)| digits.starts_with(p.as_str())).max_by_key(|(p, _)| p.len()).map(|s| s.1)
    }

    proptest! {
        #[test]
        fn matches_reference(
            prefixes in proptest::collection::btree_map("[0-9]{0,6}", any::<u16>(), 0..40),
            number in "[0-9]{1,15}",
        ) {
            let specs: Vec<(String, u16)> = prefixes.into_iter().collect();
            let routes: Vec<RouteSpec<'_>> =
                specs.iter().map(|(p, s)| RouteSpec::new(p, LegacySystemId(*s))).collect();
            let t = RoutingTable::build(&routes).unwrap();
            let got = t.select(&m(&number), None).ok().map(|s| s.0);
            prop_assert_eq!(got, reference(&specs, &number));
        }

        #[test]
        fn packing_round_trips(number in "[0-9]{1,15}") {
            let n = m(&number);
            prop_assert_eq!(unpack_msisdn(pack_msisdn(&n)), Some(n));
        }

        #[test]
        fn select_never_panics(digits in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = lab().select_digits(&digits, Some("text/plain"));
        }
    }
}
