//! Transaction protocol frames (docs/transaction-protocol.md).
