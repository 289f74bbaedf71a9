//! PXE 2.1 vendor options (option 43) and client identity (RFC 4578).
