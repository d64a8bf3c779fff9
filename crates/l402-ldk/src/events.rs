//! The one consumer of the node's event queue.
//!
//! ldk-node has a single event queue with a single waker: exactly one task may read it. [`pump`] reads each
//! event, publishes what the rest of the crate waits on, and marks it handled (which persists the queue).
//!
//! Hold invoices are not supported: a payment that becomes claimable (only invoices made with ldk-node's
//! `receive_for_hash` do) is failed back to the payer at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use l402_lightning::{PaymentFailure, Settlement};
use l402_proto::{Msat, PaymentHash};
use ldk_node::Event;
use tokio::sync::broadcast;

use crate::convert::failure;

/// A channel's lifecycle, as seen by this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelEvent {
    /// Funding negotiated; the funding transaction is being broadcast.
    Pending {
        /// The user channel id (ldk-node's `UserChannelId.0`).
        user_channel_id: u128,
        /// The funding transaction id, hex.
        funding_txid: String,
    },
    /// The channel can carry payments.
    Ready {
        /// The user channel id.
        user_channel_id: u128,
    },
    /// The channel closed.
    Closed {
        /// The user channel id.
        user_channel_id: u128,
    },
}

/// The pump saw an outgoing payment to this hash succeed or fail (the store has the details).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PaymentOutcome(pub(crate) PaymentHash);

/// What the pump publishes.
pub(crate) struct Notifier {
    pub(crate) payments: broadcast::Sender<PaymentOutcome>,
    pub(crate) settlements: broadcast::Sender<Settlement>,
    pub(crate) channels: broadcast::Sender<ChannelEvent>,
    /// Failure reasons by payment hash: ldk-node's payment store does not keep them.
    pub(crate) failures: Mutex<HashMap<PaymentHash, PaymentFailure>>,
}

impl Default for Notifier {
    fn default() -> Self {
        Self {
            payments: broadcast::channel(1024).0,
            settlements: broadcast::channel(1024).0,
            channels: broadcast::channel(256).0,
            failures: Mutex::new(HashMap::new()),
        }
    }
}

impl Notifier {
    pub(crate) fn failure_of(&self, hash: &PaymentHash) -> Option<PaymentFailure> {
        self.failures.lock().ok().and_then(|f| f.get(hash).cloned())
    }

    pub(crate) fn record_failure(&self, hash: PaymentHash, reason: PaymentFailure) {
        if let Ok(mut f) = self.failures.lock() {
            f.insert(hash, reason);
        }
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Drains the node's events until the task is aborted.
pub(crate) async fn pump(node: Arc<ldk_node::Node>, n: Arc<Notifier>) {
    loop {
        let event = node.next_event_async().await;
        match &event {
            Event::PaymentSuccessful { payment_hash, .. } => {
                let _ = n.payments.send(PaymentOutcome(PaymentHash(payment_hash.0)));
            }
            Event::PaymentFailed { payment_hash: Some(hash), reason, .. } => {
                let hash = PaymentHash(hash.0);
                n.record_failure(hash, failure(*reason));
                let _ = n.payments.send(PaymentOutcome(hash));
            }
            Event::PaymentReceived { payment_hash, amount_msat, .. } => {
                let s = Settlement {
                    payment_hash: PaymentHash(payment_hash.0),
                    amount_received: Msat(*amount_msat),
                    settled_at: now_unix(),
                };
                let _ = n.settlements.send(s);
            }
            Event::PaymentClaimable { payment_hash, .. } => {
                // Only manual-claim (hold) invoices make a payment claimable, and this crate issues none: fail
                // it back at once so the payer's HTLC is not locked until its timeout.
                tracing::warn!(payment_hash = %PaymentHash(payment_hash.0), "failing back a payment to a hold invoice");
                let _ = node.bolt11_payment().fail_for_hash(*payment_hash);
            }
            Event::ChannelPending { user_channel_id, funding_txo, .. } => {
                let _ = n.channels.send(ChannelEvent::Pending {
                    user_channel_id: user_channel_id.0,
                    funding_txid: funding_txo.txid.to_string(),
                });
            }
            Event::ChannelReady { user_channel_id, .. } => {
                let _ = n.channels.send(ChannelEvent::Ready { user_channel_id: user_channel_id.0 });
            }
            Event::ChannelClosed { user_channel_id, .. } => {
                let _ = n.channels.send(ChannelEvent::Closed { user_channel_id: user_channel_id.0 });
            }
            other => tracing::debug!(event = ?other, "LDK event"),
        }
        let node = node.clone();
        // event_handled persists the queue and blocks (block_in_place); keep it off the async workers.
        let handled = tokio::task::spawn_blocking(move || node.event_handled()).await;
        if !matches!(handled, Ok(Ok(()))) {
            tracing::warn!("LDK event could not be marked handled; it will be delivered again");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
}
