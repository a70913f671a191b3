"""Canonical images of any validated batch, found through the validated index.

In: the validated store's folder and the workspace root. Out: images' bytes by canonical name.
The index says which batch's pack holds a name: the map is built once per reader, on the first
name asked for, from one record per batch (a reader of a past master, training or drift's
reference, needs images from any batch); then each pack is opened once for all the names it
holds. Drift's recorded statistics by name are in `drift_store.RecordedStats`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from mainstem.validation.image_pack import read_pack_images
from mainstem.validation.layout import (
    IMAGE_PACK,
    ValidatedRecord,
    last_validated,
    records_between,
    result_file,
)


class StoredImages:
    """Reads canonical images from the batches' packs, by name."""

    def __init__(
        self,
        validated_dir: Path,
        root: Path,
    ) -> None:
        self.validated_dir = validated_dir
        self.root = root
        self.fresh: dict[str, bytes] = {}  # a batch's images before its record is written
        self._where: dict[str, ValidatedRecord] | None = None

    def where(self) -> dict[str, ValidatedRecord]:
        """Canonical name -> the newest batch whose pack holds it."""
        if self._where is None:
            last = last_validated(self.validated_dir)
            self._where = {
                name: record
                for record in records_between(self.validated_dir, 1, last)
                for name in record.images
            }
        return self._where

    def read_many(self, names: Iterable[str]) -> dict[str, bytes]:
        """The images of `names` found, by name; each pack is opened once."""
        found: dict[str, bytes] = {}
        by_batch: dict[str, list[str]] = defaultdict(list)
        records: dict[str, ValidatedRecord] = {}
        for name in dict.fromkeys(names):
            if name in self.fresh:
                found[name] = self.fresh[name]
            elif (record := self.where().get(name)) is not None:
                by_batch[record.batch_id].append(name)
                records[record.batch_id] = record
        for batch_id, wanted in sorted(by_batch.items()):
            pack = result_file(self.validated_dir, records[batch_id], IMAGE_PACK, self.root)
            found.update(read_pack_images(pack, wanted))
        return found

    def read(self, name: str) -> bytes | None:
        return self.read_many([name]).get(name)
