//! The end-to-end harness: finds the built binaries and starts real components on loopback (a distribution
//! registry, a token server, a private D-Bus session with gnome-keyring). Every component a test needs must
//! be present: a missing one fails the test with the package to install, it is never skipped.

pub mod apiserver;
pub mod bins;
pub mod dbus;
pub mod faultproxy;
pub mod images;
pub mod moto;
pub mod pki;
pub mod process;
pub mod referrers;
pub mod registry;
pub mod report;
pub mod specs;
pub mod tokenserver;
pub mod vendors;
