//! Shared helpers of the persistence tests.

pub(crate) use vigil_persistence::testing::TestDb;

/// The [`ParseStateError`](vigil_persistence::lifecycle::ParseStateError) somewhere in
/// `error`'s source chain (diesel wraps it with the field it was reading).
pub(crate) fn unknown_state_in<'e>(
    error: &'e (dyn std::error::Error + 'static),
) -> Option<&'e vigil_persistence::lifecycle::ParseStateError> {
    std::iter::successors(Some(error), |e| e.source()).find_map(|e| e.downcast_ref())
}
