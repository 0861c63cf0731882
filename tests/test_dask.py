"""Feature extraction on a real dask.distributed LocalCluster (loopback) equals the local run."""

from __future__ import annotations

import csv
import io

import joblib
import numpy as np
import pytest

distributed = pytest.importorskip("distributed", reason="dask[distributed] is not installed")


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None, memory_limit="4GB"
    ) as cluster:
        yield cluster


@pytest.mark.needs_weights
def test_features_on_cluster_equal_local(cluster, synthetic_set):
    from mammo.classifiers import MammogramModel, make_task_pipeline
    from mammo.features.cnn import n_features

    paths, density, tumour = synthetic_set
    model = MammogramModel({t: make_task_pipeline(t, "combined", "svm") for t in ("density", "tumour")}, batch_size=4)
    model.fit(paths[:24], density=density[:24], tumour=tumour[:24])
    local = model.transform(paths[24:36])
    with distributed.Client(cluster) as client, joblib.parallel_config(backend="dask"):
        remote = model.transform(paths[24:36])
        # Each worker built the CNN once and kept it (module-level cache).
        loaded = client.run(lambda: len(__import__("mammo.features.backbone", fromlist=["x"])._RUNNERS))
    for task in local:
        assert remote[task].shape == local[task].shape == (12, 54 + n_features("multi"))
        np.testing.assert_allclose(remote[task], local[task], rtol=1e-5, atol=1e-5)
    assert sorted(loaded.values()) == [1, 1]


def test_predict_cli_dask_backend(cluster, texture_model_path, synthetic_set, capsys):
    from mammo.predict import main

    paths = synthetic_set[0][:6]
    assert main([*paths, "--model", str(texture_model_path), "--quiet"]) == 0
    local = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    code = main(
        [
            *paths,
            "--model",
            str(texture_model_path),
            "--quiet",
            "--backend",
            "dask",
            "--scheduler",
            cluster.scheduler_address,
        ]
    )
    remote = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert code == 0 and remote == local


def test_predict_cli_dask_needs_scheduler(texture_model_path, capsys):
    from mammo.predict import main

    with pytest.raises(SystemExit) as exc:
        main(["x.png", "--model", str(texture_model_path), "--backend", "dask"])
    assert exc.value.code == 2 and "--scheduler" in capsys.readouterr().err
