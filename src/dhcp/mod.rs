//! DHCP, proxyDHCP and PXE boot server discovery engines (sans-IO).
