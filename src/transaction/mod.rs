//! Transaction protocol server and client engines (sans-IO).
