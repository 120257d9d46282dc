//! `max_body_size`: a `Content-Length` over the limit is answered 413 before
//! any upstream connection; a body without one (chunked) is counted as it
//! streams, and crossing the limit aborts the upstream request (413 when no
//! response has started; see `proxy::request_body_filter`).

use super::{Answer, Decision, RequestView, State};
use http::header::CONTENT_LENGTH;

/// A compiled body limit.
#[derive(Debug)]
pub struct BodyLimit {
    max: u64,
}

impl BodyLimit {
    /// A limit of `max` bytes.
    pub fn new(max: u64) -> BodyLimit {
        BodyLimit { max }
    }

    /// 413 for a declared length over the limit; otherwise arms the
    /// streaming count.
    pub fn request(&self, v: &RequestView<'_>, st: &mut State) -> Decision {
        let declared = v
            .req
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| l.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max) {
            return Decision::Respond(Answer::status(413));
        }
        st.body_limit = Some(self.max);
        Decision::Continue
    }
}
