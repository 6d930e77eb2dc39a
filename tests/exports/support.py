"""Reading stored export packages in tests."""

import csv
import hashlib
import io
import json
import zipfile

import pyzipper
from django.core.files.storage import default_storage

from requests_app.audit import Actor
from requests_app.models import ExportPackage
from requests_app.services.exports import count_download, download_token, export_for_link


def subject_download(export: ExportPackage):
    """The subject's download of `export` with their link, counted as the status page counts it: the package and
    its open file (exports.count_download)."""
    request = export.request
    linked = export_for_link(request=request, token=download_token(export))
    return count_download({"public_id": linked.public_id}, request=request, actor=Actor.requester(request))


def stored_bytes(name: str) -> bytes:
    with default_storage.open(name, "rb") as handle:
        return handle.read()


def open_package(export: ExportPackage, password: str | None = None) -> zipfile.ZipFile:
    """The stored ZIP of `export`, read from default_storage into memory."""
    data = io.BytesIO(stored_bytes(export.storage_name))
    if export.encrypted:
        archive = pyzipper.AESZipFile(data)
        if password is not None:
            archive.setpassword(password.encode())
        return archive
    return zipfile.ZipFile(data)


def stored_files(folder: str) -> list[str]:
    """The file names default_storage holds in `folder` (none if it does not exist)."""
    try:
        _, files = default_storage.listdir(folder)
    except FileNotFoundError:
        return []
    return sorted(files)


def jsonl_records(package, path: str) -> list[dict]:
    return [json.loads(line) for line in package.read(path).decode().splitlines()]


def csv_rows(package, path: str) -> list[list[str]]:
    """A CSV file's rows, read as a program reading data does: past its byte-order mark."""
    return list(csv.reader(io.StringIO(package.read(path).decode("utf-8-sig"), newline="")))


def check_manifest(package) -> dict:
    """Every file in the manifest exists with its size, SHA-256 and row count; nothing else is in the ZIP."""
    manifest = json.loads(package.read("manifest.json"))
    listed = [entry["path"] for entry in manifest["files"]]
    assert sorted(package.namelist()) == sorted(listed + ["manifest.json"])
    assert len(set(listed)) == len(listed)
    for entry in manifest["files"]:
        data = package.read(entry["path"])
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["path"]
        assert len(data) == entry["bytes"], entry["path"]
        if entry["path"].endswith(".jsonl"):
            assert len(data.decode().splitlines()) == entry["rows"], entry["path"]
        elif entry["path"].endswith(".csv"):
            records = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
            assert len(records) - 1 == entry["rows"], entry["path"]  # the header row
        else:
            assert entry["rows"] is None
    data_rows = sum(e["rows"] for e in manifest["files"] if e["path"].endswith(".jsonl"))
    assert manifest["rows"] == data_rows
    return manifest
