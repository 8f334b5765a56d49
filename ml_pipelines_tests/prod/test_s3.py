"""ML_PIPELINES_ENV=prod against a real S3 API (moto's server on loopback, reached
through boto3's AWS_ENDPOINT_URL like MinIO or AWS): the definitions Dagster loads
switch to the S3 IO manager, S3 registry, S3 bento exports and the k8s_job_executor;
a small pipeline whose source is an s3:// CSV materializes (in process: the k8s
executor needs a cluster), and everything durable lands in the bucket and reads back.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from urllib.parse import parse_qsl, urlsplit

import dagster as dg
import httpx
import numpy as np
import pandas as pd
import yaml
from dagster_k8s import k8s_job_executor

from ml_pipelines.components import build_pipeline_defs
from ml_pipelines.core import frame_codec
from ml_pipelines.core.layout import registry_for
from ml_pipelines.core.records import VersionRecord
from ml_pipelines.core.storage import S3ObjectStore
from ml_pipelines.datasets.credit import generate
from ml_pipelines.defs.resources import resources
from ml_pipelines.resources import BentoStoreResource, S3FrameIOManager, S3RegistryResource
from ml_pipelines.settings import Settings
from ml_pipelines_tests.prod.common import JOB, PIPELINE, REPO_ROOT, ROWS, STAGES, credit_spec


def test_the_real_definitions_switch_to_s3_and_kubernetes_in_prod(prod_env):
    from ml_pipelines.definitions import defs as load_definitions

    defs = load_definitions()
    assert defs.executor is k8s_job_executor
    platform = defs.resources
    assert isinstance(platform["io_manager"], S3FrameIOManager)
    assert isinstance(platform["registry"], S3RegistryResource)
    assert isinstance(platform["bento_store"], BentoStoreResource)
    export = platform["bento_store"].export_store()
    assert isinstance(export, S3ObjectStore) and export.prefix == prod_env.key("bentos")
    repository = defs.get_repository_def()
    retrain_jobs = sorted(name for name in repository.job_names if name.endswith("_retrain_job"))
    assert retrain_jobs == ["credit_default_retrain_job", "diabetes_progression_retrain_job", "wine_cultivar_retrain_job"]
    for name in retrain_jobs:
        assert repository.get_job(name).executor_def is k8s_job_executor
    # the registry the command-line tools use follows the same switch
    store = registry_for(Settings.from_env()).store
    assert isinstance(store, S3ObjectStore)
    assert (store.bucket, store.prefix) == (prod_env.bucket.name, prod_env.key("registry"))


def test_a_pipeline_materializes_into_the_bucket_and_reads_back(prod_env):
    bucket = prod_env.bucket
    # the source is a CSV in the bucket, read through s3fs with the same endpoint
    frame = generate(rows=ROWS, seed=7).drop(columns=["applied_on"])
    csv_key = "landing/credit_default/2026-01-01.csv"
    bucket.client.put_object(Bucket=bucket.name, Key=csv_key, Body=frame.to_csv(index=False).encode())
    spec = credit_spec(source={"kind": "csv", "path": f"s3://{bucket.name}/landing/credit_default/*.csv"})

    defs = dg.Definitions.merge(build_pipeline_defs(spec), resources())
    job = defs.resolve_job_def(JOB)
    assert job.executor_def is k8s_job_executor  # what production runs use
    # execute_in_process always uses the in-process executor: same assets, same resources
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    raw = result.asset_materializations_for_node(f"{PIPELINE}__raw_data")[0]
    assert raw.metadata["files"].value == [f"s3://{bucket.name}/{csv_key}"]

    # IO manager objects: one per asset under <prefix>/io, its DataFrames as Parquet
    io_keys = bucket.keys(prod_env.key("io") + "/")
    assert {key.rsplit("/", 1)[-1] for key in io_keys} >= set(STAGES)
    stored_bytes = bucket.get(prod_env.key("io", PIPELINE, "raw_data"))
    assert stored_bytes.startswith(frame_codec.MAGIC)
    stored = frame_codec.loads(stored_bytes)
    pd.testing.assert_frame_equal(stored.reset_index(drop=True), frame, check_dtype=False)
    assert raw.metadata["stored_bytes"].value == len(stored_bytes)
    features = frame_codec.loads(bucket.get(prod_env.key("io", PIPELINE, "features")))
    assert len(features.train) + len(features.test) == len(frame)

    # the registry version: record.json is the commit point, every artifact beside it
    version = result.output_for_node(f"{PIPELINE}__model_package").version
    record_key = prod_env.key("registry", PIPELINE, "versions", version, "record.json")
    record = VersionRecord.from_json(bucket.get(record_key))
    assert record.version == version and record.trigger.run_id == result.run_id
    assert record.extra["source"] == f"csv s3://{bucket.name}/landing/credit_default/*.csv"
    artifact_keys = set(bucket.keys(prod_env.key("registry", PIPELINE, "versions", version, "artifacts") + "/"))
    assert {prod_env.key("registry", PIPELINE, "versions", version, "artifacts", name) for name in record.artifacts} == artifact_keys

    registry = registry_for(Settings.from_env())
    assert [r.version for r in registry.list_versions(PIPELINE)] == [version]
    model = registry.load_model(PIPELINE, version)  # checksums verified against the bucket's bytes
    probabilities = model.predict_proba(frame.head(50))
    assert probabilities.shape == (50, 2) and np.allclose(probabilities.sum(axis=1), 1)

    # the alias move is in the bucket: current target and one history object per move
    assert registry.get_alias(PIPELINE, "champion") == version
    champion = json.loads(bucket.get(prod_env.key("registry", PIPELINE, "aliases", "champion.json")))
    assert (champion["version"], champion["previous"], champion["actor"]) == (version, None, f"run {result.run_id}")
    history = bucket.keys(prod_env.key("registry", PIPELINE, "alias_history") + "/")
    assert history == [prod_env.key("registry", PIPELINE, "alias_history", "champion", "0000000001.json")]

    # a move made by the command-line tool, in its own process, lands in the same bucket
    cli = subprocess.run(
        [sys.executable, "-m", "ml_pipelines.cli", "registry", "promote", PIPELINE, version,
         "--alias", "challenger", "--reason", "shadow traffic"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, env=os.environ.copy(),
    )
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert registry.aliases(PIPELINE) == {"champion": version, "challenger": version}
    moves = registry.alias_history(PIPELINE)
    assert [(m.alias, m.version, m.reason) for m in moves][-1] == ("challenger", version, "shadow traffic")
    assert len(bucket.keys(prod_env.key("registry", PIPELINE, "alias_history") + "/")) == 2

    # the model card is published next to the registry, and model_package links it with a presigned
    # URL a browser opens (the bucket is private): 7 days, the access key id and a signature, no secret
    assert bucket.keys(prod_env.key("registry", PIPELINE, "cards", version))
    card_url = result.asset_materializations_for_node(f"{PIPELINE}__model_package")[0].metadata["model_card"]
    assert isinstance(card_url, dg.UrlMetadataValue), card_url
    assert card_url.url.startswith(f"{os.environ['AWS_ENDPOINT_URL'].rstrip('/')}/{bucket.name}/"), card_url.url
    query = dict(parse_qsl(urlsplit(card_url.url).query))
    # exactly what a SigV4 presigned GET needs (the secret key never is part of it)
    assert set(query) == {"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
                          "X-Amz-SignedHeaders", "X-Amz-Signature"}, query
    assert query["X-Amz-Expires"] == "604800"
    assert urlsplit(card_url.url).username is None and urlsplit(card_url.url).password is None
    opened = httpx.get(card_url.url, timeout=30, trust_env=False)
    assert opened.status_code == 200 and f"Model card: {PIPELINE} {version}" in opened.text

    # the bento export: <prefix>/bentos/<pipeline>/<version>.bento, a bento archive of this version
    bento_key = prod_env.key("bentos", PIPELINE, f"{version}.bento")
    assert bucket.keys(prod_env.key("bentos") + "/") == [bento_key]
    assert record.package.export == f"s3://{bucket.name}/{bento_key}"  # exported before the record was committed
    archive = tarfile.open(fileobj=io.BytesIO(bucket.get(bento_key)))
    members = [name for name in archive.getnames() if name.lstrip("./") == "bento.yaml"]
    assert len(members) == 1, archive.getnames()[:20]
    bento_yaml = yaml.safe_load(archive.extractfile(members[0]).read())
    assert (bento_yaml["name"], bento_yaml["version"]) == (PIPELINE.replace("_", "-"), version)
    assert bento_yaml["labels"] == {"pipeline": PIPELINE, "version": version}

