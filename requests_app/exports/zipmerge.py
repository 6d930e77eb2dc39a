"""Move an already-compressed member from one ZIP into another.

The export compresses a category's CSV in a second thread, into a ZIP of
its own, while the main thread writes the JSON lines into the package: the
two deflate streams use both cores. This copies that member's compressed
bytes into the package as they are. The standard library has no public call
for it, so this follows what `ZipFile.mkdir` does with the same attributes;
tests/exports check the result with `testzip()`.
"""

import struct
import zipfile


def copy_only_member(source_path: str, target: zipfile.ZipFile, member: zipfile.ZipInfo) -> zipfile.ZipInfo:
    """Append the single member of the ZIP at `source_path` to `target` under `member`'s name and date,
    without recompressing."""
    with zipfile.ZipFile(source_path) as source:
        (info,) = source.infolist()
    arcname = member.filename
    member.compress_type = info.compress_type
    member.CRC, member.compress_size, member.file_size = info.CRC, info.compress_size, info.file_size
    member.external_attr = info.external_attr
    member.flag_bits = info.flag_bits & ~0x08  # the sizes are known: no data descriptor follows

    with open(source_path, "rb") as handle:
        handle.seek(info.header_offset)
        header = handle.read(zipfile.sizeFileHeader)
        name_length, extra_length = struct.unpack("<HH", header[26:30])
        handle.seek(info.header_offset + zipfile.sizeFileHeader + name_length + extra_length)
        with target._lock:
            if target._writing:
                raise ValueError("another member is being written")
            if target._seekable:
                target.fp.seek(target.start_dir)
            member.header_offset = target.fp.tell()
            target._writecheck(member)
            target._didModify = True
            target.fp.write(member.FileHeader())
            _copy_exactly(handle, target.fp, info.compress_size)
            target.filelist.append(member)
            target.NameToInfo[arcname] = member
            target.start_dir = target.fp.tell()
    return member


def _copy_exactly(source, target, length: int) -> None:
    remaining = length
    while remaining:
        chunk = source.read(min(remaining, 1024 * 1024))
        if not chunk:
            raise ValueError("the source ZIP ends early")
        target.write(chunk)
        remaining -= len(chunk)


__all__ = ["copy_only_member"]
