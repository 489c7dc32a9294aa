"""Landlock (Linux >= 5.13): a process forbids itself file-system writes, and where the kernel's
ABI allows, TCP bind/connect, abstract unix sockets and signals outside its domain, for good.
Used by :mod:`fpenc.sandbox` in the child process that runs an untrusted TorchScript suspect."""

from __future__ import annotations

import ctypes
import os
import struct

_LANDLOCK_FS_WRITE = (
    (1 << 1) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12)
)  # WRITE_FILE, REMOVE_DIR/FILE, MAKE_CHAR/DIR/REG/SOCK/FIFO/BLOCK/SYM
_LANDLOCK_FS_REFER, _LANDLOCK_FS_TRUNCATE, _LANDLOCK_FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_LANDLOCK_NET = (1 << 0) | (1 << 1)  # BIND_TCP, CONNECT_TCP
_SYS_CREATE, _SYS_RESTRICT = 444, 446  # the same syscall numbers on x86_64 and aarch64
_PR_SET_NO_NEW_PRIVS = 38


def landlock_deny_writes() -> int:
    """Forbid file-system writes (and TCP bind/connect where supported) to this process for good.
    Returns the Landlock ABI version applied, 0 where the kernel has none."""
    libc = ctypes.CDLL(None, use_errno=True)
    abi = libc.syscall(_SYS_CREATE, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    if abi < 1:
        return 0
    fs = _LANDLOCK_FS_WRITE | (_LANDLOCK_FS_REFER if abi >= 2 else 0) | (_LANDLOCK_FS_TRUNCATE if abi >= 3 else 0)
    net = _LANDLOCK_NET if abi >= 4 else 0
    scoped = 0x3 if abi >= 6 else 0  # abstract unix sockets, signals to processes outside the sandbox
    attr = (
        struct.pack("=QQQ", fs, net, scoped)
        if abi >= 6
        else (struct.pack("=QQ", fs, net) if abi >= 4 else struct.pack("=Q", fs))
    )
    buf = ctypes.create_string_buffer(attr, len(attr))
    fd = libc.syscall(_SYS_CREATE, buf, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0))
    if fd < 0:
        return 0
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or libc.syscall(_SYS_RESTRICT, fd, ctypes.c_uint32(0)) != 0:
        os.close(fd)
        return 0
    os.close(fd)
    return int(abi)
