"""Which of the ports `wtpulsar up` needs are taken, and by whom, before anything starts.

`check` binds each address the way its server will (TCP with SO_REUSEADDR, as asyncio and aiohttp
listen; UDP plainly, as aioquic does) and releases it at once. For a port in use, `holder` looks
the socket up in /proc/net/{tcp,tcp6,udp,udp6} (Linux's socket tables: local address, state and
inode per socket, see proc(5)) and finds the process whose /proc/<pid>/fd links to that inode. Only
processes this user may inspect are found; otherwise the holder is unknown and said to be.
"""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass
from pathlib import Path

_TCP_LISTEN = "0A"  # st column of /proc/net/tcp for a listening socket (proc(5))


@dataclass(frozen=True, slots=True)
class Need:
    what: str  # e.g. "broker admin REST"
    host: str
    port: int
    proto: str  # "tcp" or "udp"
    flag: str  # the `wtpulsar up` option that moves it


@dataclass(frozen=True, slots=True)
class Clash:
    need: Need
    error: str  # strerror of the failed bind
    holder: str  # "pid 123 (wtpulsar broker …)" or "" when unknown

    def sentence(self) -> str:
        who = f"held by {self.holder}" if self.holder else "its holder is not visible to this user"
        return (f"{self.need.proto.upper()} port {self.need.port} on {self.need.host} for the {self.need.what} "
                f"is in use ({who}); stop that process or pick another port with {self.need.flag} HOST:PORT")


def _bind(need: Need) -> OSError | None:
    kind = socket.SOCK_STREAM if need.proto == "tcp" else socket.SOCK_DGRAM
    host = need.host or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as sock:
        if need.proto == "tcp":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, need.port))
            if need.proto == "tcp":
                sock.listen(1)
        except OSError as exc:
            return exc
    return None


def check(needs: list[Need], proc: Path = Path("/proc")) -> list[Clash]:
    """Every address of `needs` that cannot be bound now, with who holds it when that can be seen."""
    clashes = []
    for need in needs:
        if need.port == 0:
            continue  # the server picks a free one
        error = _bind(need)
        if error is None:
            continue
        reason = os.strerror(error.errno) if error.errno else str(error)
        holder = holder_of(need.port, need.proto, proc) if error.errno == errno.EADDRINUSE else ""
        clashes.append(Clash(need, reason, holder))
    return clashes


def socket_inodes(port: int, proto: str, proc: Path = Path("/proc")) -> set[str]:
    """Inodes of the sockets bound to local `port` (TCP: listening ones) in /proc/net."""
    inodes: set[str] = set()
    for table in (proto, proto + "6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10:
                continue
            local, state, inode = fields[1], fields[3], fields[9]
            try:
                local_port = int(local.rsplit(":", 1)[1], 16)
            except (IndexError, ValueError):
                continue
            if local_port == port and (proto != "tcp" or state == _TCP_LISTEN) and inode != "0":
                inodes.add(inode)
    return inodes


def holder_of(port: int, proto: str, proc: Path = Path("/proc")) -> str:
    """'pid N (command line)' of a process holding `port`, or '' when none can be seen."""
    inodes = socket_inodes(port, proto, proc)
    if not inodes:
        return ""
    targets = {f"socket:[{inode}]" for inode in inodes}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue  # another user's process, or it just exited
        for fd in fds:
            try:
                if os.readlink(fd) in targets:
                    return f"pid {entry.name} ({_command(entry)})"
            except OSError:
                continue
    return ""


def _command(proc_dir: Path, limit: int = 120) -> str:
    try:
        raw = (proc_dir / "cmdline").read_bytes()
    except OSError:
        return "?"
    args = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
    # `python -m wtpulsar.cli broker …` reads better as `wtpulsar broker …`
    if len(args) > 2 and args[1:3] == ["-m", "wtpulsar.cli"]:
        args = ["wtpulsar", *args[3:]]
    text = " ".join(args)
    return text if len(text) <= limit else text[: limit - 1] + "…"
