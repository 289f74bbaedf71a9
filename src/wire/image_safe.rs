//! The image-safe data record kept on the workstation disk.
