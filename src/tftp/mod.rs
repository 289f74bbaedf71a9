//! TFTP server and client engines (sans-IO).
