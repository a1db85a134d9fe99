"""Video ids as file names (issue 16): an id becomes ``<folder>/<id>.npy`` (CLIP features, spec ilcacm §2.3;
the hdf5 -> npy converter), so an id that is not a plain file name could read or write outside its folder.

``video_id_problem`` says why an id cannot be a file name; ``check_video_ids`` refuses a set of ids with one
message naming the file they come from; ``video_path`` is the only way an id becomes a path, and checks that the
resolved path (symlinks followed) stays inside its folder.
"""
import re
from pathlib import Path

from utils.messages import listing

MAX_NAME_BYTES = 255            # longest file name on ext4, XFS, APFS; NTFS allows 255 UTF-16 units
WINDOWS_RESERVED = '<>:"|?*'    # characters NTFS and FAT file names cannot hold
_CONTROL = re.compile(r'[\x00-\x1f\x7f]')


class UnsafePathError(ValueError):
    """A video id that cannot be a file name, or a path outside its folder; names the file and the id."""


def video_id_problem(vid, suffix='.npy'):
    """Why ``vid`` cannot be the file name ``vid + suffix`` on common file systems, or None if it can."""
    if not isinstance(vid, str):
        return f"it is a {type(vid).__name__}, not a string"
    if not vid:
        return "it is empty"
    if vid in ('.', '..'):
        return "it names a folder"
    if '/' in vid or '\\' in vid:
        return "it holds a path separator"
    if '\x00' in vid:
        return "it holds a NUL character"
    if _CONTROL.search(vid):
        return "it holds a control character"
    reserved = sorted(set(vid) & set(WINDOWS_RESERVED))
    if reserved:
        return f"it holds {''.join(reserved)!r}, which file names cannot hold on Windows file systems"
    if len((vid + suffix).encode('utf-8')) > MAX_NAME_BYTES:
        return f"its file name would be longer than {MAX_NAME_BYTES} bytes"
    return None


def check_video_ids(vids, source, suffix='.npy'):
    """Raise UnsafePathError naming ``source`` and every id of ``vids`` that cannot be a file name."""
    bad = [(vid, problem) for vid in vids if (problem := video_id_problem(vid, suffix))]
    if len(bad) == 1:
        (vid, problem), = bad
        raise UnsafePathError(f"{source}: video id {vid!r} cannot be a file name: {problem}")
    if bad:
        raise UnsafePathError(f"{source}: {len(bad)} video ids cannot be file names: "
                              f"{listing([f'{vid!r} ({problem})' for vid, problem in bad])}")


def path_inside(folder, name, source):
    """``folder / name``, or UnsafePathError if it resolves (symlinks followed) outside ``folder``."""
    path = Path(folder) / name
    resolved, root = path.resolve(), Path(folder).resolve()
    if not resolved.is_relative_to(root):
        raise UnsafePathError(f"{source}: {path} resolves to {resolved}, outside the folder {root}")
    return path


def video_path(folder, vid, source, suffix='.npy'):
    """``folder / (vid + suffix)`` for a safe ``vid`` that stays inside ``folder``; ``source`` names where the
    id comes from (an annotation file, an hdf5 file, a feature folder)."""
    check_video_ids([vid], source, suffix)
    return path_inside(folder, vid + suffix, source)
