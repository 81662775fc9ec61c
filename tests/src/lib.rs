//! End-to-end tests across grlhf crates live in `tests/tests/`; they drive the `grlhf` binary
//! the way a user does. This library is intentionally empty.
