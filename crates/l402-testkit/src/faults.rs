//! LND failure modes the simulator can be told to show, once or until cleared.

use std::time::Duration;

use l402_lnd::proto::lnrpc::PaymentFailureReason;

/// A failure mode to inject with [`crate::LndSimulator::inject`] (once) or
/// [`crate::LndSimulator::inject_always`] (until [`crate::LndSimulator::clear_faults`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The next payment is reported FAILED with `FAILURE_REASON_NO_ROUTE`, without paying.
    NoRoute,
    /// The next payment is reported FAILED with `FAILURE_REASON_TIMEOUT`, without paying.
    Timeout,
    /// The next payment is reported FAILED with `FAILURE_REASON_INSUFFICIENT_BALANCE`, without paying.
    InsufficientBalance,
    /// The next payment is reported FAILED with `FAILURE_REASON_INCORRECT_PAYMENT_DETAILS`, without paying.
    IncorrectPaymentDetails,
    /// `SendPaymentV2` answers `AlreadyExists` ("payment is in transition") because, as after a crash, an
    /// earlier call already started the payment: the simulator starts it for real in the background, and
    /// `TrackPaymentV2` follows it.
    AlreadyExists,
    /// The payment shows IN_FLIGHT (with one HTLC attempt) for this long before it is really paid.
    InFlightFor(Duration),
    /// Once the payment is IN_FLIGHT, every connection is cut (the `SendPaymentV2` stream drops); the payment
    /// goes on in the background and `TrackPaymentV2` later reports its real outcome.
    DropStream,
    /// The node is unreachable: open connections are cut and new ones closed at once. Injected once, exactly
    /// one new connection is refused.
    Unreachable,
}

impl Fault {
    pub(crate) fn failure_reason(&self) -> Option<PaymentFailureReason> {
        Some(match self {
            Fault::NoRoute => PaymentFailureReason::FailureReasonNoRoute,
            Fault::Timeout => PaymentFailureReason::FailureReasonTimeout,
            Fault::InsufficientBalance => PaymentFailureReason::FailureReasonInsufficientBalance,
            Fault::IncorrectPaymentDetails => PaymentFailureReason::FailureReasonIncorrectPaymentDetails,
            _ => return None,
        })
    }

    fn is_payment_fault(&self) -> bool {
        !matches!(self, Fault::Unreachable)
    }
}

/// The faults one `SendPaymentV2` call gets.
#[derive(Clone, Debug, Default)]
pub(crate) struct PaymentFaults {
    pub(crate) fail_with: Option<PaymentFailureReason>,
    pub(crate) already_exists: bool,
    pub(crate) hold: Option<Duration>,
    pub(crate) drop_stream: bool,
}

/// The faults in force.
#[derive(Debug, Default)]
pub(crate) struct FaultBook {
    entries: Vec<(Fault, bool)>,
}

impl FaultBook {
    pub(crate) fn add(&mut self, fault: Fault, always: bool) {
        self.entries.push((fault, always));
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }

    /// Takes the payment faults for one payment (one-shot ones are used up).
    pub(crate) fn take_payment_faults(&mut self) -> PaymentFaults {
        let mut faults = PaymentFaults::default();
        self.entries.retain(|(fault, always)| {
            if !fault.is_payment_fault() {
                return true;
            }
            match fault {
                Fault::AlreadyExists => faults.already_exists = true,
                Fault::InFlightFor(d) => faults.hold = Some(*d),
                Fault::DropStream => faults.drop_stream = true,
                other => faults.fail_with = faults.fail_with.or(other.failure_reason()),
            }
            *always
        });
        faults
    }

    /// Whether a new connection must be refused now (a one-shot refusal is used up).
    pub(crate) fn refuse_connection(&mut self) -> bool {
        let position = self.entries.iter().position(|(f, _)| *f == Fault::Unreachable);
        match position {
            Some(i) if self.entries[i].1 => true,
            Some(i) => {
                self.entries.remove(i);
                true
            }
            None => false,
        }
    }
}
