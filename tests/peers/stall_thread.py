#!/usr/bin/env python3
"""Stops one thread of a running process for a while, the rest running on: the
thread is seized and interrupted with ptrace (a debugger's stop, per thread), then
let go. The lab uses it to stall one iwf worker core as a hung worker would be.

    stall_thread.py PID THREAD_NAME SECONDS
"""
import ctypes
import os
import sys
import time

PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
WALL = 0x40000000

libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
libc.ptrace.restype = ctypes.c_long


def ptrace(req, tid):
    if libc.ptrace(req, tid, None, None) != 0:
        e = ctypes.get_errno()
        sys.exit(f"stall_thread: ptrace({req:#x}, {tid}): {os.strerror(e)}")


def main():
    pid, name, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")
            if open(f"/proc/{pid}/task/{t}/comm").read().strip() == name]
    if len(tids) != 1:
        sys.exit(f"stall_thread: {len(tids)} threads of {pid} are named {name!r}")
    tid = tids[0]
    ptrace(PTRACE_SEIZE, tid)
    ptrace(PTRACE_INTERRUPT, tid)
    os.waitpid(tid, WALL)
    print(f"stall_thread: {name} ({tid}) stopped", flush=True)
    time.sleep(seconds)
    ptrace(PTRACE_DETACH, tid)
    print(f"stall_thread: {name} ({tid}) running again", flush=True)


if __name__ == "__main__":
    main()
