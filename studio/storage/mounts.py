"""What a storage folder stands on: the mount that holds it, from /proc/self/mountinfo.

FUSE clients for S3 show up with their own file system type: `fuse.s3fs`, `fuse.rclone`,
`fuse.goofys`, `fuse.geesefs`; Mountpoint for Amazon S3 names itself `mountpoint-s3`
(its FUSE FSName, so the type or the source says it). None of them has hard links; none
makes a write on one host exclusive against a write on another (docs/architecture.md,
"Shared storage").
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MOUNTINFO = "/proc/self/mountinfo"
# File system type (or FUSE source) -> the client's name, for messages and for its quirks.
BUCKET_CLIENTS = {
    "fuse.s3fs": "s3fs",
    "fuse.rclone": "rclone",
    "fuse.mountpoint-s3": "mountpoint-s3",
    "fuse.goofys": "goofys",
    "fuse.geesefs": "geesefs",
    "fuse.s3ql": "s3ql",
}
MOUNTPOINT_S3 = "mountpoint-s3"


@dataclass(frozen=True)
class Mount:
    point: Path  # where it is mounted
    fstype: str  # e.g. fuse.s3fs, ext4
    source: str  # e.g. s3fs, remote:bucket/prefix (rclone), mountpoint-s3

    @property
    def bucket_client(self) -> str | None:
        """The S3 client behind a FUSE mount of a bucket (s3fs, rclone, ...), else None."""
        if self.source == MOUNTPOINT_S3 and self.fstype.startswith("fuse"):
            return MOUNTPOINT_S3
        return BUCKET_CLIENTS.get(self.fstype)

    def bucket_path(self) -> tuple[str, str] | None:
        """(bucket, key prefix) where the source names them: rclone shows `remote:bucket/prefix`."""
        if self.bucket_client != "rclone" or ":" not in self.source:
            return None
        bucket, _, prefix = self.source.rsplit(":", 1)[1].strip("/").partition("/")
        return (bucket, prefix.strip("/")) if bucket else None


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as \\ooo octal escapes."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[Mount]:
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields[6:]:
            continue
        dash = fields.index("-", 6)
        if len(fields) < dash + 3:
            continue
        mounts.append(Mount(Path(_unescape(fields[4])), fields[dash + 1], _unescape(fields[dash + 2])))
    return mounts


def mount_of(path: str | os.PathLike[str], mountinfo: str = MOUNTINFO) -> Mount | None:
    """The innermost mount holding path (or its nearest existing parent); None without mountinfo."""
    try:
        with open(mountinfo) as f:
            mounts = parse_mountinfo(f.read())
    except OSError:
        return None  # not Linux, or no /proc: treat as a plain folder
    where = Path(path).absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    where = Path(os.path.realpath(where))
    holding = [m for m in mounts if m.point == where or m.point in where.parents]
    # The last of the longest: a later mount over the same point hides the earlier one.
    return max(reversed(holding), key=lambda m: len(m.point.parts), default=None)
