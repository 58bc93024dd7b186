//! End-to-end tests against a running `tether` process.

mod startup;
