//! The imaging policy ("imaging proxy"): menu settings, imaging rules, multicast sessions.
