//! The request body sent upstream. When a request may be retried on another
//! instance, its body waits in a shared slot and is taken only when hyper first
//! polls it, i.e. after a connection is up and the head is written; a failed
//! connect leaves it in the slot for the next attempt. Nothing is buffered.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

/// Shared home of a request body between attempts.
pub(crate) type BodySlot = Arc<Mutex<Option<Incoming>>>;

/// Body of an upstream request.
pub(crate) enum UpstreamBody {
    /// No body (GET and friends): nothing to keep for a retry.
    Empty,
    /// The client's body, streamed as is (single attempt).
    Direct(Incoming),
    /// The client's body, taken from the slot on first poll.
    Shared {
        slot: BodySlot,
        taken: Option<Incoming>,
        size_hint: SizeHint,
    },
}

impl UpstreamBody {
    /// A body for a retryable attempt; `None` when the slot was already taken
    /// (an earlier attempt started sending, so this one must not be made).
    pub(crate) fn from_slot(slot: &BodySlot) -> Option<UpstreamBody> {
        let guard = slot.lock().unwrap_or_else(|p| p.into_inner());
        let size_hint = guard.as_ref()?.size_hint();
        Some(UpstreamBody::Shared {
            slot: slot.clone(),
            taken: None,
            size_hint,
        })
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            UpstreamBody::Empty => Poll::Ready(None),
            UpstreamBody::Direct(body) => Pin::new(body).poll_frame(cx),
            UpstreamBody::Shared { slot, taken, .. } => {
                if taken.is_none() {
                    *taken = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
                }
                match taken {
                    Some(body) => Pin::new(body).poll_frame(cx),
                    None => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Empty => true,
            UpstreamBody::Direct(body) => body.is_end_stream(),
            UpstreamBody::Shared {
                taken: Some(body), ..
            } => body.is_end_stream(),
            UpstreamBody::Shared { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Empty => SizeHint::with_exact(0),
            UpstreamBody::Direct(body) => body.size_hint(),
            UpstreamBody::Shared {
                taken: Some(body), ..
            } => body.size_hint(),
            UpstreamBody::Shared { size_hint, .. } => *size_hint,
        }
    }
}
