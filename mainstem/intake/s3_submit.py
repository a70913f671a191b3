"""`mainstem submit` into an S3 drop zone: a producer's side of the protocol.

In: files or folders, the drop zone URL (`s3://bucket/prefix`), an optional batch name and
endpoint. Out: the batch under `<prefix>/<name>/`, its objects first, then `_MANIFEST.json` (each
file's size and sha256, as the local drop folder's), then `_READY`, every one written with
`If-None-Match: *` so no delivery overwrites another. Without a name the batch is named by its
content's batch id, so the same content submitted twice lands on the same prefix.
"""

from __future__ import annotations

from pathlib import Path

from mainstem.durable import canonical_json
from mainstem.errors import MainstemError
from mainstem.intake.delivery import DeliveredFile, batch_id_of, hash_file
from mainstem.intake.s3_client import client
from mainstem.intake.s3_dropzone import deliver
from mainstem.intake.s3_layout import check_batch_name, parse_drop_zone
from mainstem.intake.submit import _sources


def submit_to_s3(paths: list[Path], url: str, name: str | None, endpoint_url: str = "") -> str:
    """Deliver `paths` as one batch into the drop zone at `url`; the batch's URL."""
    zone = parse_drop_zone(url)
    sources = _sources(paths)
    if not sources:
        raise MainstemError("nothing to submit: no files under the given paths")
    files = [DeliveredFile(rel, *hash_file(source)) for source, rel in sources]
    entry = check_batch_name(name or batch_id_of(files))
    manifest: dict[str, object] = {"name": name, "files": [f.to_json() for f in files]}
    uploads = [(source, f.path, f.sha256) for (source, _rel), f in zip(sources, files, strict=True)]
    if not deliver(client(endpoint_url), zone, entry, uploads, canonical_json(manifest)):
        return f"{zone.entry_url(entry)} (already delivered, unchanged)"
    return zone.entry_url(entry)
