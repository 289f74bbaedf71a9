//! Transaction protocol server and client engines (sans-IO),
//! docs/transaction-protocol.md.

mod policy;

pub use policy::Policy;
