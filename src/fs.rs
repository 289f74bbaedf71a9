//! Files as the engines see them: a small trait to open by validated path, size, read at offset.
