//! Conversions between ldk-node's types and the protocol's.

use l402_lightning::{PaymentFailure, PaymentSuccess};
use l402_proto::lightning_invoice::Currency;
use l402_proto::{Msat, PaymentHash, Preimage};
use ldk_node::bitcoin::Network;
use ldk_node::lightning::events::PaymentFailureReason;
use ldk_node::lightning::ln::channelmanager::PaymentId;
use ldk_node::payment::{PaymentDetails, PaymentKind};

pub(crate) fn currency(network: Network) -> Currency {
    match network {
        Network::Bitcoin => Currency::Bitcoin,
        Network::Regtest => Currency::Regtest,
        Network::Signet => Currency::Signet,
        _ => Currency::BitcoinTestnet,
    }
}

/// For BOLT-11 payments ldk-node uses the payment hash as the payment id, on both sides.
pub(crate) fn payment_id(hash: &PaymentHash) -> PaymentId {
    PaymentId(hash.0)
}

pub(crate) fn failure(reason: Option<PaymentFailureReason>) -> PaymentFailure {
    match reason {
        Some(PaymentFailureReason::RouteNotFound) => PaymentFailure::NoRoute,
        Some(PaymentFailureReason::RetriesExhausted) => PaymentFailure::Timeout,
        Some(PaymentFailureReason::PaymentExpired) => PaymentFailure::InvoiceExpired,
        Some(PaymentFailureReason::RecipientRejected) => PaymentFailure::IncorrectPaymentDetails,
        Some(PaymentFailureReason::UserAbandoned) => PaymentFailure::Canceled,
        Some(other) => PaymentFailure::Other(format!("{other:?}")),
        None => PaymentFailure::Other("failed (no reason given)".into()),
    }
}

/// The success facts of a settled outbound payment, if it has its preimage.
pub(crate) fn success(details: &PaymentDetails) -> Option<PaymentSuccess> {
    let PaymentKind::Bolt11 { preimage: Some(preimage), .. } = &details.kind else { return None };
    Some(PaymentSuccess {
        preimage: Preimage(preimage.0),
        amount: Msat(details.amount_msat.unwrap_or(0)),
        fee: Msat(details.fee_paid_msat.unwrap_or(0)),
    })
}
