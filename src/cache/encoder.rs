//! The downstream compression module: Pingora's response compression
//! (`ResponseCompressionCtx`: gzip, brotli, zstd) behind weir's own module
//! so it can close brotli streams. Pingora 0.9's brotli encoder only
//! flushes at the end of a body and never writes brotli's last meta-block,
//! so strict decoders see a truncated stream; after that flush the stream
//! is byte-aligned and one byte (`ISLAST`, `ISLASTEMPTY`: `0x03`) ends it.
//! Disabled (level 0) until [`super::compress::apply`] arms it.

use super::entry::Entry;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora_core::modules::http::{HttpModule, HttpModuleBuilder, Module};
use pingora_core::protocols::http::compression::{Algorithm, ResponseCompressionCtx};
use pingora_error::Result;
use pingora_http::{RequestHeader, ResponseHeader};
use std::any::Any;

/// brotli's empty last meta-block, byte-aligned.
const BROTLI_END: u8 = 0x03;

/// An encoded body being kept as it is made.
pub struct Record {
    /// The encoded copy's entry, body still empty.
    pub entry: Entry,
    /// Give up past this many bytes.
    pub max: usize,
}

/// One response's compression state.
pub struct Encoder {
    ctx: ResponseCompressionCtx,
    /// Armed with brotli: the end byte is owed.
    brotli: bool,
    ended: bool,
    /// A cache hit served from a kept encoded copy: (algorithm index, length).
    pub pre_encoded: Option<(usize, usize)>,
    /// Keep the encoded body made now as a copy for later hits.
    pub record: Option<Record>,
    kept: BytesMut,
}

impl Encoder {
    /// Switches the encoder on for `algorithm` at `level`; `only` is a
    /// request head whose `Accept-Encoding` names just that algorithm.
    pub fn arm(&mut self, algorithm: Algorithm, level: u32, only: &RequestHeader) {
        if !self.ctx.is_header_phase() {
            return;
        }
        self.ctx.adjust_algorithm_level(algorithm, level);
        self.ctx.request_filter(only);
        self.brotli = algorithm == Algorithm::Brotli;
    }

    fn finish(&mut self, body: Option<Bytes>) -> Option<Bytes> {
        if !self.brotli || self.ended {
            return body;
        }
        self.ended = true;
        let mut b = BytesMut::from(body.unwrap_or_default().as_ref());
        b.extend_from_slice(&[BROTLI_END]);
        Some(b.freeze())
    }

    /// Adds encoded output to the copy being kept; stores it at the end.
    fn keep(&mut self, out: Option<&Bytes>, end: bool) {
        let Some(r) = &self.record else {
            return;
        };
        if let Some(b) = out {
            if self.kept.len() + b.len() > r.max {
                self.record = None;
                return;
            }
            self.kept.extend_from_slice(b);
        }
        if end {
            if let Some(mut r) = self.record.take() {
                r.entry.body = std::mem::take(&mut self.kept).freeze();
                super::store_encoded(r.entry);
            }
        }
    }
}

#[async_trait]
impl HttpModule for Encoder {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    async fn response_header_filter(&mut self, resp: &mut ResponseHeader, end: bool) -> Result<()> {
        self.ctx.response_header_filter(resp, end);
        // Not encoding after all (no body, or the module declined).
        if !self.ctx.is_header_phase() && self.ctx.get_info().is_none() {
            self.brotli = false;
            self.record = None;
        }
        Ok(())
    }

    fn response_body_filter(&mut self, body: &mut Option<Bytes>, end: bool) -> Result<()> {
        if !self.ctx.is_enabled() {
            return Ok(());
        }
        let encoded = self.ctx.response_body_filter(body.as_ref(), end);
        if encoded.is_some() {
            *body = encoded;
        }
        if end {
            *body = self.finish(body.take());
        }
        self.keep(body.as_ref(), end);
        Ok(())
    }

    fn response_done_filter(&mut self) -> Result<Option<Bytes>> {
        if !self.ctx.is_enabled() || self.ended {
            return Ok(None);
        }
        let rest = self.ctx.response_body_filter(None, true);
        let rest = self.finish(rest);
        self.keep(rest.as_ref(), true);
        Ok(rest)
    }
}

/// Builds one disabled [`Encoder`] per request.
pub struct EncoderBuilder;

impl HttpModuleBuilder for EncoderBuilder {
    fn init(&self) -> Module {
        Box::new(Encoder {
            ctx: ResponseCompressionCtx::new(0, false, false),
            brotli: false,
            ended: false,
            pre_encoded: None,
            record: None,
            kept: BytesMut::new(),
        })
    }

    fn order(&self) -> i16 {
        // After other modules, as Pingora's own compression module.
        i16::MIN / 2
    }
}
