"""Output paths that can never destroy an input or anything this tool did not write.

Every command that writes checks its outputs here first:

* :func:`check_not_input`: an output must not be an input, contain one, or lie inside an input directory
  (``export-hf run/checkpoint_best.pt run --force`` would otherwise replace the run directory, checkpoints and all).
* :func:`staged_dir`: a directory output is written into a temporary sibling and moved into place only when
  everything succeeded.  An existing directory is replaced only with ``force`` and only when it is *ours*: it carries
  the command's marker file (``conversion.json``, ``translit_ppa_export.json``, ...) and holds nothing but the files
  that command writes (``owned``: the command passes its list, kept beside the code that writes them).  The old
  directory is renamed aside first and deleted only after the new one is in place.
* :func:`check_file_output`: a file output (results JSONL, selection JSON, caches, reports) must not be an input, an
  existing directory, or an existing file that does not look like one we wrote.

* :func:`held_output_dir`: a folder a resumable command (``prepare``, ``encode``, ``transliterate``) writes into
  over several runs is held by one run at a time (an ``fcntl.flock`` on its :data:`LOCK_FILE`, which names the
  command; a second run is refused naming the folder and the pid holding it) and is refused when it is not ours: it
  exists, holds something, and has no lock file of the same command (nor looks like that command's output from
  before lock files, ``legacy``).

Staged directories give every file the permissions a plain ``open()`` would under the umask (some writers, such as
safetensors, leave 0600).  Refusals raise :class:`UnsafeOutputError` (or :class:`OutputExistsError` when only
``--force`` is missing, :class:`OutputBusyError` when another run holds the folder); the CLI prints them as one line
and exits with status 2.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


class UnsafeOutputError(Exception):
    """Writing this output could overwrite or delete an input or files this tool did not write."""


class OutputExistsError(FileExistsError):
    """The output exists and may be replaced, but only when asked to (``--force``)."""


class OutputBusyError(UnsafeOutputError):
    """Another run holds the output folder (see :func:`held_output_dir`)."""


def current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def give_umask_permissions(directory: Path) -> None:
    """mkdtemp makes 0700 directories; a finished output gets the permissions a plain ``mkdir`` would give it."""
    os.chmod(directory, 0o777 & ~current_umask())


def give_umask_permissions_tree(directory: Path) -> None:
    """Every directory and file under ``directory`` (itself included) gets what ``mkdir`` / ``open()`` would give it
    under the umask; execute bits a file has are kept.  Writers that create private files (safetensors: 0600,
    ``tempfile``) would otherwise leave outputs only their owner can read."""
    umask = current_umask()
    give_umask_permissions(directory)
    for root, dirs, files in os.walk(directory):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o777 & ~umask)
        for name in files:
            path = os.path.join(root, name)
            st = os.lstat(path)
            if not os.path.islink(path):
                os.chmod(path, (0o666 | (st.st_mode & 0o111)) & ~umask)


def _resolve(path: str | os.PathLike) -> Path:
    return Path(path).expanduser().resolve()


def _within(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_not_input(output: str | os.PathLike, inputs: Iterable[str | os.PathLike | None], what: str = "output",
                    allow_inside: bool = False) -> None:
    """Refuse when ``output`` is an input, contains one, or (unless ``allow_inside``) lies inside an input directory."""
    out = _resolve(output)
    for given in inputs:
        if given is None:
            continue
        inp = _resolve(given)
        if out == inp:
            raise UnsafeOutputError(f"{what} {output} is the input {given}; choose another path")
        if _within(inp, out):
            raise UnsafeOutputError(
                f"{what} {output} contains the input {given}; writing it could replace or delete the input. "
                f"Choose a path that does not contain {given}"
            )
        if not allow_inside and inp.is_dir() and _within(out, inp):
            raise UnsafeOutputError(
                f"{what} {output} is inside the input directory {given}; choose a path outside it"
            )


def _owned(path: Path, rel: str, owned: tuple[str, ...]) -> bool:
    """Whether ``path`` (``rel`` inside the output) is one of ``owned``: a plain file matching a pattern, or a
    directory (no link) whose entries are all owned files (a pattern ``DIR/NAME`` owns ``NAME`` inside ``DIR``)."""
    if path.is_symlink():
        return False
    if path.is_dir():
        entries = list(path.iterdir())
        return bool(entries) and all(_owned(p, f"{rel}/{p.name}", owned) for p in entries)
    return path.is_file() and any(fnmatch.fnmatchcase(rel, pat) for pat in owned)


def foreign_entries(directory: Path, marker: str, owned: Iterable[str] = ()) -> list[str] | None:
    """Entries of an existing ``directory`` we did not write: None if it is ours (``marker`` + ``owned`` names only;
    ``owned`` holds glob patterns, ``DIR/NAME`` for a file inside a folder)."""
    names = sorted(p.name for p in directory.iterdir())
    if marker not in names:
        return names
    owned = (*owned, marker)
    foreign = [n for n in names if not _owned(directory / n, n, owned)]
    return foreign or None


def check_replaceable_dir(out_dir: str | os.PathLike, force: bool, marker: str, command: str = "this command",
                          owned: Iterable[str] = ()) -> None:
    """An existing ``out_dir`` may be replaced only with ``force`` and only if it is ours: ``marker`` and the files
    ``owned`` (the names ``command`` writes besides its marker) only; see module docstring."""
    out_dir = Path(out_dir)
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise UnsafeOutputError(f"{out_dir} exists and is not a directory; choose another output path")
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return  # nothing there to lose
    if not force:
        raise OutputExistsError(f"{out_dir} exists; pass --force to replace it")
    foreign = foreign_entries(out_dir, marker, owned)
    if foreign is None:
        return
    if not (out_dir / marker).is_file():
        raise UnsafeOutputError(
            f"{out_dir} exists and was not written by {command} (no {marker}); --force replaces only its own output "
            "directories. Choose a new output path or delete the directory yourself"
        )
    listed = ", ".join(foreign[:5]) + (f" (+{len(foreign) - 5} more)" if len(foreign) > 5 else "")
    raise UnsafeOutputError(
        f"{out_dir} holds files {command} did not write ({listed}); --force would delete them. Move them away or "
        "choose a new output path"
    )


@contextmanager
def staged_dir(out_dir: str | os.PathLike, force: bool, inputs: Iterable[str | os.PathLike | None], marker: str,
               command: str = "this command", owned: Iterable[str] = ()) -> Iterator[Path]:
    """Yield a temporary sibling of ``out_dir`` to write into; move it into place only when the block succeeded.

    Refuses up front (nothing written) when ``out_dir`` is, contains or is inside an input, or is an existing
    directory that ``force`` may not replace (:func:`check_replaceable_dir`).  Errors raised in the block that name
    the temporary directory are re-worded to name ``out_dir``.
    """
    out_dir = Path(out_dir)
    inputs = list(inputs)
    owned = tuple(owned)
    check_not_input(out_dir, inputs)
    check_replaceable_dir(out_dir, force, marker, command, owned)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with _held_target(out_dir, command):
        yield from _staged_in(out_dir, force, marker, command, owned)


@contextmanager
def _held_target(out_dir: Path, command: str) -> Iterator[None]:
    """One run at a time writes ``out_dir``: an exclusive ``flock`` on the sibling ``.NAME.lock`` (removed after), so a
    second convert / trim / untrim / export into the same path fails at once instead of the last writer winning."""
    import fcntl

    lock = out_dir.parent / f".{out_dir.name}.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputBusyError(f"{out_dir} is being written by another {command} run; wait for it to finish or "
                                  "choose another output path") from None
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.unlink(lock)
    finally:
        os.close(fd)


def _staged_in(out_dir: Path, force: bool, marker: str, command: str, owned: tuple[str, ...]) -> Iterator[Path]:
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    give_umask_permissions(tmp)
    try:
        try:
            yield tmp
        except Exception as e:
            _rename_in_message(e, tmp, out_dir)
            raise
        give_umask_permissions_tree(tmp)
        check_replaceable_dir(out_dir, force, marker, command, owned)  # again: it may have changed meanwhile
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, old)  # an empty directory is replaced by a rename, a non-empty one moved aside
            try:
                os.replace(tmp, out_dir)
            except OSError:
                os.replace(old, out_dir)
                raise
            shutil.rmtree(old, ignore_errors=True)  # ours: checked above
        else:
            os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _rename_in_message(e: BaseException, tmp: Path, out_dir: Path) -> None:
    if e.args and isinstance(e.args[0], str) and str(tmp) in e.args[0]:
        e.args = (e.args[0].replace(str(tmp), str(out_dir)), *e.args[1:])


def check_file_output(output: str | os.PathLike, inputs: Iterable[str | os.PathLike | None], what: str = "output",
                      looks_ours: Callable[[Path], bool] | None = None, kind: str = "",
                      allow_inside: bool = True) -> None:
    """A file about to be written or appended to: not an input, not a directory, and (if it exists) one of ours.

    ``looks_ours(path)`` tells an existing file we wrote (e.g. a results JSONL) from anything else; ``kind`` names
    what it should be in the message.
    """
    out = Path(output)
    check_not_input(out, inputs, what, allow_inside=allow_inside)
    if out.is_dir():
        raise UnsafeOutputError(f"{what} {out} is a directory; give a file path")
    if out.exists() and out.stat().st_size > 0 and looks_ours is not None and not looks_ours(out):
        raise UnsafeOutputError(
            f"{what} {out} exists and is not {kind or 'a file this command writes'}; it would be overwritten. "
            "Choose another path"
        )


def first_line(path: Path, limit: int = 1 << 16) -> str:
    """The first non-empty line of a file as text ("" for binary or unreadable content)."""
    try:
        with open(path, "rb") as f:
            head = f.read(limit)
    except OSError:
        return ""
    if b"\0" in head:
        return ""
    for line in head.decode("utf-8", errors="replace").splitlines():
        if line.strip():
            return line
    return ""


# ------------------------------------------------------------------------------------- folders held by one run
LOCK_FILE = ".translit-ppa.lock"


def _lock_record(lock: Path) -> dict:
    try:
        record = json.loads(lock.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _write_lock_record(fd: int, record: dict) -> None:
    data = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def is_tmp_leftover(name: str) -> bool:
    """A hidden leftover of an interrupted atomic write (``.name.tmpPID``, ``.name.tmp-XXXX``)."""
    return name.startswith(".") and ".tmp" in name


def check_own_folder(directory: str | os.PathLike, command: str,
                     legacy: Callable[[Path], bool] | None = None) -> None:
    """Refuse ``directory`` unless it is absent, empty, carries ``command``'s :data:`LOCK_FILE`, or (output written
    before lock files existed) ``legacy(directory)`` says it looks like ``command``'s."""
    directory = Path(directory)
    if directory.is_symlink() or (directory.exists() and not directory.is_dir()):
        raise UnsafeOutputError(f"{directory} exists and is not a directory; choose another output folder")
    lock = directory / LOCK_FILE
    if lock.is_symlink() or (lock.exists() and not lock.is_file()):
        raise UnsafeOutputError(f"{lock} is not a regular file; choose another output folder")
    if lock.is_file():
        owner = _lock_record(lock).get("command")
        if owner not in (None, command):
            raise UnsafeOutputError(f"{directory} is an output folder of translit-ppa {owner}, not of translit-ppa "
                                    f"{command}; choose another folder")
        return
    if not directory.exists():
        return
    entries = sorted(p.name for p in directory.iterdir() if not is_tmp_leftover(p.name))
    if entries and not (legacy is not None and legacy(directory)):
        listed = ", ".join(entries[:5]) + (f" (+{len(entries) - 5} more)" if len(entries) > 5 else "")
        raise UnsafeOutputError(
            f"{directory} exists and was not written by translit-ppa {command} (it holds {listed} and no "
            f"{LOCK_FILE}); {command} would write over files there. Choose a new or empty folder"
        )


@contextmanager
def held_output_dir(directory: str | os.PathLike, command: str, legacy: Callable[[Path], bool] | None = None,
                    shared: bool = False) -> Iterator[Path]:
    """Hold ``directory`` (created if needed) for this run of ``command``; yield it.

    Refused (:class:`UnsafeOutputError`, nothing written) when the folder is not ours (:func:`check_own_folder`), and
    (:class:`OutputBusyError`) while another run holds it: an exclusive ``fcntl.flock`` on ``directory/LOCK_FILE``,
    which holds ``{"command", "pid"}`` while held and ``{"command"}`` after, so the folder's bytes do not depend on
    the run.  ``shared`` runs (``prepare``'s shard jobs, which write disjoint chunks) hold it together, but never
    alongside an exclusive one.
    """
    import fcntl

    directory = Path(directory)
    check_own_folder(directory, command, legacy)
    directory.mkdir(parents=True, exist_ok=True)
    lock = directory / LOCK_FILE
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
    held = False
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_record(lock).get("pid") or "unknown"
            raise OutputBusyError(
                f"{directory} is in use by another translit-ppa {command} run (pid {holder}); wait for it to finish "
                "or choose another output folder"
            ) from None
        owner = _lock_record(lock).get("command")
        if owner not in (None, command):  # another command claimed it between the check and the lock
            raise UnsafeOutputError(f"{directory} is an output folder of translit-ppa {owner}, not of translit-ppa "
                                    f"{command}; choose another folder")
        held = True
        _write_lock_record(fd, {"command": command, "pid": os.getpid()})
        yield directory
    finally:
        try:
            if held:  # the last holder leaves no pid behind
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                _write_lock_record(fd, {"command": command})
        except OSError:  # another shard job still holds it (BlockingIOError), or the disk is full
            pass
        finally:
            os.close(fd)
