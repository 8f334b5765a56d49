"""The IO manager between steps: DataFrames move as Parquet, everything else as a pickle.

One implementation over the project's ObjectStore (core/storage.py), so the local
filesystem and S3 go through the same code: Dagster's UPathIOManager lays out the keys
(an asset at `<prefix>/<asset key path>`, a partition at `<asset key path>/<partition>`,
an op output at `storage/<run id>/<step>/<output>`, as the pickle IO managers did) and
core/frame_codec.py makes the bytes: every DataFrame in a step's output (a bare frame,
ValidatedData.frame, FeatureSet.train and .test) as zstd Parquet, the rest pickled.
Each object is written whole or not at all (ObjectStore.put: a rename on local files,
a single PUT on S3). Objects the pickle IO managers stored still load.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import dagster as dg
from dagster._core.storage.upath_io_manager import UPathIOManager
from pydantic import PrivateAttr
from upath import UPath

from ml_pipelines.core import frame_codec
from ml_pipelines.core.storage import LocalObjectStore, ObjectNotFound, ObjectStore, S3ObjectStore


class ObjectStoreIOManager(UPathIOManager):
    """UPathIOManager's key layout, with the bytes read and written through an ObjectStore."""

    def __init__(self, store: ObjectStore, prefix: str = ""):
        self.store = store
        super().__init__(base_path=UPath(prefix) if prefix else None)

    @staticmethod
    def _key(path: UPath) -> str:
        return path.as_posix().removeprefix("./")

    def dump_to_path(self, context: dg.OutputContext, obj: Any, path: UPath) -> None:
        data = frame_codec.dumps(obj)
        key = self._key(path)
        self.store.put(key, data)
        context.add_output_metadata({"uri": dg.MetadataValue.path(self.store.uri(key)), "stored_bytes": len(data)})

    def load_from_path(self, context: dg.InputContext, path: UPath) -> Any:
        try:
            return frame_codec.loads(self.store.get(self._key(path)))
        except ObjectNotFound:
            raise FileNotFoundError(f"no stored output at {self.store.uri(self._key(path))}") from None

    def path_exists(self, path: UPath) -> bool:
        return self.store.exists(self._key(path))

    def unlink(self, path: UPath) -> None:
        self.store.delete(self._key(path))

    def make_directory(self, path: UPath) -> None:
        return None  # the store makes folders as it writes

    def _handle_transition_to_partitioned_asset(self, context: dg.OutputContext, path: UPath) -> None:
        # an asset that became partitioned: its old single object stands where the partitions' folder goes
        if self.path_exists(path):
            stored = self.store.uri(self._key(path))
            context.log.warning(f"removing {stored}, stored before {context.asset_key.to_user_string()} was partitioned")
            self.unlink(path)

    def get_op_output_relative_path(self, context: dg.InputContext | dg.OutputContext) -> UPath:
        return UPath("storage", *context.get_identifier())


class FrameIOManager(dg.ConfigurableIOManager):
    """Step outputs in an object store, DataFrames as Parquet. Subclasses pick the store."""

    _inner: ObjectStoreIOManager | None = PrivateAttr(default=None)

    @abstractmethod
    def object_store(self, instance: dg.DagsterInstance | None) -> ObjectStore: ...

    def key_prefix(self) -> str:
        return ""

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._inner = ObjectStoreIOManager(self.object_store(context.instance), self.key_prefix())

    def inner(self) -> ObjectStoreIOManager:
        if self._inner is None:  # used outside a run (build_output_context in tests)
            self._inner = ObjectStoreIOManager(self.object_store(None), self.key_prefix())
        return self._inner

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        self.inner().handle_output(context, obj)

    def load_input(self, context: dg.InputContext) -> Any:
        return self.inner().load_input(context)


class LocalFrameIOManager(FrameIOManager):
    """Step outputs under base_dir; without one, in the Dagster instance's storage folder
    (DAGSTER_HOME/storage), where Dagster's default filesystem IO manager keeps them."""

    base_dir: str | None = None

    def object_store(self, instance: dg.DagsterInstance | None) -> ObjectStore:
        if self.base_dir:
            return LocalObjectStore(self.base_dir)
        if instance is None:
            raise ValueError("LocalFrameIOManager needs base_dir outside a Dagster run")
        return LocalObjectStore(instance.storage_directory())


class S3FrameIOManager(FrameIOManager):
    """Step outputs in an S3 bucket under prefix; the endpoint and credentials come from the
    standard AWS chain (AWS_ENDPOINT_URL for MinIO or a test server), as for the registry."""

    bucket: str
    prefix: str = "dagster"

    def object_store(self, instance: dg.DagsterInstance | None) -> ObjectStore:
        return S3ObjectStore(self.bucket)

    def key_prefix(self) -> str:
        return self.prefix.strip("/")
