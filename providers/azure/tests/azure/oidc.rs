//! Buyer sign-in.
