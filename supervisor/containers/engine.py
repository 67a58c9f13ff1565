"""One-shot containers through the Docker SDK: start, bound, read, always remove.

Every public function here raises one error type, DockerError (one line; `.transient` says
whether a retry could help), whatever the SDK or the connection raised, so callers catch that.

The labels every container of ours carries say whose it is. LABEL_JOB and LABEL_RUN: the job and
the run. LABEL_INSTANCE: the installation (config) that ran it, so that two installations on one
engine, each with its own `db-upload`, never count, reap or stop each other's containers.
LABEL_OWNER: the process that made it and alone reads and removes it. LABEL_TARGET, on a
container that writes to S3 only: the s3://BUCKET/PREFIX/ it writes to; unlike the others it is
checked across installations, since two syncs of one prefix must never overlap whoever started
them. LABEL_READS instead on a container that only reads.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container
from docker.types import Mount
from docker.utils.socket import STDERR, frames_iter
from loguru import logger

from supervisor.config.load import Source
from supervisor.core.files import directory_problem
from supervisor.core.redact import redact
from supervisor.core.retry import is_transient
from supervisor.storage.destination import Destination

LABEL_JOB = "ardua-backup.job"
LABEL_RUN = "ardua-backup.run-id"
LABEL_STEP = "ardua-backup.step"
# The installation whose run made the container: see instance_label. Only the writer label
# (LABEL_TARGET) is looked at across installations.
LABEL_INSTANCE = "ardua-backup.instance"
LABEL_TARGET = "ardua-backup.target"  # s3://bucket/prefix/ the container writes to
# Instead of LABEL_TARGET on a container that only reads (a source listing, also `status`'s):
# its value is the source it reads. A reader never blocks a sync nor makes the daemon skip a run.
LABEL_READS = "ardua-backup.reads"
# The process that created the container and alone reads and removes it: see owner_label.
LABEL_OWNER = "ardua-backup.owner"
KILLED_BY_TIMEOUT = 137


class DockerError(Exception):
    """A Docker problem, phrased as one line that says what to fix."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient


P = ParamSpec("P")
T = TypeVar("T")


def _api(call: Callable[P, T]) -> Callable[P, T]:
    """The SDK's and the connection's errors from `call` as a DockerError."""
    @functools.wraps(call)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return call(*args, **kwargs)
        except (DockerException, requests.RequestException) as exc:
            raise DockerError(f"Docker API error: {_reason(exc)}", is_transient(exc)) from None
    return wrapped


@dataclass(frozen=True)
class ContainerRun:
    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool
    duration_s: float
    stderr_dropped: int = 0  # bytes from the middle of stderr not kept (STDERR_HEAD/_TAIL)


def connect() -> docker.DockerClient:
    """Client from the environment (DOCKER_HOST or the default socket), checked with a ping."""
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except (DockerException, requests.RequestException) as exc:
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise DockerError(f"Docker engine at {host} is not reachable: {_reason(exc)}",
                          is_transient(exc)) from None
    return client


def ping(client: docker.DockerClient) -> None:
    try:
        client.ping()
    except (DockerException, requests.RequestException) as exc:
        raise DockerError(f"Docker engine is not reachable: {_reason(exc)}",
                          is_transient(exc)) from None


def _reason(exc: BaseException) -> str:
    text = redact(str(exc)).strip().splitlines()  # requests' texts name the URL
    return text[0] if text else type(exc).__name__


@_api
def ensure_image(client: docker.DockerClient, image: str, setting: str = "rclone.image") -> None:
    """Requires the image to be on the host. Never pulls: a 3 a.m. pull of an unpinned or
    moved tag is a surprise, and the operator pulls once at set-up (docs/install.md)."""
    try:
        client.images.get(image)
    except ImageNotFound:
        raise DockerError(
            f"image '{image}' is not on this Docker host; run `docker pull {image}` "
            f"or fix {setting}"
        ) from None


@_api
def source_mount(client: docker.DockerClient, source: Source, target: str) -> Mount:
    """A read-only mount of the source. Refuses what Docker would silently create empty:
    a missing bind path becomes an empty directory and a missing volume an empty volume,
    and syncing either would delete the whole mirror."""
    if source.kind == "volume":
        try:
            client.volumes.get(source.location)
        except NotFound:
            raise DockerError(
                f"Docker volume '{source.location}' does not exist; check the job's source"
            ) from None
        return Mount(target, source.location, type="volume", read_only=True)
    if problem := directory_problem(Path(source.location)):
        raise DockerError(f"source directory {problem} on this host")
    return Mount(target, source.location, type="bind", read_only=True)


def file_mount(path: str, target: str, read_only: bool = True) -> Mount:
    """A bind mount of a host file or directory."""
    return Mount(target, path, type="bind", read_only=read_only)


def credentials_mounts(dest: Destination, target: str) -> list[Mount]:
    """The AWS credentials file, read-only; none when the IAM role is used."""
    return [file_mount(str(dest.credentials_file), target)] if dest.credentials_file else []


@dataclass(frozen=True)
class Spec:
    """What to run. Every container also gets cap_drop=ALL (plus cap_add only) and
    no-new-privileges."""

    image: str
    command: Sequence[str]
    mounts: Sequence[Mount]
    env: Mapping[str, str]
    labels: Mapping[str, str]
    network_mode: str
    cap_add: Sequence[str] = ()
    user: str | None = None
    security_opt: Sequence[str] = ()  # beside no-new-privileges: e.g. a seccomp profile
    # Resource bounds (None: Docker's default, none): "512m", a number of processes.
    mem_limit: str | None = None
    pids_limit: int | None = None


UNKNOWN_BOOT = "-"


def instance_label(state_dir: Path) -> str:
    """LABEL_INSTANCE of an installation's containers: a short hash of its resolved state_dir.
    Two installations on one host never share a state_dir (it holds the run ledger), while the
    job names (`db-upload`) are everyone's; a restart or a reload of one config keeps it."""
    path = Path(state_dir)
    with contextlib.suppress(OSError, RuntimeError):  # a symlink loop: the path as written
        path = path.resolve()
    return hashlib.sha256(str(path).encode()).hexdigest()[:12]


def _of_instance(container: Container, instance: str) -> bool:
    """Is it installation `instance`'s container? One without LABEL_INSTANCE (made before the
    label existed) counts for every installation, as it did then."""
    return (container.labels or {}).get(LABEL_INSTANCE, instance) == instance


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat from field 3 (the state) on; field 2, the name, may hold spaces and ")".
    Raises OSError when /proc shows no such process."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


@functools.cache
def owner_label(pid: int) -> str:
    """LABEL_OWNER of the containers process `pid` (this one) creates:
    `BOOT_ID/PIDNS/PID/START`, START being field 22 of /proc/PID/stat (clock ticks since boot):
    with the pid it names one process, a reused pid has another start time. The boot id and the
    pid namespace say where PID and START mean something. The unit's ProcSubset=pid hides the
    boot id: then "-" (a reboot is then not seen, so such leftovers are only kept longer).
    Cached by pid: a forked child is another owner."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = UNKNOWN_BOOT
    try:
        pidns = os.readlink(f"/proc/{pid}/ns/pid").removeprefix("pid:[").rstrip("]")
        start = _stat_fields(pid)[19]
    except OSError:  # no /proc to read: no other process can judge these containers, only we
        return f"{boot}/-/{pid}/-"
    return f"{boot}/{pidns}/{pid}/{start}"


def _gone(pid: int, start: str) -> bool:
    """Has the process PID that started at START ended? Only a sure yes counts."""
    try:
        fields = _stat_fields(pid)
    except OSError:
        # Ended, or another user's process hidden from us (the unit's ProtectProc=invisible):
        # the kernel still tells which.
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    return fields[0] in ("Z", "X") or fields[19] != start  # a zombie has ended


# Containers of this process between their create and their removal (run_oneshot, service),
# and the creates under way (whose ids are not known yet).
_in_flight: set[str] = set()
_creating = 0
_in_flight_lock = threading.Lock()


def _orphaned(container: Container) -> bool:
    """Will no process ever read and remove this finished (or never started) container?

    Exact, no timing guess: its owner (LABEL_OWNER) is gone, or is this process and no longer
    uses it (a removal that failed). An owner in another pid namespace cannot be checked from
    here: kept. Without the label (made before it existed) a finished container counts as
    orphaned and a created one does not, as before."""
    owner = (container.labels or {}).get(LABEL_OWNER)
    if owner is None:
        return container.status != "created"
    mine = owner_label(os.getpid())
    if owner == mine:
        with _in_flight_lock:  # one being created now may be this one: kept
            return _creating == 0 and container.id not in _in_flight
    try:
        boot, pidns, pid, start = owner.split("/")
        my_boot, my_pidns, _, _ = mine.split("/")
        pid_number = int(pid)
    except ValueError:
        return False  # not ours to judge
    if UNKNOWN_BOOT not in (boot, my_boot) and boot != my_boot:
        return True  # a reboot ended every process
    if pidns != my_pidns or pidns == "-":
        return False  # its pids are not ours to look up
    return _gone(pid_number, start)


def _create(client: docker.DockerClient, spec: Spec, **extra: Any) -> Container:
    global _creating
    with _in_flight_lock:
        _creating += 1
    try:
        container = _create_labelled(client, spec, **extra)
        with _in_flight_lock:
            _in_flight.add(container.id)
        return container
    finally:
        with _in_flight_lock:
            _creating -= 1


def _create_labelled(client: docker.DockerClient, spec: Spec, **extra: Any) -> Container:
    return client.containers.create(
        spec.image,
        command=list(spec.command),
        mounts=list(spec.mounts),
        environment=dict(spec.env),
        labels={**spec.labels, LABEL_OWNER: owner_label(os.getpid())},
        network_mode=spec.network_mode,
        cap_drop=["ALL"],
        cap_add=list(spec.cap_add) or None,
        security_opt=["no-new-privileges", *spec.security_opt],
        user=spec.user,
        detach=True,
        **({"mem_limit": spec.mem_limit, "memswap_limit": spec.mem_limit}
           if spec.mem_limit else {}),
        **({"pids_limit": spec.pids_limit} if spec.pids_limit else {}),
        **extra,
    )


# How long the output may take to end once the container has exited.
OUTPUT_AFTER_EXIT_S = 60.0
# What is kept of a container's output, which a compromised or broken image may make endless.
# stdout is a listing (`rclone lsf`: 100,000 files are 8 MB): kept whole up to STDOUT_LIMIT,
# and beyond it the run fails (a listing cut short would pass for a smaller source). stderr is
# rclone's JSON log, read for its error lines and the final stats line at its end: beyond
# STDERR_HEAD + STDERR_TAIL its middle lines are dropped (counted and logged).
STDOUT_LIMIT = 256 << 20
STDERR_HEAD = 32 << 20  # a --dry-run's notices, one per file: ~150,000 files
STDERR_TAIL = 4 << 20


def _mib(size: int) -> str:
    return f"{size / (1 << 20):g} MiB"


class _Stream:
    """One output stream: the head (up to `head` bytes) and the last `tail` bytes; the size
    of all of it in `total`. Never holds more than head + tail + one frame."""

    def __init__(self, head: int, tail: int) -> None:
        self.head_limit, self.tail_limit = head, tail
        self.head = bytearray()
        self.tail: collections.deque[bytes] = collections.deque()
        self.tail_size = 0
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if not data or not self.tail_limit:
            return
        self.tail.append(data)
        self.tail_size += len(data)
        while self.tail_size - len(self.tail[0]) >= self.tail_limit:
            self.tail_size -= len(self.tail.popleft())

    @property
    def dropped(self) -> int:
        return self.total - len(self.head) - min(self.tail_size, self.tail_limit)

    def text(self) -> str:
        """Whole lines: when the middle was dropped, the head up to its last line break and
        the tail from its first, so no cut line reaches a parser."""
        if not self.dropped:
            return (bytes(self.head) + b"".join(self.tail)).decode("utf-8", "replace")
        tail = b"".join(self.tail)[-self.tail_limit:]
        head = bytes(self.head)
        head = head[:head.rfind(b"\n") + 1]
        tail = tail[tail.find(b"\n") + 1:]
        return (head + tail).decode("utf-8", "replace")


class _Output:
    """A container's stdout and stderr, read from its attach stream on a thread while it runs.

    Not from the logs API afterwards: that sends every line as its own HTTP chunk (4.9 s to read
    a 100,000-file listing, measured), where the attach stream carries the output in large
    frames. Attached before the start, so nothing is missed. Read to its end whatever its
    size (the container must not block on a full pipe), kept only up to the limits above."""

    def __init__(self, container: Container) -> None:
        # The raw socket, not the SDK's frame generator: closed here as soon as the output
        # ends, not whenever the generator happens to be collected.
        self._socket = container.client.api.attach_socket(
            container.id, params={"stdout": 1, "stderr": 1, "stream": 1})
        # The SDK hangs the HTTP response on the socket it returns, a reference cycle that
        # holds the connection's fd open until Python's cyclic GC runs (22-47 fds over 1,000
        # runs): closing the response closes the connection now.
        self._response = getattr(self._socket, "_response", None)
        self._out = _Stream(STDOUT_LIMIT, 0)
        self._err = _Stream(STDERR_HEAD, STDERR_TAIL)
        self._failed: BaseException | None = None
        self._name = container.short_id
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        try:
            for stream, data in frames_iter(self._socket, tty=False):
                (self._err if stream == STDERR else self._out).add(data)
        except Exception as exc:  # raised again on the caller's thread
            self._failed = exc
        finally:
            if self._response is not None:  # first: it closes the socket's buffered reader
                self._response.close()
            self._socket.close()

    @property
    def stderr_dropped(self) -> int:
        return self._err.dropped

    def result(self) -> tuple[str, str]:
        self._thread.join(OUTPUT_AFTER_EXIT_S)
        if self._thread.is_alive():
            raise DockerError(f"the output of container {self._name} did not end "
                              f"{OUTPUT_AFTER_EXIT_S:.0f} s after it exited")
        if self._failed is not None:
            raise self._failed
        if self._out.dropped:
            raise DockerError(
                f"container {self._name} wrote {self._out.total} bytes to stdout, over the "
                f"{_mib(STDOUT_LIMIT)} read from it: refused rather than cut short (a "
                f"listing that large, or a broken image)")
        if self._err.dropped:
            logger.warning(f"container {self._name} wrote {self._err.total} bytes to stderr: "
                           f"kept its first {_mib(STDERR_HEAD)} and last "
                           f"{_mib(STDERR_TAIL)}, dropped {self._err.dropped} bytes between")
        return self._out.text(), self._err.text()


@_api
def run_oneshot(client: docker.DockerClient, spec: Spec, timeout_s: float) -> ContainerRun:
    """Runs a container with a read-only root fs to completion, killing it at timeout_s. The
    container is removed whatever happens (error, timeout, KeyboardInterrupt)."""
    started = time.monotonic()
    container = _create(
        client, spec, read_only=True, tmpfs={"/tmp": "rw,noexec,nosuid,size=64m"}
    )
    try:
        output = _Output(container)
        container.start()
        timed_out = False
        try:
            status = container.wait(timeout=timeout_s)
            exit_code = int(status.get("StatusCode", -1))
        except requests.exceptions.ConnectionError:
            # The SDK reports a wait timeout as a ConnectionError (ReadTimeout).
            timed_out = True
            _kill(container)
            exit_code = int(container.wait(timeout=30).get("StatusCode", KILLED_BY_TIMEOUT))
        stdout, stderr = output.result()
        return ContainerRun(exit_code, stdout, stderr, timed_out, time.monotonic() - started,
                            output.stderr_dropped)
    finally:
        _remove(container)


def _kill(container: Container) -> None:
    try:
        container.kill()
    except APIError as exc:
        if exc.status_code != 409:  # 409: it exited on its own in the meantime
            raise


@contextlib.contextmanager
def service(client: docker.DockerClient, spec: Spec,
            tmpfs: Mapping[str, str] | None = None) -> Iterator[Container]:
    """A long-running container for the length of a with-block, removed whatever happens.
    Its anonymous volumes go with it: an image VOLUME (PGDATA in postgres images) would
    otherwise leave one volume behind per run. With `tmpfs` (path: mount options) its root
    filesystem is read-only, those paths (and its volumes and mounts) writable."""
    extra: dict[str, Any] = {"read_only": True, "tmpfs": dict(tmpfs)} if tmpfs else {}
    container = _api(_create)(client, spec, **extra)
    try:
        _api(container.start)()
        yield container
    finally:
        _api(_remove)(container)


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: str
    stderr: str
    duration_s: float


@_api
def exec_in(
    container: Container, command: Sequence[str], *, env: Mapping[str, str], timeout_s: float,
    user: str = "",
) -> ExecResult:
    """Runs a command in a running container (as `user`, default the container's). The Docker
    API has no exec timeout, so the command runs under coreutils `timeout` (exit 124 when it
    fires)."""
    started = time.monotonic()
    result = container.exec_run(
        ["timeout", "--kill-after=10", str(max(1, int(timeout_s))), *command],
        environment=dict(env), demux=True, user=user,
    )
    out, err = result.output
    return ExecResult(
        int(result.exit_code),
        (out or b"").decode("utf-8", "replace"),
        (err or b"").decode("utf-8", "replace"),
        time.monotonic() - started,
    )


@_api
def refresh(container: Container) -> None:
    """Re-reads the container's state (its `.status`)."""
    container.reload()


def log_tail(container: Container, lines: int = 5) -> str:
    with contextlib.suppress(DockerException, requests.RequestException):
        text = container.logs(tail=lines).decode("utf-8", "replace").strip()
        return " | ".join(text.splitlines())
    return ""


def _remove(container: Container) -> None:
    try:
        container.remove(force=True, v=True)
    except NotFound:
        pass
    except APIError as exc:
        if exc.status_code != 409:  # 409: a removal is already in progress (engine or peer)
            raise
    finally:
        # Even when the removal failed: then the next run of this process reaps it.
        with _in_flight_lock:
            _in_flight.discard(container.id)


def _listed(client: docker.DockerClient, filters: dict[str, str], stopped: bool = False,
            ) -> list[Container]:
    """Containers matching `filters`. The SDK inspects each one it lists: one that another
    run removes in between is left out (ignore_removed), not a failure of this run."""
    return client.containers.list(all=stopped, filters=filters, ignore_removed=True)


@_api
def job_containers(
    client: docker.DockerClient, job: str, *, instance: str, readers: bool = False
) -> list[Container]:
    """Running containers of installation `instance`'s job (see instance_label), also those a
    killed predecessor left behind; another installation's job of the same name is not ours.
    Read-only listings (LABEL_READS: `status` lists the dump volume every few minutes) count
    only with readers=True: they change nothing, so they must not make a run wait."""
    found = _listed(client, {"label": f"{LABEL_JOB}={job}"})
    return [c for c in found
            if _of_instance(c, instance) and (readers or LABEL_READS not in (c.labels or {}))]


@_api
def target_containers(client: docker.DockerClient, target: str) -> list[Container]:
    """Running containers that write to one S3 destination, whoever started them: any
    installation's, since they all write to the same objects."""
    return _listed(client, {"label": f"{LABEL_TARGET}={target}"})


@_api
def reap_orphans(
    client: docker.DockerClient, job: str, *, instance: str, running: bool = False
) -> int:
    """Removes installation `instance`'s finished (exited, dead) and never started (created)
    containers of a job whose owner will never remove them: a process killed before its cleanup
    (SIGKILL, a crash), or between create and start. A live owner's container is left alone
    however long ago it exited: its owner is about to read its logs (a run-once while the
    daemon runs the job). Another installation's are its own to reap, at its next run.
    With running=True also running ones: a killed drill's database server runs on forever
    (a killed run's sync is left to finish: the overlap check waits for it)."""
    statuses = ("exited", "dead", "created", *(("running",) if running else ()))
    containers = [
        c
        for status in statuses
        for c in _listed(client, {"label": f"{LABEL_JOB}={job}", "status": status}, stopped=True)
        if _of_instance(c, instance) and _orphaned(c)
    ]
    for container in containers:
        _remove(container)
    return len(containers)


@_api
def stop_own_containers(
    client: docker.DockerClient, job: str, timeout_s: float, *, instance: str
) -> int:
    """Stops installation `instance`'s running containers of the job that this process started
    (the daemon at shutdown), not a `run-once`'s nor another installation's of the same job
    name (even one run by this process)."""
    mine = owner_label(os.getpid())
    containers = [c for c in job_containers(client, job, instance=instance, readers=True)
                  if (c.labels or {}).get(LABEL_OWNER) == mine]
    for container in containers:
        container.stop(timeout=int(timeout_s))
    return len(containers)
