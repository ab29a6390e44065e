//! What iwf's UAS answers (RFC 3261 §11 OPTIONS, RFC 3428 MESSAGE), apart
//! from the transaction state machine: the application asks
//! [`UasPolicy::answer`] and passes the [`Answer`] to
//! [`super::ServerTransactions::respond`].

use crate::wire::sip::{CoreFields, Message, Method};

/// Methods iwf serves (the `Allow` value).
pub const ALLOW: &str = "MESSAGE, OPTIONS";
/// Bodies iwf takes in a MESSAGE (the `Accept` value).
pub const ACCEPT: &str = "message/cpim, text/plain";

/// A final answer: status, reason phrase and header fields to add.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: &'static str,
    /// Extra header fields.
    pub headers: &'static [(&'static str, &'static str)],
}

impl Answer {
    /// An answer without extra header fields.
    pub const fn new(status: u16, reason: &'static str) -> Self {
        Answer { status, reason, headers: &[] }
    }

    /// As a [`super::Response`] for [`super::ServerTransactions::respond`].
    pub fn response(&self) -> super::Response<'static> {
        super::Response::new(self.status, self.reason).with_headers(self.headers)
    }
}

const CAPABILITIES: &[(&str, &str)] = &[("Allow", ALLOW), ("Accept", ACCEPT)];

/// The MESSAGE route of a SIP service with no flows behind it: nobody is reachable (404
/// Not Found).
pub fn unknown_recipient(_core: &CoreFields<'_>, _request: &Message<'_, '_>) -> Answer {
    Answer::new(404, "Not Found")
}

/// iwf's answers to the requests the transaction layer lets through. `R`
/// decides a MESSAGE whose body iwf can take.
#[derive(Clone, Copy, Debug)]
pub struct UasPolicy<R = fn(&CoreFields<'_>, &Message<'_, '_>) -> Answer> {
    route: R,
}

impl Default for UasPolicy {
    fn default() -> Self {
        UasPolicy { route: unknown_recipient }
    }
}

impl<R> UasPolicy<R>
where
    R: Fn(&CoreFields<'_>, &Message<'_, '_>) -> Answer,
{
    /// A policy routing MESSAGEs with `route`.
    pub fn new(route: R) -> Self {
        UasPolicy { route }
    }

    /// The answer to `request`:
    /// - OPTIONS → 200 OK with `Allow` and `Accept` (RFC 3261 §11.2);
    /// - MESSAGE with a body type outside [`ACCEPT`] → 415 with `Accept`
    ///   (RFC 3428 §7), else whatever the route hook says;
    /// - anything else → 405 with `Allow`.
    pub fn answer(&self, core: &CoreFields<'_>, request: &Message<'_, '_>) -> Answer {
        match core.cseq.method {
            Method::Options => Answer { status: 200, reason: "OK", headers: CAPABILITIES },
            Method::Message => {
                let acceptable = core.content_type.is_some_and(|t| {
                    let is =
                        |a: &str, b: &str| t.type_name.eq_ignore_ascii_case(a) && t.subtype.eq_ignore_ascii_case(b);
                    is("message", "cpim") || is("text", "plain")
                });
                if acceptable {
                    (self.route)(core, request)
                } else {
                    Answer { status: 415, reason: "Unsupported Media Type", headers: &[("Accept", ACCEPT)] }
                }
            }
            _ => Answer { status: 405, reason: "Method Not Allowed", headers: &[("Allow", ALLOW)] },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::sip::{parse_datagram, Header};

    fn answer_for(
        policy: &UasPolicy<impl Fn(&CoreFields<'_>, &Message<'_, '_>) -> Answer>,
        method: &str,
        ctype: &str,
    ) -> Answer {
        let req = format!(
            "{method} sip:+447000100001@iwf.ims.lab SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
From: <sip:a@ims.lab>;tag=1\r\nTo: <sip:+447000100001@iwf.ims.lab>\r\nCall-ID: c\r\n\
CSeq: 1 {method}\r\n{ctype}Content-Length: 2\r\n\r\nhi"
        );
        let mut h = [Header::EMPTY; 16];
        let m = parse_datagram(req.as_bytes(), &mut h).unwrap();
        let core = m.validate().unwrap();
        policy.answer(&core, &m)
    }

    #[test]
    fn options_message_and_others() {
        let p = UasPolicy::default();
        let a = answer_for(&p, "OPTIONS", "");
        assert_eq!((a.status, a.reason), (200, "OK"));
        assert_eq!(a.headers, &[("Allow", "MESSAGE, OPTIONS"), ("Accept", "message/cpim, text/plain")]);
        assert_eq!(answer_for(&p, "MESSAGE", "Content-Type: text/plain\r\n").status, 404);
        assert_eq!(answer_for(&p, "MESSAGE", "c: Message/CPIM\r\n").status, 404);
        let a = answer_for(&p, "MESSAGE", "Content-Type: application/json\r\n");
        assert_eq!((a.status, a.headers), (415, &[("Accept", ACCEPT)][..]));
        assert_eq!(answer_for(&p, "MESSAGE", "").status, 415);
        assert_eq!(answer_for(&p, "INFO", "").status, 405);
    }

    #[test]
    fn route_hook_decides_messages() {
        let p = UasPolicy::new(|core: &CoreFields<'_>, _: &Message<'_, '_>| match core.request_uri {
            Some(crate::wire::sip::Uri::Sip(u)) if u.user == Some("+447000100001") => Answer::new(202, "Accepted"),
            _ => Answer::new(480, "Temporarily Unavailable"),
        });
        let a = answer_for(&p, "MESSAGE", "Content-Type: text/plain\r\n");
        assert_eq!((a.status, a.reason), (202, "Accepted"));
        assert_eq!(a.response().status, 202);
    }
}
