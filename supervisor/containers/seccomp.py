"""The seccomp profile of the rclone containers: what Docker's default profile lets a container
without capabilities do, with `open_by_handle_at` denied.

The rclone containers keep CAP_DAC_READ_SEARCH, to read a source whatever its files' owners and
modes. Docker's default profile allows `open_by_handle_at` to a holder of that capability, and
that syscall opens any inode of the filesystem behind a bind mount by its handle: a compromised
rclone could read /etc/shadow of the host ("Shocker", 2014). A profile given with
`security_opt=["seccomp=..."]` replaces Docker's default whole, so this one keeps its shape:
everything not named is refused (EPERM); named are the syscalls the default allows a container
with no capability, minus three groups rclone never uses:
- open_by_handle_at: refused, explicitly, the point of the profile;
- ptrace, process_vm_readv/writev: the default allows them from kernel 4.8; refused here;
- io_uring_*: refused (Docker 25's default refuses them too: a large kernel attack surface).
A profile that allows everything but open_by_handle_at (defaultAction SCMP_ACT_ALLOW) would
trade one hole for many: keyctl, bpf, userfaultfd, unshare, perf_event_open, kexec_load... are
refused by Docker's default and would then reach the kernel. And a syscall added by a future
kernel is refused here until named, as in Docker's.
"""

from __future__ import annotations

import functools
import json
from typing import Any

EPERM, ENOSYS = 1, 38
# AF_VSOCK: the default refuses socket(AF_VSOCK, ...).
AF_VSOCK = 40
# CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET: no namespaces without CAP_SYS_ADMIN.
CLONE_NAMESPACE_FLAGS = 0x7E020000
# personality(2) values the default allows: PER_LINUX, UNAME26, PER_LINUX32, both, query.
PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

_FILES = """
access chdir chmod chown chown32 close close_range copy_file_range creat dup dup2 dup3
faccessat faccessat2 fadvise64 fadvise64_64 fallocate fchdir fchmod fchmodat fchown fchown32
fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr flock fremovexattr fsetxattr fstat fstat64
fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futimesat getcwd getdents getdents64
getxattr lchown lchown32 lgetxattr link linkat listxattr llistxattr _llseek lremovexattr lseek
lsetxattr lstat lstat64 mkdir mkdirat mknod mknodat name_to_handle_at newfstatat open openat
openat2 pread64 preadv preadv2 pwrite64 pwritev pwritev2 read readahead readlink readlinkat
readv removexattr rename renameat renameat2 rmdir sendfile sendfile64 setxattr splice stat
stat64 statfs statfs64 statx symlink symlinkat sync sync_file_range syncfs tee truncate
truncate64 umask unlink unlinkat utime utimensat utimensat_time64 utimes vmsplice write writev
fanotify_mark inotify_add_watch inotify_init inotify_init1 inotify_rm_watch
io_cancel io_destroy io_getevents io_pgetevents io_pgetevents_time64 io_setup io_submit ioctl
"""
_MEMORY = """
brk madvise membarrier memfd_create memfd_secret mincore mlock mlock2 mlockall mmap mmap2
mprotect mremap msync munlock munlockall munmap pkey_alloc pkey_free pkey_mprotect
remap_file_pages
"""
_PROCESSES = """
capget capset execve execveat exit exit_group fork getcpu getegid getegid32 geteuid geteuid32
getgid getgid32 getgroups getgroups32 getpgid getpgrp getpid getppid getpriority getresgid
getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage getsid get_thread_area
gettid getuid getuid32 ioprio_get ioprio_set kill pidfd_open pidfd_send_signal prctl
prlimit64 process_mrelease restart_syscall rseq sched_getaffinity sched_getattr
sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler
sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr
sched_setparam sched_setscheduler sched_yield seccomp setfsgid setfsgid32 setfsuid setfsuid32
setgid setgid32 setgroups setgroups32 setpgid setpriority setregid setregid32 setresgid
setresgid32 setresuid setresuid32 setreuid setreuid32 setrlimit set_robust_list setsid
set_thread_area set_tid_address setuid setuid32 sysinfo tgkill times tkill ugetrlimit uname
vfork wait4 waitid waitpid landlock_add_rule landlock_create_ruleset landlock_restrict_self
"""
_SIGNALS_TIME_SYNC = """
alarm clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime
clock_gettime64 clock_nanosleep clock_nanosleep_time64 adjtimex getitimer gettimeofday
nanosleep pause rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn
rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo setitimer sigaltstack
signalfd signalfd4 sigprocmask sigreturn time timer_create timer_delete timer_getoverrun
timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create timerfd_gettime
timerfd_gettime64 timerfd_settime timerfd_settime64 futex futex_time64 futex_waitv getrandom
epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait
epoll_wait_old eventfd eventfd2 poll ppoll ppoll_time64 pselect6 pselect6_time64 select
_newselect pipe pipe2
"""
_IPC_NETWORK = """
accept accept4 bind connect getpeername getsockname getsockopt listen recv recvfrom recvmmsg
recvmmsg_time64 recvmsg send sendmmsg sendmsg sendto setsockopt shutdown socketcall socketpair
ipc mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend
mq_timedsend_time64 mq_unlink msgctl msgget msgrcv msgsnd semctl semget semop semtimedop
semtimedop_time64 shmat shmctl shmdt shmget
"""
ALLOWED = frozenset(
    " ".join((_FILES, _MEMORY, _PROCESSES, _SIGNALS_TIME_SYNC, _IPC_NETWORK)).split()
)
DENIED = frozenset({"open_by_handle_at", "ptrace", "process_vm_readv", "process_vm_writev",
                    "io_uring_setup", "io_uring_enter", "io_uring_register"})
# Per architecture, as the default: only on the arches that have them.
_BY_ARCH = (
    (("amd64", "x32"), ["arch_prctl"]),
    (("amd64", "x32", "x86"), ["modify_ldt"]),
    (("arm", "arm64"), ["arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2",
                        "breakpoint", "cacheflush", "set_tls"]),
    (("ppc64le",), ["sync_file_range2", "swapcontext"]),
    (("s390", "s390x"), ["s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"]),
    (("riscv64",), ["riscv_flush_icache"]),
)


def _arg(index: int, value: int, op: str) -> dict[str, Any]:
    return {"index": index, "value": value, "op": op}


def profile() -> dict[str, Any]:
    """The profile as Docker reads it (the JSON of `docker run --security-opt seccomp=FILE`)."""
    s390 = ["s390", "s390x"]
    masked = "SCMP_CMP_MASKED_EQ"
    rules: list[dict[str, Any]] = [
        {"names": sorted(ALLOWED), "action": "SCMP_ACT_ALLOW"},
        {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
         "args": [_arg(0, AF_VSOCK, "SCMP_CMP_NE")]},
        *({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
           "args": [_arg(0, value, "SCMP_CMP_EQ")]} for value in PERSONALITIES),
        *({"names": names, "action": "SCMP_ACT_ALLOW", "includes": {"arches": list(arches)}}
          for arches, names in _BY_ARCH),
        # Threads, not namespaces: clone without a CLONE_NEW* flag (s390 swaps the arguments).
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
         "args": [_arg(0, CLONE_NAMESPACE_FLAGS, masked) | {"valueTwo": 0}],
         "excludes": {"arches": s390}},
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
         "args": [_arg(1, CLONE_NAMESPACE_FLAGS, masked) | {"valueTwo": 0}],
         "includes": {"arches": s390}},
        # clone3's flags are in memory, out of seccomp's reach: ENOSYS, and the C library and
        # Go's runtime fall back to clone.
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS},
        {"names": sorted(DENIED), "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM},
    ]
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "archMap": [
            {"architecture": "SCMP_ARCH_X86_64",
             "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
            {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
            {"architecture": "SCMP_ARCH_S390X", "subArchitectures": ["SCMP_ARCH_S390"]},
        ],
        "syscalls": rules,
    }


@functools.cache
def security_opt() -> str:
    """`seccomp=<profile JSON>`, for the Docker SDK's security_opt (the API takes the text)."""
    return "seccomp=" + json.dumps(profile(), separators=(",", ":"))
