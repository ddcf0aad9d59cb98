"""Releases: packaging a local artifact, and their layout on an app host —
``<root>/releases/<release>/`` (immutable, with a ``.bluegreen-release`` checksum marker) and one
pointer symlink per colour (``<root>/blue`` → ``releases/<release>``), swapped atomically."""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from bluegreen.errors import BluegreenError, UsageError
from bluegreen.model import Colour
from bluegreen.shell import Command
from bluegreen.transport.base import Transport

MARKER = ".bluegreen-release"

# $1 app root, $2 release, $3 expected sha256, $4 URL to fetch from (empty: the tarball on stdin)
_RECEIVE = (
    'set -e; releases="$1/releases"; [ -d "$releases" ] || mkdir -p -- "$releases"; '
    # what an interrupted upload left (its trap never ran): under the lock, no other upload of
    # this service runs
    'for old in "$releases"/.incoming.*; do '
    '[ ! -e "$old" ] || rm -rf -- "$old" 2>/dev/null || :; done; '
    'tmp=$(mktemp -d -- "$releases/.incoming.XXXXXX"); trap \'rm -rf -- "$tmp"\' EXIT; '
    'if [ -n "$4" ]; then '
    'curl -fsSL --netrc-optional --proto =https,http --retry 2 -o "$tmp/release.tar.gz" '
    '-- "$4"; else cat > "$tmp/release.tar.gz"; fi; '
    'got=$(sha256sum "$tmp/release.tar.gz"); got=${got%% *}; '
    'if [ "$got" != "$3" ]; then echo "checksum mismatch: got $got, expected $3" >&2; '
    'exit 65; fi; '
    'mkdir "$tmp/files"; umask 022; '  # modes from the archive, minus setuid/setgid
    'tar --no-same-owner --no-same-permissions -xzf "$tmp/release.tar.gz" -C "$tmp/files"; '
    'printf %s "$3" > "$tmp/files/.bluegreen-release"; chmod 755 "$tmp/files"; '
    '[ ! -e "$releases/$2" ] || rm -rf -- "$releases/$2"; mv -- "$tmp/files" "$releases/$2"'
)
# A release this small is sent with the command that checks whether the host has it already, one
# round trip instead of two (a host that has it reads and drops it); a larger one is only sent
# once the host said it lacks it.
SEND_WITHOUT_ASKING = 256 * 1024
_PRESENT, _DIFFERS = "bluegreen: release present", "bluegreen: release differs"
# what _RECEIVE takes ($1–$4), after a look at the release's marker: the same checksum ends
# the command (exit 0, `_PRESENT`), another one fails it (exit 66, `_DIFFERS` and the checksum)
_UNLESS_PRESENT = (
    'm="$1/releases/$2/.bluegreen-release"; if [ -f "$m" ]; then '
    '{ IFS= read -r have || [ -n "$have" ]; } < "$m"; [ -n "$4" ] || cat >/dev/null; '
    f'if [ "$have" = "$3" ]; then echo "{_PRESENT}"; exit 0; fi; '
    f'echo "{_DIFFERS} $have"; exit 66; fi; ')
_FORBIDDEN = re.compile(r"[/\x00-\x1f\x7f]")


class FilePayload:
    """A release's tarball in a file, never held whole in memory: each host's upload reads it
    by offset (`os.pread`, so parallel uploads need no shared position)."""

    def __init__(self, file: BinaryIO, size: int):
        self._file = file
        self.size = size

    def read_at(self, offset: int, length: int) -> bytes:
        return os.pread(self._file.fileno(), length, offset)

    def fileno(self) -> int:
        return self._file.fileno()


@dataclass(frozen=True)
class Artifact:
    """A release to put on the hosts: its gzipped tarball sent from here (`payload`), or — with
    `url` — fetched by each host itself (`release.url`); either way checked against `sha256`."""

    release: str
    payload: FilePayload | None
    sha256: str
    url: str | None = None

    @property
    def size(self) -> int:
        return self.payload.size if self.payload else 0

    def read_bytes(self) -> bytes:
        """The whole tarball (for tests and small uses; uploads stream it)."""
        return self.payload.read_at(0, self.payload.size) if self.payload else b""


def validate_release_id(release: str) -> str:
    """A release id is one path component: no '/', no control characters, not starting with '.'
    or '-'. Anything else — spaces, quotes, '$(…)' — is allowed and always quoted."""
    if (not release or _FORBIDDEN.search(release) or release[0] in ".-" or len(release) > 128
            or len(release.encode("utf-8", "surrogatepass")) > 200):  # a file name's bytes
        raise UsageError(
            f"release id {release!r} is not usable as a directory name.",
            where="--release",
            hint="Use a git sha, a tag or a version: letters, digits, '.', '_' and '-' are "
                 "safest (no '/', no leading '.' or '-', no control characters).",
        )
    return release


def package(source: Path, *, release: str | None) -> Artifact:
    """A deterministic .tar.gz of a directory (same content → same bytes → same checksum), or an
    existing .tar.gz/.tgz as it is — streamed through a file, so memory does not grow with the
    release's size."""
    if source.is_dir():
        file: BinaryIO = tempfile.TemporaryFile()  # noqa: SIM115 - the payload owns it
        digest = _tar_directory(source, file)
    elif source.is_file() and source.name.endswith((".tar.gz", ".tgz")):
        file = source.open("rb")
        _check_archive(file, source)
        digest = _sha256(file)
    else:
        raise UsageError(
            f"release source {source} is neither a directory nor a .tar.gz file.",
            where="release.source",
            hint="Point release.source (or --source) at a build directory or a .tar.gz.",
        )
    payload = FilePayload(file, os.fstat(file.fileno()).st_size)
    return Artifact(validate_release_id(digest[:12] if release is None else release), payload,
                    digest)


def _sha256(file: BinaryIO) -> str:
    file.seek(0)
    digest = hashlib.sha256()
    while chunk := file.read(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


def _refuse(source: Path, name: str, why: str) -> UsageError:
    return UsageError(
        f"release source {source}: {name!r} {why}.", where="--source",
        hint="A release holds regular files, directories and symlinks that stay inside it; "
             "device files, FIFOs, sockets and paths leading outside are refused, so that "
             "unpacking it on a host (often as root) cannot create them.")


def _check_archive(file: BinaryIO, source: Path) -> None:
    """Refuse what an archive could do when unpacked: absolute or `..` paths, links leading
    outside, device files and FIFOs (setuid bits are dropped when it is unpacked)."""
    try:
        file.seek(0)
        with tarfile.open(fileobj=file, mode="r|gz") as tar:
            for member in tar:
                if member.name.startswith("/"):
                    raise _refuse(source, member.name, "is an absolute path")
                try:
                    tarfile.data_filter(member, "/release")
                except tarfile.FilterError as exc:
                    raise _refuse(source, member.name, f"is refused ({exc})") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UsageError(f"release source {source} is not a readable .tar.gz: {exc}.",
                         where="--source") from None


class _Hashing:
    """A file to write to that also hashes what it is given."""

    def __init__(self, file: BinaryIO):
        self.file = file
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()


def _tar_directory(source: Path, file: BinaryIO) -> str:
    """Write the directory to `file` as a gzipped tarball, the same bytes for the same content
    (sorted names, no times or owners, no name or time in the gzip header); its sha256."""
    root = source.resolve()
    hashing = _Hashing(file)
    with gzip.GzipFile(filename="", fileobj=hashing, mode="wb", mtime=0) as compressed, \
            tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(source.rglob("*")):
            if "__pycache__" in path.parts:
                continue
            name = str(path.relative_to(source))
            if path.is_symlink():
                target = (path.parent / os.readlink(path)).resolve()
                if target != root and root not in target.parents:
                    raise _refuse(source, name, f"is a symlink leading outside it "
                                                f"({os.readlink(path)})")
            elif not (path.is_file() or path.is_dir()):
                raise _refuse(source, name, "is not a regular file, directory or symlink")
            info = tar.gettarinfo(str(path), arcname=name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if info.isfile():
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    file.flush()
    return hashing.digest.hexdigest()


class ReleaseLayout:
    def __init__(self, root: str):
        self.root = root.rstrip("/")

    def release_dir(self, release: str) -> str:
        return f"{self.root}/releases/{release}"

    def pointer(self, colour: Colour) -> str:
        return f"{self.root}/{colour}"

    def is_present(self, transport: Transport, artifact: Artifact) -> bool:
        marker = f"{self.release_dir(artifact.release)}/{MARKER}"
        result = transport.run(Command.script(  # `read`, a builtin: no process for 64 bytes
            '{ IFS= read -r sum || [ -n "$sum" ]; } 2>/dev/null < "$1" && printf "%s\\n" "$sum"',
            marker))
        if not result.ok:
            return False
        if result.stdout.strip() != artifact.sha256:
            raise self._differs(transport, artifact, result.stdout.strip())
        return True

    def _differs(self, transport: Transport, artifact: Artifact, found: str) -> UsageError:
        return UsageError(
            f"release {artifact.release} already exists on this host with different content "
            f"(checksum {found[:12]}…, uploading {artifact.sha256[:12]}…).",
            where=f"{transport.host}:{self.release_dir(artifact.release)}",
            hint="Release ids are immutable: deploy the new build under a new --release id.")

    @staticmethod
    def asks_first(artifact: Artifact) -> bool:
        """Whether `is_present` should be asked before `upload`: a release too large to send
        for nothing. A smaller one, or one the host fetches itself, is uploaded with
        `unless_present`."""
        return artifact.url is None and artifact.size > SEND_WITHOUT_ASKING

    def upload(self, transport: Transport, artifact: Artifact,
               sent: Callable[[int], None] | None = None, *, unless_present: bool = False
               ) -> bool:
        """Upload (or, for an artifact with a URL, have the host fetch it), verify the checksum
        on the host, unpack next to the final place, then rename into place, so a release
        directory is either complete or absent. With `unless_present`, a host that has the
        release already keeps it (False: it was there)."""
        fetched = artifact.url is not None
        result = transport.run(self.upload_command(artifact, unless_present=unless_present),
                               stdin=None if fetched else artifact.payload, sent=sent)
        if unless_present and result.stdout.startswith(_DIFFERS):
            raise self._differs(transport, artifact, result.stdout[len(_DIFFERS):].strip())
        if unless_present and result.ok and result.stdout.startswith(_PRESENT):
            return False
        if not result.ok:
            what = f"fetching {artifact.url}" if fetched else "upload"
            raise BluegreenError(
                f"{what} of release {artifact.release} failed: "
                f"{result.stderr.strip() or result.stdout.strip()}",
                where=transport.host,
                hint=("Check that the host can reach the URL (curl, DNS, credentials in its "
                      "~/.netrc) and that --sha256 is the artifact's; also free disk space."
                      if fetched else
                      "Check free disk space and permissions under the app root."),
            )
        return True

    def upload_command(self, artifact: Artifact, *, unless_present: bool = False) -> Command:
        """Reads the tarball on stdin, or fetches it from the artifact's URL on the host."""
        return Command.script((_UNLESS_PRESENT if unless_present else "") + _RECEIVE,
                              self.root, artifact.release, artifact.sha256, artifact.url or "")

    def point(self, transport: Transport, colour: Colour, release: str) -> None:
        """Swap the colour's pointer atomically (a new symlink renamed over the old one)."""
        transport.run(self.point_command(colour, release)).check(
            f"point {colour} at {release}")

    def point_command(self, colour: Colour, release: str) -> Command:
        return Command.script('set -e; ln -sfn -- "releases/$2" "$1/.$3.next"; '
                              'mv -Tf -- "$1/.$3.next" "$1/$3"', self.root, release, colour.value)

    def current(self, transport: Transport, colour: Colour) -> str | None:
        result = transport.run(Command("readlink", "--", self.pointer(colour)))
        target = result.stdout.strip()
        return target.rsplit("/", 1)[-1] if result.ok and target else None

    def prune_command(self, keep: int) -> Command:
        """Removes the releases beyond the `keep` newest that no colour points at; prints each
        one removed, newest first (`pruned`)."""
        return Command.script(
            _PRUNE, self.root, *(self.pointer(colour) for colour in Colour), str(keep))


def pruned(output: str) -> list[str]:
    """The releases `prune_command` removed, newest first."""
    return [name for name in output.split("\n") if name]


# $1 the app root, $2 and $3 the colours' pointers, $4 how many of the newest to keep. Names
# starting with a dot (an upload in progress) are neither counted nor removed. Prints each
# release removed. A release is renamed before it is removed: a removal cut short (the host
# went down) leaves no half release under its name, whose marker would pass it for present to
# the next upload; the next prune removes what it left.
_PRUNE = r"""
cd -- "$1/releases" 2>/dev/null || exit 0
for old in .removing.*; do [ ! -e "$old" ] || rm -rf -- "$old" 2>/dev/null || :; done
in_use=
for pointer in "$2" "$3"; do
  target=$(readlink -- "$pointer") && in_use="$in_use/${target##*/}/"
done
ls -1t -- . | {
  n=0 status=0
  while IFS= read -r name; do
    case $name in ""|.*) continue;; esac
    n=$((n + 1))
    [ "$n" -le "$4" ] && continue
    case $in_use in *"/$name/"*) continue;; esac
    if mv -- "$name" ".removing.$name" && rm -rf -- ".removing.$name"; then
      printf '%s\n' "$name"
    else status=1; fi
  done
  exit "$status"
}
"""
