"""Processes that cannot reach the network: the engine-level half of "no query reaches out".

Oxigraph evaluates ``SERVICE`` itself, over HTTP. :func:`konbini_ld.sparql.check_safe_query`
refuses such queries before they run; the query workers of ``serve`` are, in addition,
sandboxed with a seccomp filter so that even a query that got past the check cannot open
a connection: creating an IPv4 or IPv6 socket fails with ``EACCES`` in every thread of the
process (Unix sockets and pipes, which the worker uses to talk to ``serve``, still work).

The filter is eight BPF instructions installed with ``seccomp(2)``; it needs no privilege
(``no_new_privs`` is set first) and no library. Where seccomp is unavailable (not Linux,
an unknown architecture), :func:`deny_network` says so and the check stands alone.

:func:`end_with_parent` is the other guard worker processes share: none outlives its parent.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct

__all__ = ["deny_network"]

# <linux/filter.h>, <linux/seccomp.h>, <linux/audit.h>
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_RET_K = 0x06
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_SET_MODE_FILTER = 1
_FILTER_FLAG_TSYNC = 1
_PR_SET_NO_NEW_PRIVS = 38
_AF_INET, _AF_INET6 = 2, 10

#: machine → (audit arch, seccomp syscall number, socket syscall number)
_ARCHES = {
    "x86_64": (0xC000003E, 317, 41),
    "aarch64": (0xC00000B7, 277, 198),
}


def _program(arch: int, socket_nr: int) -> bytes:
    def ins(code: int, jt: int, jf: int, k: int) -> bytes:
        return struct.pack("HBBI", code, jt, jf, k)

    return b"".join([
        ins(_LD_W_ABS, 0, 0, 4),                     # A = seccomp_data.arch
        ins(_JEQ_K, 0, 5, arch),                     # another ABI: allow (jump to the end)
        ins(_LD_W_ABS, 0, 0, 0),                     # A = seccomp_data.nr
        ins(_JEQ_K, 0, 3, socket_nr),                # not socket(): allow
        ins(_LD_W_ABS, 0, 0, 16),                    # A = low word of args[0], the address family
        ins(_JEQ_K, 2, 0, _AF_INET),                 # AF_INET: deny
        ins(_JEQ_K, 1, 0, _AF_INET6),                # AF_INET6: deny
        ins(_RET_K, 0, 0, _RET_ALLOW),
        ins(_RET_K, 0, 0, _RET_ERRNO | errno.EACCES),
    ])


def deny_network() -> bool:
    """Forbid this process, all its threads and its children from opening internet sockets.

    Irreversible. Returns ``False`` (and changes nothing) where seccomp is not available.
    """
    arches = _ARCHES.get(platform.machine())
    if os.name != "posix" or platform.system() != "Linux" or arches is None:
        return False
    arch, seccomp_nr, socket_nr = arches
    program = _program(arch, socket_nr)
    n = len(program) // 8
    buf = ctypes.create_string_buffer(program, len(program))

    class _Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = _Prog(n, ctypes.cast(buf, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return False
    rc = libc.syscall(seccomp_nr, _SET_MODE_FILTER, _FILTER_FLAG_TSYNC, ctypes.byref(prog))
    return bool(rc == 0)


def end_with_parent(parent: int | None = None) -> bool:
    """Have the kernel end this (forked) process when its parent dies, so that a parent killed
    outright leaves no worker computing for nobody. Linux; elsewhere a no-op.

    :param parent: the parent's pid as it was before the fork (``None``: any but init).
    :returns: whether the parent is already gone (it died before the request was made).
    """
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return False
    return os.getppid() != parent if parent is not None else os.getppid() == 1
