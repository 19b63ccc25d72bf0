//! Macros shared by keygate's services.

/// `get_ref`, `get_mut` and `into_inner` for a service whose inner service
/// is its `inner` field: what every tower middleware offers (tower-http
/// writes them with a macro of the same name).
macro_rules! define_inner_service_accessors {
    () => {
        /// The inner service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The inner service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Unwraps the inner service.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}
