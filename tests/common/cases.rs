//! Proptest settings shared by the property tests.

use proptest::test_runner::Config;

/// `cases` runs per property, unless `PROPTEST_CASES` says otherwise; failures are printed,
/// not written to a `proptest-regressions/` file beside the test.
pub fn proptest_config(cases: u32) -> Config {
    let base = Config::default();
    Config {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            base.cases
        } else {
            cases
        },
        failure_persistence: None,
        ..base
    }
}
