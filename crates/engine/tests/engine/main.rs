//! The engine against a scripted provider: the fulfillment rules, independent of any
//! marketplace's wire format (the real providers are tested against the sandbox).

mod answers;
mod changes;
mod entitlements;
mod fake;
mod harness;
mod inbox;
mod index;
mod landing;
mod lifecycle;
mod retention;
mod returning;
mod signup;
mod warming;
