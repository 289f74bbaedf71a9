//! TFTP packets (RFC 1350) and option extensions (RFC 2347, 2348, 2349, 7440, 2090).
