//! Shared helpers of the persistence tests.

pub(crate) use vigil_persistence::testing::TestDb;

/// Defines one test per backend from one async body taking a `&TestDb`.
macro_rules! on_both_backends {
    ($(#[$meta:meta])* async fn $name:ident($db:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($db: &$crate::common::TestDb) $body

            #[tokio::test]
            async fn postgres() {
                let Some(db) = $crate::common::TestDb::postgres().await else { return };
                run(&db).await;
            }

            #[tokio::test]
            async fn sqlite() {
                run(&$crate::common::TestDb::sqlite()).await;
            }
        }
    };
}
pub(crate) use on_both_backends;

/// The [`ParseStateError`](vigil_persistence::lifecycle::ParseStateError) somewhere in
/// `error`'s source chain (diesel wraps it with the field it was reading).
pub(crate) fn unknown_state_in<'e>(
    error: &'e (dyn std::error::Error + 'static),
) -> Option<&'e vigil_persistence::lifecycle::ParseStateError> {
    std::iter::successors(Some(error), |e| e.source()).find_map(|e| e.downcast_ref())
}
