//! `#[repr(C)]` map keys and values shared by the eBPF programs and userspace.
#![no_std]
