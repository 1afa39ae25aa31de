"""Shared storage on an object store (``s3://bucket/prefix``), through pyarrow's file systems.

The lessons call the shared storage "a folder every node sees, or a blob
store". A mounted folder is a :class:`pathlib.Path`; a blob store root is a
:class:`StorageURI`, which joins like a path (``root / "data"``) and is passed
as a string to anything that reads it (pyarrow, Ray Data). Models always stay
on a local path (``WORKSHOP_MODELS``, default ``storage/models`` in the clone):
diffusers and transformers load from folders, not from object stores.

S3 settings come from the standard AWS variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION`` or
``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL`` for an S3-compatible server such
as MinIO), in each process that reads or writes. The driver reads the inputs
and publishes; the processes that draw the images write the new output's
files into the upload prefix themselves (:mod:`helpers.pipeline.writer`),
with their own node's access: a local Ray's workers inherit the driver's
environment, a cluster's nodes need their own (an instance role, or the
variables set where ``ray start`` ran). The driver's credentials are never
sent to Ray workers: they would travel in the job's runtime environment,
which every user of a shared cluster can read.

Replacing an output prefix on an object store is :mod:`helpers.pipeline.s3_publish`'s.
"""

from __future__ import annotations

import os
from pathlib import Path

from helpers.errors import InputError, SettingsError

SCHEMES = ("s3",)


class StorageURI(str):
    """A storage root or file on an object store, e.g. ``s3://bucket/prefix``; joins with ``/`` like a Path."""

    def __truediv__(self, part) -> StorageURI:
        return StorageURI(f"{self.rstrip('/')}/{str(part).strip('/')}")

    def joinpath(self, *parts) -> StorageURI:
        joined = self
        for part in parts:
            joined = joined / part
        return joined

    @property
    def name(self) -> str:
        return self.rstrip("/").rsplit("/", 1)[-1]


def is_uri(location) -> bool:
    return "://" in str(location)


def check_scheme(uri: str, setting: str) -> None:
    """Fail with the fix for an object-store URI the workshop does not support."""
    scheme = str(uri).split("://", 1)[0].lower()
    if scheme not in SCHEMES or not str(uri).split("://", 1)[1].strip("/"):
        raise SettingsError(
            f"{setting}={uri!r}: use a folder path, or an S3 location such as s3://bucket/prefix "
            "(other object stores: mount them as a folder)"
        )


def filesystem(uri: str):
    """(pyarrow FileSystem, path inside it) for ``uri``.

    For S3 the endpoint is taken from ``AWS_ENDPOINT_URL`` and passed explicitly,
    so an S3-compatible server works whatever pyarrow's own default lookup does.
    """
    from pyarrow import fs

    scheme, rest = str(uri).split("://", 1)
    if scheme.lower() != "s3":
        return fs.FileSystem.from_uri(str(uri))
    options = {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        options["endpoint_override"] = endpoint
        options["scheme"] = "http" if endpoint.startswith("http://") else "https"
        options["allow_bucket_creation"] = False
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        options["region"] = region
    return fs.S3FileSystem(**options), rest.rstrip("/")


def fetch(uri: str, folder: Path) -> Path:
    """Copy one object to ``folder`` and return the local file (the input checks read local files)."""
    from pyarrow import fs

    source_fs, path = filesystem(uri)
    info = source_fs.get_file_info(path)
    if info.type != fs.FileType.File:
        raise InputError(f"{uri} does not exist (or is not a file); upload it first or fix the location")
    target = folder / Path(path).name
    with source_fs.open_input_stream(path) as src, open(target, "wb") as dst:
        dst.write(src.read())
    return target
